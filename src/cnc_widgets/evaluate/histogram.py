"""The histogram bins of one module's activations: range, edges, and exact bin arithmetic.

A module's histogram has ``bins`` inner bins between the reported edges
``e_0 < ... < e_bins`` (``np.linspace(lo, hi, bins + 1)``, float64), bin ``k + 1`` holding
``[e_k, e_k+1)``, plus an underflow (``x < e_0``) and an overflow (``x >= e_bins``) count:
for every value, the index ``np.searchsorted(edges, x, side="right")``.

Binning millions of elements needs arithmetic, not a search: ``x * scale + offset`` in
float32. Its two roundings move a value within about 1e-7 (relative) of an edge into the
neighbouring bin, so the bin found that way, where it lands that close to an edge, is
checked against :attr:`Bins.edges32`, the
smallest float32 at or above each edge (for a float32 ``x``, ``x >= e_k`` exactly when
``x >= edges32[k]``), and moved by one until it agrees. The compiled path
(:func:`.kernels.bin_sample`) and :func:`torch_bins` do the same, so both give the counts
``np.histogram`` would give over the reported edges.

Example
-------
>>> import numpy as np, torch
>>> bins = Bins(0.0, 1.0, 10)
>>> x = torch.tensor([-0.5, 0.0, 0.3, 0.7, 1.0], dtype=torch.float32)
>>> lower, upper = bins.tables(x.device)
>>> idx = torch_bins(x, bins.scale32, bins.offset32, lower, upper, 11, bins.slack, bins.steps)
>>> idx.tolist() == np.searchsorted(bins.edges, x.numpy(), side="right").tolist()
True
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["Bins", "choose_range", "torch_bins"]

_ULP = 2.0**-24  # float32 unit roundoff


class Bins:
    """``bins`` histogram bins over ``[lo, hi)`` and what the two paths bin them with.

    Attributes
    ----------
    edges
        ``(bins + 1,)`` float64, the edges reported with the counts.
    scale32, offset32
        float32 ``bins / (hi - lo)`` and ``1 - lo * scale``: ``int(x * scale32 +
        offset32)`` is the bin index, or one of its neighbours near an edge.
    edges32
        ``(bins + 1,)`` float32, the smallest float32 at or above each edge.
    slack
        How far (in bins) ``x * scale32 + offset32`` can be from the exact position of
        ``x`` among the edges, for any ``x`` whose bin it can get wrong: tiny unless bins
        are only a few float32 steps wide (a narrow range far from zero).
    steps
        ``1 + int(slack)``: how many bins the arithmetic can be off by, at most.
    """

    __slots__ = ("_tables", "edges", "edges32", "offset32", "scale32", "slack", "steps")

    def __init__(self, lo: float, hi: float, bins: int) -> None:
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(
                f"a histogram range must be finite with lo < hi, got ({lo}, {hi}); "
                "pass hist_ranges from EvalResult.hist_ranges() or leave the module out"
            )
        scale = bins / (hi - lo)
        self.edges = np.linspace(lo, hi, bins + 1)
        self.scale32 = np.float32(scale)
        self.offset32 = np.float32(1.0 - lo * scale)
        with np.errstate(over="ignore"):
            near = self.edges.astype(np.float32)
        below = near < self.edges  # rounded down: the next float32 up is the first >= edge
        near[below] = np.nextafter(near[below], np.float32(np.inf))
        self.edges32 = near
        # Each of the four roundings (scale, offset, product, sum) errs by at most
        # _ULP * its magnitude, in all below 5 * _ULP * reach bins for |x * scale| <=
        # reach; further out the error grows more slowly than the distance to the
        # overflow (underflow) bin, which leaves at most 7 * _ULP * reach bins wrong.
        reach = (abs(lo) + abs(hi)) * scale + bins + 4
        self.slack = 8 * _ULP * reach
        self.steps = 1 + int(self.slack)
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lower, upper)``, float32 ``(bins + 2,)``: index ``k`` holds the float32
        ``x`` with ``lower[k] <= x < upper[k]`` (-inf and +inf at the ends)."""
        found = self._tables.get(device)
        if found is None:
            inf = np.array([np.inf], np.float32)
            lower = torch.from_numpy(np.concatenate([-inf, self.edges32]))
            upper = torch.from_numpy(np.concatenate([self.edges32, inf]))
            found = self._tables[device] = (lower.to(device), upper.to(device))
        return found


def torch_bins(
    x: torch.Tensor,
    scale: float | torch.Tensor,
    offset: float | torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    top: float,
    slack: float,
    steps: int,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """Histogram indices (int64, plus ``base``) of float32 ``x``, as
    :func:`.kernels.bin_sample` bins them.

    ``clamp(x * scale + offset, 0, top)`` in float32, truncated. Only where that lands
    within ``slack`` of a whole number (:attr:`Bins.slack`) can the bin be wrong: those
    elements alone are moved by one towards the bin whose ``[lower, upper)`` holds
    ``x``, ``steps`` times (checking every element costs two gathers each, several
    times the arithmetic). Selecting them reads a count back from the device.
    Several modules at once: ``scale``, ``offset`` and ``base`` (each element's module
    index times ``bins + 2``) per element, ``lower`` and ``upper`` the modules' tables
    one after another, ``slack`` and ``steps`` their largest.
    """
    v = x.mul(scale).add_(offset)
    idx = v.clamp(0.0, top).to(torch.int64)
    if base is not None:
        idx.add_(base)
    near = v.sub_(v.round()).abs_() <= slack
    sel = near.nonzero().squeeze(1)
    if sel.numel():
        xs, k = x.index_select(0, sel), idx.index_select(0, sel)
        for _ in range(steps):
            k += (xs >= upper.index_select(0, k)).to(torch.int64)
            k -= (xs < lower.index_select(0, k)).to(torch.int64)
        idx.index_copy_(0, sel, k)
    return idx


def choose_range(lo: float, hi: float, mean: float, std: float) -> tuple[float, float]:
    """A module's histogram range from its first output: ``mean +- 6 std`` within the
    output's extremes, with room for later batches to reach further."""
    a, b = max(lo, mean - 6 * std), min(hi, mean + 6 * std)
    span = b - a
    # Later batches may reach past this batch's extremes: leave them room, except at an
    # exact 0 (ReLU outputs), which should open the first bin.
    if a == lo and lo != 0.0:
        a -= 0.1 * span
    if b == hi and hi != 0.0:
        b += 0.1 * span
    if b <= a:
        pad = 0.5 * max(abs(a), 1.0)
        a, b = a - pad, b + pad
    return a, b
