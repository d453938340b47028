"""EfficiencyScatter: every model as a point of two metrics, with the Pareto frontier."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import traitlets

from ..formatting import METRIC_HELP, metric_kind
from ..registry import ModelRegistry
from ._bundle import bundle
from ._metrics import numeric_metrics
from ._sync import json_value
from ._view import RegistryView, Summary, model_table
from ._wire import pack

# Metrics spread over orders of magnitude: a log axis by default.
_LOG_WORDS = ("bytes", "size", "latency", "macs", "params", "memory")


def default_log(metric: str) -> bool:
    """Whether ``metric`` gets a log axis by default (bytes, latency, MACs, counts)."""
    name = metric.lower()
    return any(word in name for word in _LOG_WORDS) and "sparsity" not in name


def scatter_state(registry: ModelRegistry) -> dict[str, Any]:
    """What the scatter syncs: models (provenance, JSON) and a float64 metric matrix (binary)."""
    table = registry.metrics()
    metrics = numeric_metrics(table)
    matrix = np.full((len(table), len(metrics)), np.nan)
    for j, column in enumerate(metrics):
        matrix[:, j] = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    models = []
    for name, row in table.iterrows():
        parent, operation = row.get("parent"), row.get("operation")
        models.append(
            {
                "name": str(name),
                "parent": parent if isinstance(parent, str) else None,
                "operation": operation if isinstance(operation, str) else None,
                "params": json_value(row.get("operation_params") or {}),
                "shown_params": registry.record(str(name)).info.get("given"),
            }
        )
    info = {}
    for name in metrics:
        declared = dict(registry.metric_info.get(name, {}))
        info[name] = {**json_value(declared), "kind": metric_kind(name, declared)}
        if name in METRIC_HELP:
            info[name]["description"] = METRIC_HELP[name]
    return {
        "models": models,
        "metrics": metrics,
        "values": pack(matrix, "float64"),
        "metric_info": info,
    }


class EfficiencyScatter(RegistryView):
    """Models as points of two metrics (default: size against the task's quality), frontier
    marked.

    Click a point to select it, shift-click to add, drag a box to select many; the
    selection is the registry's. Pickers choose the axes, colour and size; the
    frontier's directions are ``x_better`` / ``y_better`` ("lower" or "higher").

    Examples
    --------
    >>> scatter = cnc.EfficiencyScatter(reg, x="latency_ms", y="accuracy", color="sparsity")
    >>> scatter.x = "macs"      # the view follows

    Traits (besides :class:`RegistryView`'s ``selected``, ``filters``, ``filtered_out``):
    ``models`` (name, parent, operation, params per model), ``metrics`` (the numeric metrics,
    :func:`._metrics.numeric_metrics`), ``values`` (a models x metrics float64 matrix, binary),
    ``metric_info`` (kind, format, unit, description per metric) are Python -> browser;
    ``x``, ``y``, ``color``, ``size`` (metric names, "" for none), ``log_x``, ``log_y``,
    ``x_better``, ``y_better`` ("lower" | "higher"), ``trajectories`` (lines to parents) and
    ``color_domains`` (metric -> "data" | "unit" | "zero" | [low, high]) are set from either side.
    """

    _esm = bundle("scatter")
    models = traitlets.List(traitlets.Dict()).tag(sync=True)
    metrics = traitlets.List(traitlets.Unicode()).tag(sync=True)
    values = traitlets.Dict().tag(sync=True)
    x = traitlets.Unicode("size_bytes").tag(sync=True)
    y = traitlets.Unicode("accuracy").tag(sync=True)
    color = traitlets.Unicode("").tag(sync=True)
    size = traitlets.Unicode("").tag(sync=True)
    log_x = traitlets.Bool(True).tag(sync=True)
    log_y = traitlets.Bool(False).tag(sync=True)
    x_better = traitlets.Enum(["lower", "higher"], "lower").tag(sync=True)
    y_better = traitlets.Enum(["lower", "higher"], "higher").tag(sync=True)
    trajectories = traitlets.Bool(False).tag(sync=True)
    metric_info = traitlets.Dict().tag(sync=True)
    color_domains = traitlets.Dict().tag(sync=True)

    def __init__(
        self,
        registry: ModelRegistry,
        x: str = "size_bytes",
        y: str | None = None,
        color: str | None = None,
        size: str | None = None,
        **kwargs: Any,
    ) -> None:
        # The quality axis and its direction come from the task: accuracy (higher is
        # better) for a classifier, perplexity (lower) for a language model, f1 for QA.
        axes = registry.task.default_axes()
        if y is None:
            y = axes["y"]
            kwargs.setdefault("y_better", axes["y_better"])
        state = scatter_state(registry)
        for axis, metric in (("x", x), ("y", y), ("color", color), ("size", size)):
            if metric and state["metrics"] and metric not in state["metrics"]:
                raise ValueError(
                    f"{axis}={metric!r} is not a numeric metric of this registry; "
                    f"choose one of {state['metrics']}"
                )
        kwargs.setdefault("log_x", default_log(x))
        kwargs.setdefault("log_y", default_log(y))
        super().__init__(registry, x=x, y=y, color=color or "", size=size or "", **state, **kwargs)
        self.observe_registry(self._refresh, "revision")

    @traitlets.observe("x", "y")
    def _axis_changed(self, change: dict[str, Any]) -> None:
        setattr(self, f"log_{change['name']}", default_log(change["new"]))

    def _refresh(self, _change: Any = None) -> None:
        state = scatter_state(self.registry)
        with self.hold_sync():
            for key, value in state.items():
                setattr(self, key, value)

    def summary_table(self) -> Summary:
        """Each model's two plotted metrics, and whether it is on their Pareto frontier."""
        table = model_table(self.registry)
        metrics = self.registry.metrics()
        for axis in (self.x, self.y):
            if axis in metrics.columns:
                table[axis] = metrics[axis]
        table.insert(0, "selected", [n in self.selected for n in table.index])
        try:
            front = set(self.pareto())
        except (KeyError, ValueError):
            front = set()
        table["pareto"] = [n in front for n in table.index]
        return Summary(f"Efficiency: {self.y} against {self.x}", table)

    def pareto(self) -> list[str]:
        """The models on the frontier of the current axes and directions."""
        return self.registry.pareto(self.x, self.y, x_better=self.x_better, y_better=self.y_better)
