"""The Pareto frontier of two metrics: the models no other model beats on both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["frontier_names", "pareto_front"]

DIRECTIONS = ("lower", "higher")


def pareto_front(
    x: Any, y: Any, *, x_better: str = "lower", y_better: str = "higher"
) -> np.ndarray:
    """Indices of the points on the Pareto frontier, in order of increasing x.

    A point is on the frontier when no other point is at least as good on both
    metrics and strictly better on one. Points with NaN or inf in either metric
    are never on it; identical points are either all on it or all off it.

    Parameters
    ----------
    x, y : array-like of float, shape (N,)
    x_better, y_better : {"lower", "higher"}
        Which direction is better on each axis (default: smaller x, larger y,
        as for size against accuracy).

    Examples
    --------
    >>> pareto_front([1, 2, 3, 2], [0.5, 0.9, 0.95, 0.7]).tolist()
    [0, 1, 2]
    """
    for name, value in (("x_better", x_better), ("y_better", y_better)):
        if value not in DIRECTIONS:
            raise ValueError(f"{name} must be 'lower' or 'higher', got {value!r}")
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {xs.shape} and {ys.shape}")
    # Turn both into "smaller is better", then one sweep in x order.
    gx = xs if x_better == "lower" else -xs
    gy = -ys if y_better == "higher" else ys
    ok = np.flatnonzero(np.isfinite(gx) & np.isfinite(gy))
    order = ok[np.lexsort((gy[ok], gx[ok]))]
    front: list[int] = []
    best = np.inf
    i = 0
    while i < len(order):
        # A run of points with the same x: only those with the run's best y can be on it.
        j = i
        while j < len(order) and gx[order[j]] == gx[order[i]]:
            j += 1
        run = order[i:j]
        run_best = gy[run[0]]
        if run_best < best:
            front.extend(int(k) for k in run if gy[k] == run_best)
            best = run_best
        i = j
    return np.array(sorted(front, key=lambda k: (xs[k], k)), dtype=np.int64)


def frontier_names(names: Sequence[str], x: Any, y: Any, **directions: str) -> list[str]:
    """:func:`pareto_front` as model names."""
    return [names[i] for i in pareto_front(x, y, **directions)]
