"""The registry: one study's models, provenance, evaluation set, results and selection.

``ModelRegistry`` (:mod:`.facade`) is what users hold and every view follows. Behind it:
:mod:`.catalogue` (records and live models, rebuild by replay), :mod:`.cache` (the keys of
results and measures, memory and store), :mod:`.scheduling` (evaluation and comparison here
or on an executor), :mod:`.naming` (default child names) and :mod:`.values` (measures as
JSON).
"""

from __future__ import annotations

from ..evaluate.runner import EvaluationError
from .facade import EFFICIENCY_COLUMNS, PROVENANCE_COLUMNS, ModelRegistry
from .naming import default_name
from .values import decode_value, encode_value

__all__ = [
    "EFFICIENCY_COLUMNS",
    "PROVENANCE_COLUMNS",
    "EvaluationError",
    "ModelRegistry",
    "decode_value",
    "default_name",
    "encode_value",
]
