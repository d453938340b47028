"""Running statistics of module outputs: count, mean, std, zero fraction, min, max, histogram.

:class:`RunningStats` gives a forward hook per module and reduces each output as it is
produced, so only scalars and one histogram per module are kept however many instances
pass. CPU outputs go through :mod:`.kernels` (one compiled pass each); outputs on an
accelerator, or anywhere without numba, through torch operations. Histogram bins are
:class:`.histogram.Bins`; the optional worker thread is :mod:`.stats_thread`.

Example
-------
>>> import torch
>>> from cnc_widgets.evaluate.stats import RunningStats
>>> stats = RunningStats(bins=4, hist_ranges={"m": (0.0, 4.0)})
>>> stats.add("m", torch.tensor([[0.5, 1.5], [2.5, 9.0]]))
>>> stats.close()
>>> stats.arrays()["act_hist"].tolist()  # [underflow, 4 bins, overflow]
[[0, 1, 1, 1, 0, 1]]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import NonFinite
from .histogram import Bins, choose_range, torch_bins
from .modules import first_tensor
from .stats_thread import StatsWorker, spare_core

__all__ = ["RunningStats", "compiled_kernels"]


class _Accumulator:
    """Running sums of one module's outputs (float64 Python scalars + a histogram)."""

    __slots__ = ("bins", "count", "hi", "hist", "hist_np", "lo", "nonzero", "s1", "s2", "shift")

    def __init__(self, bins: Bins, hist: torch.Tensor, shift: float) -> None:
        self.count = self.nonzero = 0
        self.s1 = self.s2 = 0.0
        self.lo, self.hi = math.inf, -math.inf
        self.bins, self.hist, self.shift = bins, hist, shift
        # the CPU histogram's memory, for the kernels
        self.hist_np = hist.numpy() if hist.device.type == "cpu" else None

    def add(self, lo: float, hi: float, s1: float, s2: float, nonzero: int, numel: int) -> None:
        self.s1 += s1
        self.s2 += s2
        self.nonzero += int(nonzero)
        self.count += numel
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)


@dataclass
class _Reduced:
    """One output reduced to scalars (0-dim tensors until read back) and a sample."""

    name: str
    acc: _Accumulator
    scalars: list  # min, max, sum, sum of squares, nonzero count (0-dim tensors)
    numel: int
    sample: torch.Tensor
    tag: Any


class RunningStats:
    """Streaming count, mean, std, zero fraction, min, max and histogram per module.

    :meth:`hook` gives a forward hook per module. Each output is reduced when it is
    produced: min, max, sum, sum of squares and nonzero count over every element, and
    a histogram of a fixed sample of its elements (``hist_sample`` positions per
    instance), so only scalars and one histogram per module are kept. The first output
    of a module fixes its histogram range (see
    :func:`cnc_widgets.evaluate.inference.evaluate_model`) and, when the mean is large
    against the spread, a shift subtracted before summing squares to avoid cancellation.

    CPU outputs go through :mod:`.kernels`: one compiled pass per output, sums in
    float64, the sample binned in place. Outputs on an accelerator (and CPU outputs
    where numba is missing) are reduced by torch operations to 0-dim tensors; the
    scalars of a whole batch are read back, and its samples binned with one bincount,
    at :meth:`flush` (called by :meth:`begin_batch` and :meth:`close`). Their sums
    are float32, so the two paths agree to float32 rounding; their histograms are
    exact on both (the counts ``np.histogram`` gives over the reported edges, see
    :mod:`.histogram`), so over the same ranges they agree bin for bin.

    With ``background=True`` the hook only copies the output (a later in-place
    operation such as ``ReLU(inplace=True)`` or ``out += x`` must not change what is
    measured) and a worker thread reduces it, in the same order and with the same
    operations, so the values are identical; at most ``background_bytes`` of copies
    wait at a time. The default ``None`` uses it only for the torch path on the CPU
    with a core left idle by torch's own threads (:func:`spare_core`): the compiled
    pass costs about as much as the copy, and competing with torch's threads, the
    copies and the contention cost more than they save.

    Call :meth:`close` at the end: it reduces what is left and raises the first error
    met (a :class:`NonFinite` carries the tag of its batch, set by :meth:`begin_batch`).
    """

    def __init__(
        self,
        bins: int = 64,
        hist_sample: int | None = 128,
        hist_ranges: Mapping[str, tuple[float, float]] | None = None,
        *,
        background: bool | None = None,
        background_bytes: int = 128 * 2**20,
    ) -> None:
        self.bins, self.hist_sample = bins, hist_sample
        self.hist_ranges = dict(hist_ranges or {})
        self.acc: dict[str, _Accumulator] = {}  # insertion order = execution order
        self.positions: dict[int, np.ndarray] = {}  # row length -> sampled positions
        self.samples: dict[tuple[int, torch.device], torch.Tensor] = {}  # the same, as tensors
        self.layouts: dict[tuple, tuple[torch.Tensor, ...]] = {}  # see _add_histograms
        self.pending: list[_Reduced] = []
        self.background = background  # None: decided on the first output
        self.background_bytes = background_bytes
        self._worker: StatsWorker | None = None
        self._tag: Any = None

    def begin_batch(self, tag: Any) -> None:
        """Finish the previous batch (raising its errors); tag the outputs that follow."""
        worker = self._worker
        if worker is None:
            self.flush()
        else:
            worker.raise_error()
            worker.put("", None, None)  # the worker flushes
        self._tag = tag

    def hook(self, name: str) -> Any:
        """A forward hook that adds the module's output to the statistics of ``name``."""

        def on_output(_m: nn.Module, _args: Any, output: Any) -> None:
            t = first_tensor(output)
            if t is None or not t.is_floating_point():
                return
            if self.background is None:
                cpu = t.device.type == "cpu"
                self.background = cpu and compiled_kernels() is None and spare_core()
            if not self.background:
                self.collect(name, t, self._tag)
                return
            if self._worker is None:
                self._worker = StatsWorker(self, self.background_bytes)
            copy = t.detach().clone(memory_format=torch.contiguous_format)
            self._worker.put(name, copy, self._tag)

        return on_output

    def close(self, *, raise_error: bool = True) -> None:
        """Reduce what is left (waiting for the worker thread); raise the first error."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.drain()
            if raise_error:
                worker.raise_error()
        if raise_error:
            self.flush()
        self.pending = []

    def add(self, name: str, t: torch.Tensor) -> None:
        """Add one output tensor ``(B, ...)`` to module ``name`` (reduced and read back now)."""
        self.collect(name, t)
        self.flush()

    def collect(self, name: str, t: torch.Tensor, tag: Any = None) -> None:
        """Reduce one output ``(B, ...)`` of module ``name``; :meth:`flush` adds it.

        Everything that reads the whole output happens here, so a later in-place change
        of it does not matter.
        """
        flat = t.detach().reshape(-1)
        if flat.dtype != torch.float32:
            flat = flat.float()
        if flat.numel() == 0:
            return
        rows = t.shape[0] if t.dim() > 0 else 1
        if flat.device.type == "cpu" and (kernels := compiled_kernels()) is not None:
            self._collect_compiled(kernels, name, flat, rows, tag)
            return
        acc = self.acc.get(name)
        if acc is None:
            # The module's first output fixes its range and shift: read it back now,
            # after the outputs before it (so NaNs are reported in execution order).
            self.flush()
            scalars = _reductions(flat, 0.0)
            lo, hi, s1, s2, _ = _read_back(scalars)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise NonFinite(name, hi if not math.isfinite(hi) else lo, tag)
            acc = self.acc[name] = self._start(name, flat, s1, s2, lo, hi)
            if acc.shift:
                scalars = _reductions(flat, acc.shift)
            sample = self._sample(flat, rows)
            self.pending.append(_Reduced(name, acc, scalars, flat.numel(), sample, tag))
            self.flush()
            return
        sample = self._sample(flat, rows)
        if sample is flat:
            sample = flat.clone()  # kept past the hook: an in-place change must not reach it
        scalars = _reductions(flat, acc.shift)
        self.pending.append(_Reduced(name, acc, scalars, flat.numel(), sample, tag))

    def _collect_compiled(
        self, kernels: Any, name: str, flat: torch.Tensor, rows: int, tag: Any
    ) -> None:
        """:meth:`collect` for a CPU output: one pass of :mod:`.kernels`, added at once."""
        x = flat.contiguous().numpy()
        acc = self.acc.get(name)
        if acc is not None:
            b = acc.bins
            lo, hi, s1, s2, nonzero = kernels.reduce_and_bin(
                x,
                acc.shift,
                rows,
                self._positions(x.size, rows),
                b.scale32,
                b.offset32,
                b.edges32,
                acc.hist_np,
            )
        else:
            lo, hi, s1, s2, nonzero = kernels.moments(x, 0.0)
        lo, hi = lo + 0.0, hi + 0.0  # -0.0 (a key below 0.0) reads as 0.0
        if not (math.isfinite(lo) and math.isfinite(hi)):
            self.flush()  # outputs before this one (on another device) report first
            raise NonFinite(name, hi if not math.isfinite(hi) else lo, tag)
        if acc is None:  # the first output fixes the range and shift, then is binned
            acc = self.acc[name] = self._start(name, flat, s1, s2, lo, hi)
            if acc.shift:
                _, _, s1, s2, _ = kernels.moments(x, acc.shift)
            positions = self._positions(x.size, rows)
            b = acc.bins
            kernels.bin_sample(x, rows, positions, b.scale32, b.offset32, b.edges32, acc.hist_np)
        acc.add(lo, hi, s1, s2, nonzero, x.size)

    def _positions(self, numel: int, rows: int) -> np.ndarray:
        """Positions in each row that the histogram counts (``_EVERY``: every element)."""
        if self.hist_sample is None or numel <= rows * self.hist_sample:
            return _EVERY
        per_row = numel // rows
        idx = self.positions.get(per_row)
        if idx is None:
            idx = self.positions[per_row] = _sample_positions(per_row, self.hist_sample).numpy()
        return idx

    def flush(self) -> None:
        """Read back the scalars of the pending outputs and add them, in order."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        values = _read_back([v for r in pending for v in r.scalars])
        for i, r in enumerate(pending):
            lo, hi, s1, s2, nonzero = values[5 * i : 5 * i + 5]
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise NonFinite(r.name, hi if not math.isfinite(hi) else lo, r.tag)
            r.acc.add(lo, hi, s1, s2, nonzero, r.numel)
        self._add_histograms(pending)

    def _sample(self, flat: torch.Tensor, rows: int) -> torch.Tensor:
        """The elements of one output that its histogram counts (:meth:`_positions`)."""
        positions = self._positions(flat.numel(), rows)
        if positions is _EVERY:
            return flat
        key = (flat.numel() // rows, flat.device)
        idx = self.samples.get(key)
        if idx is None:
            idx = self.samples[key] = torch.from_numpy(positions).to(flat.device)
        return flat.view(rows, -1).index_select(1, idx).reshape(-1)

    def _add_histograms(self, pending: list[_Reduced]) -> None:
        """Bin each output's sample by its module's bins (:func:`.histogram.torch_bins`,
        the kernels' arithmetic and edge check); one bincount for all of them."""
        width = self.bins + 2
        top = self.bins + 1.0
        device = pending[0].sample.device
        if len(pending) == 1 or any(r.sample.device != device for r in pending):
            for r in pending:
                b = r.acc.bins
                lower, upper = b.tables(r.sample.device)
                scale, offset = float(b.scale32), float(b.offset32)
                idx = torch_bins(r.sample, scale, offset, lower, upper, top, b.slack, b.steps)
                r.acc.hist.add_(torch.bincount(idx, minlength=width))
            return
        accs = [r.acc for r in pending]
        sizes = tuple(r.sample.numel() for r in pending)
        key = (tuple(map(id, accs)), sizes, device)
        layout = self.layouts.get(key)
        if layout is None:
            counts = torch.tensor(sizes, device=device)
            scale = torch.tensor([a.bins.scale32 for a in accs], dtype=torch.float32)
            shift = torch.tensor([a.bins.offset32 for a in accs], dtype=torch.float32)
            base = torch.arange(len(accs)) * width
            per_element = [v.to(device).repeat_interleave(counts) for v in (scale, shift, base)]
            tables = [a.bins.tables(device) for a in accs]
            lower = torch.cat([t[0] for t in tables])
            upper = torch.cat([t[1] for t in tables])
            slack, steps = max(a.bins.slack for a in accs), max(a.bins.steps for a in accs)
            layout = (*per_element, lower, upper, slack, steps)
            self.layouts = {key: layout}  # one batch shape at a time (the last may differ)
        scale, shift, base, lower, upper, slack, steps = layout
        samples = torch.cat([r.sample for r in pending])
        idx = torch_bins(samples, scale, shift, lower, upper, top, slack, steps, base)
        counts = torch.bincount(idx, minlength=width * len(accs)).view(len(accs), width)
        for acc, row in zip(accs, counts, strict=True):
            acc.hist.add_(row)

    def _start(
        self, name: str, flat: torch.Tensor, s1: float, s2: float, lo: float, hi: float
    ) -> _Accumulator:
        """The accumulator of a module, its range and shift set by its first output."""
        n = flat.numel()
        mean = s1 / n
        std = math.sqrt(max(s2 / n - mean * mean, 0.0))
        if name in self.hist_ranges:
            a, b = (float(v) for v in self.hist_ranges[name])
        else:
            a, b = choose_range(lo, hi, mean, std)
        self.hist_ranges[name] = (a, b)
        hist = torch.zeros(self.bins + 2, dtype=torch.int64, device=flat.device)
        return _Accumulator(Bins(a, b, self.bins), hist, mean if abs(mean) > 3 * std else 0.0)

    def arrays(self) -> dict[str, Any]:
        """The statistics as :class:`~cnc_widgets.evaluate.inference.EvalResult` fields."""
        names = list(self.acc)
        accs = [self.acc[m] for m in names]
        count = np.array([a.count for a in accs], dtype=np.int64)
        n = np.maximum(count, 1).astype(np.float64)
        m1 = np.array([a.s1 for a in accs]) / n
        m2 = np.array([a.s2 for a in accs]) / n
        shift = np.array([a.shift for a in accs])
        edges = [a.bins.edges for a in accs]
        return {
            "modules": names,
            "act_count": count,
            "act_mean": shift + m1,
            "act_std": np.sqrt(np.maximum(m2 - m1 * m1, 0.0)),
            "act_zero_frac": 1.0 - np.array([a.nonzero for a in accs]) / n,
            "act_min": np.array([a.lo for a in accs]),
            "act_max": np.array([a.hi for a in accs]),
            "act_hist": (
                np.stack([a.hist.cpu().numpy() for a in accs])
                if accs
                else np.zeros((0, self.bins + 2), np.int64)
            ),
            "act_hist_edges": (np.stack(edges) if edges else np.zeros((0, self.bins + 1))),
        }


_EVERY = np.zeros(0, dtype=np.int64)


def _sample_positions(per_row: int, size: int) -> torch.Tensor:
    """A fixed random set of ``size`` positions in a row, sorted and seeded: the same in
    every batch and every process, and not aligned with channel strides."""
    gen = torch.Generator().manual_seed(per_row)
    return torch.randperm(per_row, generator=gen)[:size].sort().values


def compiled_kernels() -> Any:
    """:mod:`.kernels` (imported on first use: it imports numba), or ``None`` without numba
    (or with a numba that fails to set up, which is said once)."""
    global _KERNELS
    if _KERNELS is False:
        try:
            from . import kernels
        except ImportError:
            kernels = None
        except Exception as exc:  # e.g. no writable place for numba's cache
            warnings.warn(
                f"activation statistics fall back to torch operations (slower): numba "
                f"failed to set up: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            kernels = None
        _KERNELS = kernels
    return _KERNELS


_KERNELS: Any = False  # not imported yet


def _reductions(flat: torch.Tensor, shift: float) -> list[torch.Tensor]:
    """``[min, max, sum, sum of squares, nonzero count]`` of a flat float32 output, as
    0-dim tensors (read back later, together). Sums are about ``shift``.

    Nonzeros are the dot product of sign(x) with itself (0 or 1 per element, a float32
    sum that is exact below 2**24 elements); count_nonzero branches per element and is
    ~10x slower on ReLU outputs. (NumPy's min, max and nonzero count were no faster
    over this CNN's outputs: quicker on 64k elements, slower on small ones.)
    """
    centred = flat - shift if shift else flat
    if flat.numel() >= 2**24:
        nonzero = torch.count_nonzero(flat)
    else:
        signs = flat.sign()
        nonzero = torch.dot(signs, signs)
    return [*torch.aminmax(flat), centred.sum(), torch.dot(centred, centred), nonzero]


def _read_back(scalars: list[torch.Tensor]) -> list[float]:
    """0-dim tensors as Python numbers, with one read-back per device."""
    device = scalars[0].device
    if all(t.device == device for t in scalars):
        return torch.stack(scalars).tolist()
    return [t.item() for t in scalars]
