"""EfficiencyScatter: every model as a point of two metrics, with the Pareto frontier."""

from __future__ import annotations

from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

from ..formatting import METRIC_HELP, metric_kind
from ..registry import PROVENANCE_COLUMNS, ModelRegistry
from ._bundle import bundle
from ._sync import json_value, link_filters, link_selection
from ._wire import pack

# Metrics spread over orders of magnitude: a log axis by default.
_LOG_WORDS = ("bytes", "size", "latency", "macs", "params", "memory")


def default_log(metric: str) -> bool:
    """Whether ``metric`` gets a log axis by default (bytes, latency, MACs, counts)."""
    name = metric.lower()
    return any(word in name for word in _LOG_WORDS) and "sparsity" not in name


def numeric_metrics(table: pd.DataFrame) -> list[str]:
    """Columns of ``reg.metrics()`` holding at least one finite number, in table order."""
    names = []
    for column in table.columns:
        if column in PROVENANCE_COLUMNS:
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        if table[column].dtype == bool or not np.isfinite(values.to_numpy(dtype=float)).any():
            continue
        names.append(str(column))
    return names


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


class EfficiencyScatter(anywidget.AnyWidget):
    """Models as points of two metrics (default: size against accuracy), frontier marked.

    Click a point to select it, shift-click to add, drag a box to select many; the
    selection is the registry's. Pickers choose the axes, colour and size; the
    frontier's directions are ``x_better`` / ``y_better`` ("lower" or "higher").

    Examples
    --------
    >>> scatter = cnc.EfficiencyScatter(reg, x="latency_ms", y="accuracy", color="sparsity")
    >>> scatter.x = "macs"      # the view follows
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
    filters = traitlets.Dict().tag(sync=True)
    filtered_out = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(
        self,
        registry: ModelRegistry,
        x: str = "size_bytes",
        y: str = "accuracy",
        color: str | None = None,
        size: str | None = None,
        **kwargs: Any,
    ) -> None:
        state = scatter_state(registry)
        for axis, metric in (("x", x), ("y", y), ("color", color), ("size", size)):
            if metric and state["metrics"] and metric not in state["metrics"]:
                raise ValueError(
                    f"{axis}={metric!r} is not a numeric metric of this registry; "
                    f"choose one of {state['metrics']}"
                )
        kwargs.setdefault("log_x", default_log(x))
        kwargs.setdefault("log_y", default_log(y))
        super().__init__(x=x, y=y, color=color or "", size=size or "", **state, **kwargs)
        self.registry = registry
        self._selection_link = link_selection(self, registry)
        # reg.filters (metric -> [low, high]) dims the models outside it.
        self._filter_link = link_filters(self, registry)
        registry.observe(self._refresh, names="revision")

    @traitlets.observe("x", "y")
    def _axis_changed(self, change: dict[str, Any]) -> None:
        setattr(self, f"log_{change['name']}", default_log(change["new"]))

    def _refresh(self, _change: Any = None) -> None:
        state = scatter_state(self.registry)
        with self.hold_sync():
            for key, value in state.items():
                setattr(self, key, value)

    def pareto(self) -> list[str]:
        """The models on the frontier of the current axes and directions."""
        return self.registry.pareto(self.x, self.y, x_better=self.x_better, y_better=self.y_better)
