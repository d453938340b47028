"""Compiled single-pass reductions of module outputs on the CPU (numba).

Activation statistics need, for every hooked output, its minimum, maximum, sum, sum of
squares and nonzero count, plus a histogram of a fixed sample of its elements. As torch
operations that is five passes over memory and a handful of Python calls per output,
which cost as much again as the forward pass of a small CNN. :func:`moments` does it in
one vectorised pass: min, max and the nonzero count on the float32 bit patterns (a
float min/max reduction would not vectorise), sums in float64 in the same loop.
:func:`bin_sample` bins the sample straight into the
module's histogram as the torch path does (:mod:`.histogram`): float32 arithmetic, then a
check against the edges, so every count is exact.

Both release the GIL, so a worker thread reducing outputs runs beside the forward pass.
They are compiled for one signature each when this module is imported, and cached on disk
next to this file (a few seconds once per installation, then about a second per
process); one process at a time compiles or loads them (a file lock), because numba's
cache can pair one process's index with another's code when they write it at once (numba
issue 10128: segfaults). Importing this module imports numba, so
:class:`~cnc_widgets.evaluate.stats.RunningStats` imports it on first use, and uses
torch operations where numba cannot be imported; outputs on an accelerator always do.

Example
-------
>>> import numpy as np
>>> moments(np.array([-1.0, 0.0, 2.0], np.float32), 0.0)
(-1.0, 2.0, 1.0, 5.0, 2)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator

import numba
import numpy as np

__all__ = [
    "bin_sample",
    "moments",
    "pair_sums_tokens",
    "reduce_and_bin",
    "weight_change",
]


@contextlib.contextmanager
def _one_process_at_a_time() -> Iterator[None]:
    """An exclusive lock shared by every process that imports this file (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    digest = hashlib.sha1(os.path.abspath(__file__).encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"cnc_widgets-kernels-{digest}.lock")
    try:
        lock = open(path, "a")
    except OSError:  # another user's lock file in a shared temporary folder
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_MASK = np.int32(0x7FFFFFFF)


def moments(x: np.ndarray, shift: float) -> tuple[float, float, float, float, int]:
    """``(min, max, sum(x - shift), sum((x - shift)**2), nonzero count)`` of float32 ``x``.

    Min and max compare integer keys: a float32's bits with the magnitude bits flipped
    when negative order like the floats, NaNs outside +-inf, so a NaN comes back as
    the min or max and is seen by ``math.isfinite``. -0.0 counts as zero. Sums are
    float64; ``reassoc`` lets them run in vector lanes (the order of additions, not
    the precision, differs from a sequential sum).

    One loop over all elements, keys and sums together, with ``min``/``max`` on the
    keys: LLVM vectorises it whole (about 0.3 ns an element here). Splitting it into
    blocks with a select per step and an int32 count per block kept the loops scalar
    (2-4 ns an element, more than the forward pass of a small CNN on its outputs).
    """
    bits = x.view(np.int32)
    klo = np.int32(_MASK)
    khi = np.int32(~_MASK)
    s1 = 0.0
    s2 = 0.0
    nonzero = 0
    for i in range(bits.size):
        b = bits[i]
        # np.int32 around the steps: numba widens int32 arithmetic to int64, which
        # halves the vector width.
        key = np.int32(b ^ np.int32(np.int32(b >> np.int32(31)) & _MASK))
        klo = min(klo, key)
        khi = max(khi, key)
        nonzero += np.int32(b & _MASK) != np.int32(0)
        d = np.float64(x[i]) - shift
        s1 += d
        s2 += d * d
    ends = np.empty(2, np.int32)
    ends[0] = klo ^ np.int32(np.int32(klo >> np.int32(31)) & _MASK)
    ends[1] = khi ^ np.int32(np.int32(khi >> np.int32(31)) & _MASK)
    lo_hi = ends.view(np.float32)
    return np.float64(lo_hi[0]), np.float64(lo_hi[1]), s1, s2, nonzero


def pair_sums_tokens(
    a: np.ndarray, b: np.ndarray, real: np.ndarray, width: np.int64
) -> tuple[float, float, float, float, float]:
    """``(sum a**2, sum |a|, sum |b|, sum (b - a)**2, sum |b - a|)`` of two float32 arrays
    of one size, in float64, in one pass (the layer table's activation measures), over the
    real tokens only: ``a`` and ``b`` hold ``real.size`` tokens of ``width`` values each, and
    a token whose ``real`` is False is skipped (:func:`pair_sums`: all of them).

    Five torch reductions (and the ``b - a`` temporary) cost about as much as a small
    model's forward pass over the same outputs; the inner loop vectorises.
    """
    aa = 0.0
    la = 0.0
    lb = 0.0
    dd = 0.0
    ld = 0.0
    for t in range(real.size):
        if not real[t]:
            continue
        for i in range(t * width, (t + 1) * width):
            x = np.float64(a[i])
            y = np.float64(b[i])
            d = y - x
            aa += x * x
            la += abs(x)
            lb += abs(y)
            dd += d * d
            ld += abs(d)
    return aa, la, lb, dd, ld


_ONE_TOKEN = np.ones(1, np.bool_)


def pair_sums(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float, float]:
    """:func:`pair_sums_tokens` of the whole arrays (one token of ``a.size`` values)."""
    return pair_sums_tokens(a, b, _ONE_TOKEN, a.size)


def weight_change(
    a: np.ndarray, b: np.ndarray, bounds: np.ndarray, counts: np.ndarray
) -> tuple[int, int, int, float, float, float, float, float]:
    """The layer table's weight measures of two float64 weight vectors in one pass.

    Returns ``(zero in both, zero in a only, zero in b only, sum a^2, sum (b - a)^2,
    sum |b - a|, sum |a|, sum |b|)`` and adds to ``counts`` (``len(bounds) + 1`` bins) the
    relative changes ``|b - a| / |a|``: 0 where both are 0, infinite where only ``a`` is,
    in bin ``k`` = the number of ``bounds`` at or below it (``torch.bucketize(...,
    right=True)``); an element with NaN in either counts in no bin. No fastmath: the
    comparisons with the bounds are exact, as in the torch path.
    """
    zb = 0
    za_only = 0
    zb_only = 0
    aa = 0.0
    dd = 0.0
    ld = 0.0
    la = 0.0
    lb = 0.0
    for i in range(a.size):
        x = a[i]
        y = b[i]
        d = abs(y - x)
        m = abs(x)
        if x == 0.0:
            if y == 0.0:
                zb += 1
            else:
                za_only += 1
        elif y == 0.0:
            zb_only += 1
        aa += x * x
        dd += d * d
        ld += d
        la += m
        lb += abs(y)
        if x != x or y != y:
            continue
        if m > 0.0:
            r = d / m
        elif d > 0.0:
            r = np.inf
        else:
            r = 0.0
        k = 0
        for e in bounds:
            if r >= e:
                k += 1
        counts[k] += 1
    return zb, za_only, zb_only, aa, dd, ld, la, lb


def bin_sample(
    x: np.ndarray,
    rows: int,
    positions: np.ndarray,
    scale: np.float32,
    offset: np.float32,
    edges: np.ndarray,
    hist: np.ndarray,
) -> None:
    """Add the sampled elements of ``x`` (``rows`` equal rows, ``positions`` in each
    row; empty: every element) to ``hist``, ``len(edges) + 1`` counts: index ``k``
    counts ``edges[k - 1] <= x < edges[k]``, index 0 ``x < edges[0]``, the last
    ``x >= edges[-1]`` (``searchsorted(edges, x, side="right")``).

    ``int(clamp(x * scale + offset, 0, len(edges)))`` in float32 finds the bin or a
    neighbour (two roundings); the loops move it to the bin whose edges hold ``x``.
    ``edges`` are :attr:`.histogram.Bins.edges32`. A NaN (never passed: :func:`moments`
    reports it first) would land in bin 0 rather than index out of bounds.
    """
    zero = np.float32(0.0)
    top = np.float32(edges.size)
    every = positions.size == 0
    if every:
        rows, per_row, count = 1, x.size, x.size
    else:
        per_row, count = x.size // rows, positions.size
    for r in range(rows):
        base = r * per_row
        for j in range(count):
            v = x[base + j] if every else x[base + positions[j]]
            b = v * scale + offset
            b = top if b > top else (b if b >= zero else zero)
            k = np.int64(b)
            while k > 0 and v < edges[k - 1]:
                k -= 1
            while k < edges.size and v >= edges[k]:
                k += 1
            hist[k] += 1


def reduce_and_bin(
    x: np.ndarray,
    shift: float,
    rows: int,
    positions: np.ndarray,
    scale: np.float32,
    offset: np.float32,
    edges: np.ndarray,
    hist: np.ndarray,
) -> tuple[float, float, float, float, int]:
    """:func:`moments`, then :func:`bin_sample` unless ``x`` holds NaN or inf: one call
    per output once its module's range is known."""
    out = moments(x, shift)
    if np.isfinite(out[0]) and np.isfinite(out[1]):
        bin_sample(x, rows, positions, scale, offset, edges, hist)
    return out


with _one_process_at_a_time():
    moments = numba.njit(
        "Tuple((f8, f8, f8, f8, i8))(f4[::1], f8)",
        nogil=True,
        cache=True,
        fastmath={"reassoc", "contract"},
    )(moments)
    pair_sums_tokens = numba.njit(
        "Tuple((f8, f8, f8, f8, f8))(f4[::1], f4[::1], b1[::1], i8)",
        nogil=True,
        cache=True,
        fastmath={"reassoc", "contract"},
    )(pair_sums_tokens)
    weight_change = numba.njit(
        "Tuple((i8, i8, i8, f8, f8, f8, f8, f8))(f8[::1], f8[::1], f8[::1], i8[::1])",
        nogil=True,
        cache=True,
    )(weight_change)
    # No fastmath: the comparisons with the edges must be exact (no NaN/inf assumptions,
    # no reassociation), as in torch's.
    bin_sample = numba.njit(
        "void(f4[::1], i8, i8[::1], f4, f4, f4[::1], i8[::1])", nogil=True, cache=True
    )(bin_sample)
    reduce_and_bin = numba.njit(
        "Tuple((f8, f8, f8, f8, i8))(f4[::1], f8, i8, i8[::1], f4, f4, f4[::1], i8[::1])",
        nogil=True,
        cache=True,
    )(reduce_and_bin)
