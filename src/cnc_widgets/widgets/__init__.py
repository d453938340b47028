"""The notebook views: anywidgets over one registry, with their JavaScript in js/src/views/.

Owns the widget classes, what they sync to the browser (:mod:`._sync`) and the bundle
loader (:mod:`._bundle`). Imports the registry and the comparison; nothing in the core
imports this package (``cnc_widgets.__init__`` loads it lazily).
"""

from .dashboard import Dashboard, dashboard
from .details import SelectionDetails
from .diff import PredictionDiff
from .filter_panel import FilterPanel
from .provenance import ProvenanceGraph, show_provenance
from .scatter import EfficiencyScatter

__all__ = [
    "Dashboard",
    "EfficiencyScatter",
    "FilterPanel",
    "PredictionDiff",
    "ProvenanceGraph",
    "SelectionDetails",
    "dashboard",
    "show_provenance",
]
