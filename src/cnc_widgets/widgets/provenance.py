"""ProvenanceGraph: the forest of models, coloured by a metric, clickable to select."""

from __future__ import annotations

from typing import Any

import pandas as pd
import traitlets

from ..formatting import METRIC_HELP, metric_kind
from ..registry import PROVENANCE_COLUMNS, ModelRegistry
from ._bundle import bundle
from ._sync import json_value
from ._view import RegistryView, Summary, model_table


def provenance_nodes(registry: ModelRegistry) -> list[dict[str, Any]]:
    """One JSON-able dict per model: name, parent, operation, params and metrics."""
    table = registry.metrics()
    nodes = []
    for name, row in table.iterrows():
        measured = {
            k: json_value(v)
            for k, v in row.items()
            if k not in PROVENANCE_COLUMNS and _is_number(v)
        }
        nodes.append(
            {
                "name": str(name),
                "parent": row.get("parent") if isinstance(row.get("parent"), str) else None,
                "operation": row.get("operation")
                if isinstance(row.get("operation"), str)
                else None,
                "params": json_value(row.get("operation_params") or {}),
                "shown_params": registry.record(str(name)).info.get("given"),
                "metrics": measured,
            }
        )
    return nodes


def metric_descriptions(registry: ModelRegistry, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Per numeric metric: its kind (bytes, ms, fraction, count, number) and any declared
    format, unit and range, so the browser prints and scales it as the source meant."""
    names = sorted({k for n in nodes for k in n["metrics"]})
    out = {}
    for name in names:
        declared = dict(registry.metric_info.get(name, {}))
        out[name] = {**json_value(declared), "kind": metric_kind(name, declared)}
        if name in METRIC_HELP:
            out[name]["description"] = METRIC_HELP[name]
    return out


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return not pd.isna(value) and isinstance(float(value), float)
    except (TypeError, ValueError):
        return False


class ProvenanceGraph(RegistryView):
    """The provenance forest of a registry, left to right, one column per depth.

    Click a model to select it (shift-click to add, drag a box with shift held to select
    every model inside); the selection is the registry's, shared with every other view.
    Ctrl/Cmd + wheel zooms (plain wheels too once the view was clicked into; otherwise
    the notebook scrolls), drag to pan. Arrow keys move between models, Enter selects,
    Escape clears. Models that ``reg.filters`` leaves out are dimmed.

    Parameters
    ----------
    registry : ModelRegistry
    color_by : str
        Metric that colours the models (viridis; missing values are hollow grey).
    color_domain : "data", "unit", "zero" or (low, high)
        Range of the colour scale: the data's range (default), 0..1, 0..max, or fixed.
    size_by : str
        Optional second metric mapped to the marks' area ("" for none).
    columns : "depth" or "operation"
        One column per depth in the tree, or one per operation (every quantized model in
        one column).
    pareto : dict
        Marks the models on the Pareto frontier of two metrics (green ring), as
        ``reg.pareto(x, y)`` finds them; ``{}`` turns it off.

    Examples
    --------
    >>> graph = ProvenanceGraph(reg, color_by="accuracy")
    >>> graph  # doctest: +SKIP

    Traits (besides :class:`RegistryView`'s ``selected``, ``filters``, ``filtered_out``):
    ``nodes`` and ``metric_info`` are Python -> browser; ``color_by``, ``color_domains``,
    ``size_by``, ``columns`` and ``pareto`` are set from either side.
    """

    _esm = bundle("provenance")
    nodes = traitlets.List(traitlets.Dict()).tag(sync=True)
    color_by = traitlets.Unicode("accuracy").tag(sync=True)
    # metric -> "data" | "unit" | "zero" | "declared" | [low, high]: the colour scale's range.
    color_domains = traitlets.Dict().tag(sync=True)
    size_by = traitlets.Unicode("").tag(sync=True)
    columns = traitlets.Enum(["depth", "operation"], "depth").tag(sync=True)
    # The frontier marked on the graph: {"x", "y", "x_better", "y_better"}; {} for none.
    # A dashboard keeps it on its scatter's axes.
    pareto = traitlets.Dict(
        {"x": "size_bytes", "y": "accuracy", "x_better": "lower", "y_better": "higher"}
    ).tag(sync=True)
    # Per metric: kind, format, unit, range and description (Python -> browser).
    metric_info = traitlets.Dict().tag(sync=True)

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        color_by: str | None = None,
        color_domain: str | tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> None:
        # Coloured by the task's quality (accuracy, perplexity, f1) unless told otherwise.
        color_by = color_by or registry.task.quality
        kwargs.setdefault("pareto", registry.task.default_axes())
        super().__init__(registry, color_by=color_by, **kwargs)
        if color_domain is not None:
            self.color_domains = {**self.color_domains, color_by: _domain(color_domain)}
        self._refresh()
        self.observe_registry(self._refresh, "revision")

    def _refresh(self, _change: Any = None) -> None:
        nodes = provenance_nodes(self.registry)
        self.metric_info = metric_descriptions(self.registry, nodes)
        self.nodes = nodes

    def summary_table(self) -> Summary:
        """The models in provenance order, with the metric they are coloured by."""
        table = model_table(self.registry)
        if self.color_by not in table.columns:
            metrics = self.registry.metrics()
            if self.color_by in metrics.columns:
                table[self.color_by] = metrics[self.color_by]
        table.insert(0, "selected", [n in self.selected for n in table.index])
        roots = int(table["parent"].isna().sum()) if "parent" in table else len(table)
        return Summary(
            f"Provenance: {len(table)} models from {roots} root{'s' if roots != 1 else ''}, "
            f"coloured by {self.color_by}",
            table,
        )


def _domain(value: str | tuple[float, float]) -> str | list[float]:
    if isinstance(value, str):
        if value not in ("data", "unit", "zero", "declared"):
            raise ValueError(
                f"color_domain {value!r} is not one of 'data', 'unit', 'zero', 'declared' "
                "or a (low, high) pair"
            )
        return value
    low, high = (float(v) for v in value)
    if not low < high:
        raise ValueError(f"color_domain ({low}, {high}): low must be below high")
    return [low, high]


def show_provenance(
    registry: ModelRegistry, *, color_by: str | None = None, **kwargs: Any
) -> ProvenanceGraph:
    """Show the provenance graph of ``registry`` (keywords as :class:`ProvenanceGraph`).

    Examples
    --------
    >>> import cnc_widgets as cnc
    >>> cnc.show_provenance(reg, color_domain=(0, 1), columns="operation")  # doctest: +SKIP
    """
    return ProvenanceGraph(registry, color_by=color_by, **kwargs)
