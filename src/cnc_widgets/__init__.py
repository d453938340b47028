"""cnc_widgets: compare compressed neural networks in the notebook, beside the training code.

Examples
--------
>>> import cnc_widgets as cnc
>>> reg = cnc.ModelRegistry()
>>> reg.set_data(x, y)
>>> reg.add("base", model)
>>> cnc.show_provenance(reg)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .compress import operations
from .registry import EvaluationError, ModelRegistry

__version__ = "0.1.0"

# Views load lazily: the core (registry, metrics) works without a notebook stack.
_WIDGETS = {"FilterPanel", "ProvenanceGraph", "SelectionDetails", "show_provenance"}
_WIDGETS |= {"EfficiencyScatter", "PredictionDiff", "dashboard"}
_WIDGETS |= {"ActivationHeatmap", "show_heatmap"}
_REPORT = {"export_report"}

__all__ = [
    "EvaluationError",
    "ModelRegistry",
    "__version__",
    "operations",
    *sorted(_WIDGETS | _REPORT),
]


def __getattr__(name: str) -> Any:
    if name in _WIDGETS:
        return getattr(import_module(".widgets", __name__), name)
    if name in _REPORT:
        return getattr(import_module(".widgets.report", __name__), name)
    raise AttributeError(f"module 'cnc_widgets' has no attribute {name!r}")
