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

# (name, factory, row): views in order; views with the same row share it (wrapping when
# narrow), a view alone in its row gets the whole width. More views join by appending
# here, e.g. VIEWS.append(("heatmap", ActivationHeatmap, "layers")).
VIEWS: list[tuple[str, Callable[[ModelRegistry], Any], str]] = [
    ("provenance", ProvenanceGraph, "models"),
    ("scatter", EfficiencyScatter, "models"),
    ("filters", FilterPanel, "controls"),
    ("details", SelectionDetails, "controls"),
    ("diff", PredictionDiff, "diff"),
]


class Dashboard(ipywidgets.VBox):
    """Every view of ``registry``; select two models in the graph or the scatter and the
    diff compares them. ``.views`` maps names to the view widgets (also attributes).

    Examples
    --------
    >>> board = cnc.dashboard(reg)
    >>> board.views["scatter"].x = "latency_ms"
    >>> board.diff.selected_instances
    """

    def __init__(
        self,
        registry: ModelRegistry,
        views: list[tuple[str, Callable[[ModelRegistry], Any], str]] | None = None,
    ) -> None:
        self.registry = registry
        self.views: dict[str, Any] = {}
        rows: dict[str, list[Any]] = {}
        for name, factory, row in views if views is not None else VIEWS:
            widget = factory(registry)
            self.views[name] = widget
            rows.setdefault(row, []).append(widget)
        boxes = []
        for members in rows.values():
            for widget in members:
                basis = "460px" if len(members) > 1 else "100%"
                widget.layout = ipywidgets.Layout(
                    flex=f"1 1 {basis}", min_width="380px", margin="0 8px 8px 0"
                )
            boxes.append(ipywidgets.Box(members, layout=ipywidgets.Layout(flex_flow="row wrap")))
        super().__init__(boxes)
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
    """The provenance graph, the efficiency scatter, the filters, the selection's details
    and the prediction diff of ``registry``, linked through its selection and filters.

    Examples
    --------
    >>> import cnc_widgets as cnc
    >>> cnc.dashboard(reg)  # doctest: +SKIP
    """
    return Dashboard(registry)
