"""Comparison of two registered models: what compression changed between a and b.

:class:`Comparison` (:mod:`.core`, with the per-module measures of :mod:`.modules`) asks a
:class:`ResultSource` (:mod:`.source`; the registry is one) for results, models and a cache;
:mod:`.transport` carries one comparison to a worker (Dask) and back.
"""

from __future__ import annotations

from .core import DEFAULT_KS, Comparison
from .source import ResultSource
from .transport import DetachedSource, MissingMeasure, summary_task

__all__ = [
    "DEFAULT_KS",
    "Comparison",
    "DetachedSource",
    "MissingMeasure",
    "ResultSource",
    "summary_task",
]
