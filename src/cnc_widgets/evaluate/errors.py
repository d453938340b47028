"""What goes wrong while a model is evaluated, as exceptions the callers can catch by type.

Example
-------
>>> from cnc_widgets.evaluate.errors import EvaluationError
>>> issubclass(EvaluationError, RuntimeError)
True
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvaluationError", "NonFinite"]


class EvaluationError(RuntimeError):
    """A model failed, or produced NaN/inf, while it was being evaluated."""


class NonFinite(Exception):
    """A module output held NaN/inf. ``batch`` is the tag of its batch
    (see :meth:`.stats.RunningStats.begin_batch`)."""

    def __init__(self, module: str, value: float, batch: Any = None) -> None:
        super().__init__(module, value)
        self.module, self.value, self.batch = module, value, batch
