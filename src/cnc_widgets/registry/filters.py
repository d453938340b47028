"""Metric-range filters shared by every view: which models are in, which are out.

``ModelRegistry.filters`` maps a metric to ``(low, high)`` (either end may be ``None`` for
an open end). A model is out when any filtered metric is missing for it or lies outside
its closed range; the views dim the models that are out (they stay clickable).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["check_filters", "outside"]


def _bound(metric: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"filter on {metric!r}: bound {value!r} is not a number; "
            "give (low, high) numbers, or None for an open end"
        ) from None
    if math.isnan(number):
        raise ValueError(f"filter on {metric!r}: a bound is NaN; use None for an open end")
    return number


def check_filters(
    filters: Mapping[str, Any], columns: Any = None
) -> dict[str, tuple[float | None, float | None]]:
    """``filters`` as ``{metric: (low, high)}`` with float bounds; a clear error otherwise.

    ``columns``, when given, are the metric names that exist; a filter on another raises.
    """
    if not isinstance(filters, Mapping):
        kind = type(filters).__name__
        raise ValueError(f"filters must be a dict metric -> (low, high), not {kind}")
    known = None if columns is None else set(columns)
    checked: dict[str, tuple[float | None, float | None]] = {}
    for metric, bounds in filters.items():
        if known is not None and metric not in known:
            raise ValueError(
                f"cannot filter on {metric!r}: no such metric (known: {sorted(map(str, known))})"
            )
        if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2:
            raise ValueError(f"filter on {metric!r} must be a pair (low, high), not {bounds!r}")
        low, high = _bound(metric, bounds[0]), _bound(metric, bounds[1])
        if low is not None and high is not None and low > high:
            raise ValueError(f"filter on {metric!r}: low {low} is above high {high}; swap them")
        checked[str(metric)] = (low, high)
    return checked


def outside(
    table: pd.DataFrame, filters: Mapping[str, tuple[float | None, float | None]]
) -> list[str]:
    """Names (``table``'s index) of the models a filter leaves out, in table order."""
    if not filters or table.empty:
        return []
    out = pd.Series(False, index=table.index)
    for metric, (low, high) in filters.items():
        if metric not in table.columns:
            out[:] = True
            break
        values = pd.to_numeric(table[metric], errors="coerce")
        bad = values.isna()
        if low is not None:
            bad |= values < low
        if high is not None:
            bad |= values > high
        out |= bad
    return [str(n) for n in table.index[out.to_numpy()]]
