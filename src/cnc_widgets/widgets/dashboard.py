"""The views of one registry in one layout, linked through ``reg.selected``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets

from ..registry import ModelRegistry
from .details import SelectionDetails
from .diff import PredictionDiff
from .filter_panel import FilterPanel
from .provenance import ProvenanceGraph
from .scatter import EfficiencyScatter

# (attribute, factory, row): views in order; row "top" shares a row, "full" gets its own.
# More views join by appending here (the layer heatmap does).
VIEWS: list[tuple[str, Callable[[ModelRegistry], Any], str]] = [
    ("provenance", ProvenanceGraph, "top"),
    ("scatter", EfficiencyScatter, "top"),
    ("filters", FilterPanel, "top"),
    ("details", SelectionDetails, "top"),
    ("diff", PredictionDiff, "full"),
]


class Dashboard(ipywidgets.VBox):
    """Every view of ``registry``; select two models in the graph or the scatter and the
    diff compares them. ``.views`` maps names to the view widgets.

    Examples
    --------
    >>> board = cnc.dashboard(reg)
    >>> board.views["scatter"].x = "latency_ms"
    """

    def __init__(self, registry: ModelRegistry, views: list | None = None) -> None:
        self.registry = registry
        self.views: dict[str, Any] = {}
        top, full = [], []
        for name, factory, row in views if views is not None else VIEWS:
            widget = factory(registry)
            widget.layout = ipywidgets.Layout(
                flex="1 1 460px", min_width="380px", margin="0 8px 8px 0"
            )
            self.views[name] = widget
            (top if row == "top" else full).append(widget)
        rows = []
        if top:
            rows.append(ipywidgets.Box(top, layout=ipywidgets.Layout(flex_flow="row wrap")))
        rows.extend(full)
        super().__init__(rows)
        self._follow_scatter_axes()

    def _follow_scatter_axes(self) -> None:
        """The graph marks the frontier of the scatter's axes, and follows them."""
        graph, scatter = self.views.get("provenance"), self.views.get("scatter")
        if graph is None or scatter is None:
            return

        def axes(_change: Any = None) -> None:
            graph.pareto = {
                "x": scatter.x,
                "y": scatter.y,
                "x_better": scatter.x_better,
                "y_better": scatter.y_better,
            }

        scatter.observe(axes, names=["x", "y", "x_better", "y_better"])
        axes()

    def __getattr__(self, name: str) -> Any:
        views = self.__dict__.get("views") or {}
        if name in views:
            return views[name]
        raise AttributeError(name)


def dashboard(registry: ModelRegistry) -> Dashboard:
    """The provenance graph, the efficiency scatter, the filter panel, the selection
    details and the prediction diff, linked.

    Examples
    --------
    >>> import cnc_widgets as cnc
    >>> cnc.dashboard(reg)  # doctest: +SKIP
    """
    return Dashboard(registry)
