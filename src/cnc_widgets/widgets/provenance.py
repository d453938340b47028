"""ProvenanceGraph: the forest of models, coloured by a metric, clickable to select."""

from __future__ import annotations

from typing import Any

import pandas as pd
import traitlets

from ..registry import PROVENANCE_COLUMNS, ModelRegistry
from ._bundle import bundle
from ._sync import json_value, link_selection
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


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return not pd.isna(value) and isinstance(float(value), float)
    except (TypeError, ValueError):
        return False


class ProvenanceGraph(RegistryView):
    """The provenance forest of a registry, left to right, one column per depth.

    Click a model to select it (shift-click to add); the selection is the
    registry's, shared with every other view. Wheel to zoom, drag to pan.

    Examples
    --------
    >>> graph = ProvenanceGraph(reg, color_by="accuracy")
    >>> graph  # doctest: +SKIP
    """

    _esm = bundle("provenance")
    nodes = traitlets.List(traitlets.Dict()).tag(sync=True)
    color_by = traitlets.Unicode("accuracy").tag(sync=True)

    def __init__(
        self, registry: ModelRegistry, *, color_by: str = "accuracy", **kwargs: Any
    ) -> None:
        super().__init__(color_by=color_by, **kwargs)
        self.registry = registry
        self.nodes = provenance_nodes(registry)
        self._selection_link = link_selection(self, registry)
        registry.observe(self._refresh, names="revision")

    def _refresh(self, _change: Any = None) -> None:
        self.nodes = provenance_nodes(self.registry)

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


def show_provenance(registry: ModelRegistry, *, color_by: str = "accuracy") -> ProvenanceGraph:
    """Show the provenance graph of ``registry``.

    Examples
    --------
    >>> import cnc_widgets as cnc
    >>> cnc.show_provenance(reg)  # doctest: +SKIP
    """
    return ProvenanceGraph(registry, color_by=color_by)
