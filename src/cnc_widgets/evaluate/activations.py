"""Streaming access to module activations: batching, hooks, running statistics.

Nothing here keeps more than one batch of activations: statistics are running sums,
and :func:`iter_activations` hands out one batch at a time. Every function is a pure
function of (model, data): hooks are removed and the model's train/eval mode is
restored on the way out, so calls can run side by side in separate workers.

Example
-------
>>> import torch
>>> from cnc_widgets.evaluate.activations import paired_activation_stats
>>> a = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
>>> stats = paired_activation_stats(a, a, torch.randn(10, 4), ["0"], batch_size=4)
>>> float(stats.rel_change[0])
0.0
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import queue
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .model_io import model_dtype

__all__ = [
    "EvaluationError",
    "NonFinite",
    "PairedActivationStats",
    "RunningStats",
    "batch_layout",
    "iter_activations",
    "leaf_modules",
    "paired_activation_stats",
    "per_instance",
]

Inputs = torch.Tensor | Mapping[str, torch.Tensor]
Flatten = Literal["auto", "flatten", "pool"]

# Modules that, in eval mode, only pass their input on or reshape it: their output
# statistics repeat those of the module before, so they are not hooked by default.
_PASS_THROUGH = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
)


class EvaluationError(RuntimeError):
    """A model failed, or produced NaN/inf, while it was being evaluated."""


def n_rows(inputs: Inputs) -> int:
    """Number of instances in a tensor or a mapping of equally long tensors."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0:
            raise ValueError("inputs must have a leading instance dimension, got a scalar")
        return int(inputs.shape[0])
    if not isinstance(inputs, Mapping) or not inputs:
        raise TypeError("inputs must be a Tensor (N, ...) or a non-empty dict of Tensors")
    sizes = {k: int(v.shape[0]) for k, v in inputs.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"all input tensors must have the same number of rows, got {sizes}")
    return next(iter(sizes.values()))


def describe(batch: Inputs) -> str:
    """Shapes and dtypes of a batch, for error messages."""
    if isinstance(batch, torch.Tensor):
        return f"Tensor{tuple(batch.shape)} {batch.dtype}"
    return "{" + ", ".join(f"{k}: {tuple(v.shape)} {v.dtype}" for k, v in batch.items()) + "}"


def slice_rows(
    inputs: Inputs,
    start: int,
    stop: int,
    float_dtype: torch.dtype | None,
    device: torch.device | None = None,
) -> Inputs:
    """Rows ``start:stop``; floating tensors cast to ``float_dtype`` (a half model),
    everything moved to ``device`` when given (a model on an accelerator)."""

    def cut(t: torch.Tensor) -> torch.Tensor:
        t = t[start:stop]
        if float_dtype is not None and t.is_floating_point() and t.dtype != float_dtype:
            t = t.to(float_dtype)
        if device is not None:
            t = t.to(device, non_blocking=True)
        return t

    if isinstance(inputs, torch.Tensor):
        return cut(inputs)
    return {k: cut(v) for k, v in inputs.items()}


def call_model(model: nn.Module, batch: Inputs) -> Any:
    """``model(batch)`` for a tensor, ``model(**batch)`` for a mapping."""
    return model(batch) if isinstance(batch, torch.Tensor) else model(**batch)


def float_dtype(model: nn.Module) -> torch.dtype | None:
    """dtype floating inputs are cast to: :func:`.model_io.model_dtype` (float32 included,
    so float64 data meets a float32 model as float32)."""
    return model_dtype(model)


def model_device(model: nn.Module) -> torch.device | None:
    """Device of the model's first parameter or buffer, ``None`` for the CPU."""
    t = next(itertools.chain(model.parameters(), model.buffers()), None)
    return None if t is None or t.device.type == "cpu" else t.device


def first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module produced: itself, the first of a tuple or model output."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    return None


def batch_layout(t: torch.Tensor, rows: int) -> str | None:
    """Where the instances of a batch of ``rows`` are in a module output ``t``.

    ``"batch"`` for ``(B, ...)``; ``"sequence"`` for a sequence-first ``(L, B, ...)``
    (``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` without
    ``batch_first``); ``None`` for an output broadcast over the batch (BERT's position
    embeddings, ``(1, L, d)``) or a scalar. Decide it on a full batch: when ``L``
    equals the number of rows the two layouts look alike.
    """
    if t.dim() == 0:
        return None
    if t.shape[0] == rows:
        return "batch"
    if t.dim() >= 3 and t.shape[0] != 1 and t.shape[1] == rows:
        return "sequence"
    return None


def per_instance(t: torch.Tensor, rows: int, layout: str | None = None) -> torch.Tensor | None:
    """``t`` with one leading row per instance of a batch of ``rows``, or ``None``.

    ``layout`` is what :func:`batch_layout` found on an earlier batch of the same
    module (default: decide on this one).
    """
    layout = layout or batch_layout(t, rows)
    if layout == "batch" and t.dim() > 0 and t.shape[0] == rows:
        return t
    if layout == "sequence" and t.dim() >= 2 and t.shape[1] == rows:
        return t.transpose(0, 1)
    return None


def is_packed_params(module: nn.Module) -> bool:
    """Holders of quantized weights (never called; their owner is the layer)."""
    return type(module).__name__.endswith("PackedParams")


def leaf_modules(model: nn.Module, *, pass_through: bool = False) -> list[str]:
    """Dotted names of modules without children (quantized wrappers count as leaves).

    Parameters
    ----------
    model
        Any module.
    pass_through
        Include Dropout, Identity, Flatten and Unflatten, which repeat the activations
        of the module before them in eval mode.

    Examples
    --------
    >>> import torch
    >>> leaf_modules(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()))
    ['0']
    """
    names = []
    for name, module in model.named_modules():
        if not name or is_packed_params(module):
            continue
        if any(not is_packed_params(c) for c in module.children()):
            continue
        if not pass_through and isinstance(module, _PASS_THROUGH):
            continue
        names.append(name)
    return names


def reduce_output(x: torch.Tensor, mask: torch.Tensor | None, flatten: Flatten) -> torch.Tensor:
    """Turn one module output ``(B, ...)`` into a float32 matrix ``(B, p)``.

    ``mask`` is the batch's ``attention_mask`` ``(B, L)`` when the inputs have one; it
    applies to outputs whose first two dimensions are ``(B, L)`` (token sequences).

    - ``"auto"``: token sequences become the masked mean over real tokens ``(B, d)``;
      everything else is flattened.
    - ``"flatten"``: all non-batch dimensions flattened; padded tokens are zeroed so
      they add nothing to norms or cross products.
    - ``"pool"``: token sequences as in ``"auto"``; other outputs with more than two
      dimensions are averaged over dimensions 2 and up (``(B, C, H, W)`` -> ``(B, C)``).
    """
    x = x.detach()
    if x.dtype != torch.float32:
        x = x.float()
    if x.dim() == 1:
        return x.unsqueeze(1)
    tokens = mask is not None and x.dim() >= 3 and tuple(x.shape[:2]) == tuple(mask.shape)
    if tokens:
        m = mask.to(x.device, torch.float32).reshape(*mask.shape, *([1] * (x.dim() - 2)))
        if flatten == "flatten":
            return (x * m).flatten(1)
        return (x * m).sum(1).flatten(1) / m.sum(1).flatten(1).clamp_min(1.0)
    if flatten == "pool" and x.dim() > 2:
        return x.flatten(2).mean(2)
    return x.flatten(1)


@contextlib.contextmanager
def evaluating(model: nn.Module, *, inference: bool = True) -> Iterator[None]:
    """Eval mode and inference mode, the model's own mode restored afterwards.

    ``inference=False`` gives ``torch.no_grad`` instead, for passes that read weights
    held as tensor subclasses (torchao's), whose ``detach`` fails in inference mode.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode() if inference else torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


def iter_activations(
    model: nn.Module,
    inputs: Inputs,
    modules: Sequence[str],
    *,
    batch_size: int = 64,
    flatten: Flatten | tuple[Flatten, ...] = "auto",
    unavailable: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield, batch by batch, the outputs of chosen modules as ``(B, p)`` float32 tensors.

    Only one batch of activations exists at a time, so any per-layer comparison (CKA
    cross products, norms of differences) can stream over all instances. Each module's
    output is reduced by :func:`reduce_output` with the given ``flatten`` rule (token
    sequences: masked mean over real tokens when the inputs hold an
    ``attention_mask``). A module called several times in one forward pass reports its
    last call; a module that returns a tuple reports its first tensor, and a
    sequence-first output ``(L, B, ...)`` is read as ``(B, L, ...)``.

    Parameters
    ----------
    model
        Evaluated in eval mode under ``torch.inference_mode``.
    inputs
        A tensor ``(N, ...)`` (called as ``model(batch)``) or a dict of tensors with N
        rows (called as ``model(**batch)``).
    modules
        Dotted module names (``model.get_submodule`` paths).
    batch_size
        Rows per forward pass.
    flatten
        ``"auto"``, ``"flatten"`` or ``"pool"``, see :func:`reduce_output`; a tuple of
        them gives each module a tuple of reductions of one output, in that order (one
        forward pass serving, say, element-wise change and pooled CKA).
    unavailable
        Without it, a module that produces no tensor raises :class:`EvaluationError`.
        With a dict, such a module (its weights used through a functional call, as
        ``nn.MultiheadAttention`` does with ``out_proj``, or never called at all), and
        one whose output has no row per instance (see :func:`per_instance`), is left
        out of this and every later batch, its reason recorded here:
        ``"not called as a module"`` or ``"output not per instance"``.

    Yields
    ------
    dict[str, torch.Tensor]
        Module name -> ``(B, p)`` tensor for rows ``[i * batch_size, (i + 1) * batch_size)``.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU())
    >>> batches = list(iter_activations(model, torch.randn(10, 3), ["0"], batch_size=4))
    >>> [b["0"].shape[0] for b in batches]
    [4, 4, 2]
    """
    n = n_rows(inputs)
    mask_all = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    captured: dict[str, torch.Tensor] = {}
    layouts: dict[str, str | None] = {}  # decided on the first (largest) batch
    handles = []
    for name in modules:

        def hook(_m: nn.Module, _args: Any, output: Any, name: str = name) -> None:
            t = first_tensor(output)
            if t is not None:
                captured[name] = t

        handles.append(_submodule(model, name).register_forward_hook(hook))
    dtype, device = float_dtype(model), model_device(model)
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = slice_rows(inputs, start, stop, dtype, device)
            captured.clear()
            # Modes are set per batch, not across the yield, so that the caller's code
            # between batches (and a second stream interleaved with this one) runs in
            # whatever grad and train/eval mode it had.
            with evaluating(model):
                try:
                    call_model(model, batch)
                except Exception as exc:
                    raise EvaluationError(
                        f"forward pass failed on batch {start // batch_size} (rows {start}:{stop}, "
                        f"inputs {describe(batch)}): {type(exc).__name__}: {exc}"
                    ) from exc
                mask = None if mask_all is None else mask_all[start:stop]
                missing = [m for m in modules if m not in captured]
                if missing and unavailable is None:
                    raise EvaluationError(f"modules produced no tensor output: {missing}")
                acts = {}
                for m in modules:
                    if unavailable is not None and m in unavailable:
                        continue
                    t = captured.get(m)
                    if t is None:
                        unavailable[m] = "not called as a module"
                        continue
                    if m not in layouts:
                        layouts[m] = batch_layout(t, stop - start)
                    rows = per_instance(t, stop - start, layouts[m])
                    if rows is None:
                        if unavailable is None:
                            raise EvaluationError(
                                f"module {m!r} returned {tuple(t.shape)} for a batch of "
                                f"{stop - start}: its output has no row per instance"
                            )
                        unavailable[m] = "output not per instance"
                        continue
                    if isinstance(flatten, tuple):
                        acts[m] = tuple(reduce_output(rows, mask, f) for f in flatten)
                    else:
                        acts[m] = reduce_output(rows, mask, flatten)
            yield acts
    finally:
        for h in handles:
            h.remove()


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(
            f"model {type(model).__name__} has no module {name!r}; "
            f"leaf modules are {leaf_modules(model)}"
        ) from None


@dataclass
class PairedActivationStats:
    """Running sums behind the relative activation change of matched modules.

    ``rel_change[i] = sqrt(sq_diff[i] / sq_ref[i])`` is
    ``||act_b - act_a||_F / ||act_a||_F`` over all instances; NaN where the two
    outputs have different shapes. Sums of disjoint shards add up, see :meth:`merge`.
    """

    names_a: list[str]
    names_b: list[str]
    sq_diff: np.ndarray
    sq_ref: np.ndarray
    n: int

    @property
    def rel_change(self) -> np.ndarray:
        """Relative Frobenius change per pair, float64 ``(P,)``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sqrt(self.sq_diff / self.sq_ref)

    def as_dict(self) -> dict[str, float]:
        """``{name_a: rel_change}``."""
        return dict(zip(self.names_a, self.rel_change.tolist(), strict=True))

    @staticmethod
    def merge(parts: Sequence[PairedActivationStats]) -> PairedActivationStats:
        """Combine results computed on disjoint shards of the data."""
        first = parts[0]
        return PairedActivationStats(
            first.names_a,
            first.names_b,
            np.sum([p.sq_diff for p in parts], axis=0),
            np.sum([p.sq_ref for p in parts], axis=0),
            sum(p.n for p in parts),
        )


def paired_activation_stats(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: Inputs,
    pairs: Sequence[str | tuple[str, str]] | None = None,
    batch_size: int = 64,
) -> PairedActivationStats:
    """``||act_b - act_a||_F / ||act_a||_F`` for matched modules, over all instances.

    Both models see the same batches; only running sums of squares are kept. Outputs
    are compared element by element (``flatten="flatten"``), with padded tokens
    excluded when the inputs carry an ``attention_mask``.

    Parameters
    ----------
    model_a
        The reference model.
    model_b
        The compared model, e.g. a compressed variant of ``model_a``.
    inputs
        As for :func:`iter_activations`.
    pairs
        Module names present in both models, or ``(name_a, name_b)`` tuples. ``None``
        matches every leaf module name the two models share (a dynamic-quantized
        Linear keeps the name of the float Linear it replaced).
    batch_size
        Rows per forward pass.

    Returns
    -------
    PairedActivationStats

    Examples
    --------
    >>> import copy, torch
    >>> a = torch.nn.Sequential(torch.nn.Linear(3, 3))
    >>> b = copy.deepcopy(a)
    >>> with torch.no_grad():
    ...     b[0].bias += 1.0
    >>> s = paired_activation_stats(a, b, torch.randn(8, 3), batch_size=4)
    >>> bool(s.rel_change[0] > 0)
    True
    """
    if pairs is None:
        in_b = set(leaf_modules(model_b))
        pairs = [m for m in leaf_modules(model_a) if m in in_b]
    names_a = [p if isinstance(p, str) else p[0] for p in pairs]
    names_b = [p if isinstance(p, str) else p[1] for p in pairs]
    sq_diff = np.zeros(len(pairs))
    sq_ref = np.zeros(len(pairs))
    stream_a = iter_activations(
        model_a, inputs, list(dict.fromkeys(names_a)), batch_size=batch_size, flatten="flatten"
    )
    stream_b = iter_activations(
        model_b, inputs, list(dict.fromkeys(names_b)), batch_size=batch_size, flatten="flatten"
    )
    for acts_a, acts_b in zip(stream_a, stream_b, strict=True):
        for i, (na, nb) in enumerate(zip(names_a, names_b, strict=True)):
            xa, xb = acts_a[na], acts_b[nb]
            sq_ref[i] += float(torch.dot(xa.reshape(-1), xa.reshape(-1)))
            if xa.shape == xb.shape:
                d = (xb - xa).reshape(-1)
                sq_diff[i] += float(torch.dot(d, d))
            else:
                sq_diff[i] = math.nan
    return PairedActivationStats(names_a, names_b, sq_diff, sq_ref, n_rows(inputs))


class NonFinite(Exception):
    """A module output held NaN/inf. ``batch`` is the tag of its batch
    (see :meth:`RunningStats.begin_batch`)."""

    def __init__(self, module: str, value: float, batch: Any = None) -> None:
        super().__init__(module, value)
        self.module, self.value, self.batch = module, value, batch


class _Accumulator:
    """Running sums of one module's outputs (float64 Python scalars + a histogram)."""

    __slots__ = (
        "count",
        "edge0",
        "hi",
        "hist",
        "hist_np",
        "lo",
        "nonzero",
        "offset32",
        "s1",
        "s2",
        "scale",
        "scale32",
        "shift",
    )

    def __init__(self) -> None:
        self.count = self.nonzero = 0
        self.s1 = self.s2 = 0.0
        self.lo, self.hi = math.inf, -math.inf
        self.edge0 = self.scale = self.shift = 0.0
        self.hist: torch.Tensor | None = None
        self.hist_np: np.ndarray | None = None  # the CPU histogram's memory, for the kernels
        # Histogram bin = x * scale32 + offset32, both float32 (see _add_histograms).
        self.scale32 = self.offset32 = np.float32(0.0)

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


def spare_core() -> bool:
    """Whether this process may use more CPU cores than torch's intra-op threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores > torch.get_num_threads()


class _Worker:
    """A thread that reduces copied outputs in the order they came (see :class:`RunningStats`).

    At most ``budget`` bytes of copies wait at a time: past it, the forward pass waits.
    The first error is kept and everything queued after it is dropped.
    """

    def __init__(self, stats: RunningStats, budget: int) -> None:
        self.stats, self.budget = stats, budget
        self.queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self.cond = threading.Condition(threading.Lock())
        self.in_flight = 0  # bytes of copies queued
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="cnc-activation-stats", daemon=True)
        self.thread.start()

    def put(self, name: str, t: torch.Tensor | None, tag: Any) -> None:
        """Queue an output (``None``: the end of a batch)."""
        size = 0 if t is None else t.numel() * t.element_size()
        with self.cond:  # at least one output is always let through, however large
            if self.in_flight and self.in_flight + size > self.budget:
                self.cond.wait_for(
                    lambda: self.in_flight == 0 or self.in_flight + size <= self.budget
                )
            self.in_flight += size
        self.queue.put((name, t, tag, size))

    def run(self) -> None:
        with torch.inference_mode():
            while (job := self.queue.get()) is not None:
                name, t, tag, size = job
                if self.error is None:
                    try:
                        if t is None:
                            self.stats.flush()
                        else:
                            self.stats.collect(name, t, tag)
                    except BaseException as exc:  # handed over by raise_error()
                        self.error = exc
                del job, t
                if size:
                    with self.cond:
                        self.in_flight -= size
                        self.cond.notify_all()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def drain(self) -> None:
        """Reduce everything handed over; stop the thread."""
        self.put("", None, None)
        self.queue.put(None)
        self.thread.join()


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
    are float32, so the two paths agree to float32 rounding; over the same ranges
    their histograms agree bin for bin (the same float32 bin arithmetic).

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
        self._worker: _Worker | None = None
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
                self.background = t.device.type == "cpu" and _kernels() is None and spare_core()
            if not self.background:
                self.collect(name, t, self._tag)
                return
            if self._worker is None:
                self._worker = _Worker(self, self.background_bytes)
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
        if flat.device.type == "cpu" and (kernels := _kernels()) is not None:
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
            lo, hi, s1, s2, nonzero = kernels.reduce_and_bin(
                x,
                acc.shift,
                rows,
                self._positions(x.size, rows),
                acc.scale32,
                acc.offset32,
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
            kernels.bin_sample(x, rows, positions, acc.scale32, acc.offset32, acc.hist_np)
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
        """Bin each output's sample by its module's range; one bincount for all of them.

        Bin k + 1 holds [edge0 + k / scale, edge0 + (k + 1) / scale); 0 and bins + 1 are
        under- and overflow. Element-wise ``x * scale32 + offset32`` in float32, two
        roundings (multiply, then add), whether for one output or many at once, as
        :func:`.kernels.bin_sample` does.
        """
        width = self.bins + 2
        device = pending[0].sample.device
        if len(pending) == 1 or any(r.sample.device != device for r in pending):
            for r in pending:
                acc = r.acc
                bins = r.sample.mul(float(acc.scale32)).add_(float(acc.offset32))
                bins = bins.clamp_(0.0, self.bins + 1.0).to(torch.int64)
                acc.hist.add_(torch.bincount(bins, minlength=width))
            return
        accs = [r.acc for r in pending]
        sizes = tuple(r.sample.numel() for r in pending)
        key = (tuple(map(id, accs)), sizes, device)
        layout = self.layouts.get(key)
        if layout is None:
            counts = torch.tensor(sizes, device=device)
            scale = torch.tensor([a.scale32 for a in accs], dtype=torch.float32)
            shift = torch.tensor([a.offset32 for a in accs], dtype=torch.float32)
            offset = torch.arange(len(accs)) * width
            layout = tuple(v.to(device).repeat_interleave(counts) for v in (scale, shift, offset))
            self.layouts = {key: layout}  # one batch shape at a time (the last may differ)
        scale, shift, offset = layout
        bins = torch.cat([r.sample for r in pending]).mul_(scale).add_(shift)
        bins = bins.clamp_(0.0, self.bins + 1.0).to(torch.int64).add_(offset)
        counts = torch.bincount(bins, minlength=width * len(accs)).view(len(accs), width)
        for acc, row in zip(accs, counts, strict=True):
            acc.hist.add_(row)

    def _start(
        self, name: str, flat: torch.Tensor, s1: float, s2: float, lo: float, hi: float
    ) -> _Accumulator:
        acc = _Accumulator()
        n = flat.numel()
        mean = s1 / n
        std = math.sqrt(max(s2 / n - mean * mean, 0.0))
        if name in self.hist_ranges:
            a, b = (float(v) for v in self.hist_ranges[name])
        else:
            a, b = max(lo, mean - 6 * std), min(hi, mean + 6 * std)
            span = b - a
            # Later batches may reach past this batch's extremes: leave them room,
            # except at an exact 0 (ReLU outputs), which should open the first bin.
            if a == lo and lo != 0.0:
                a -= 0.1 * span
            if b == hi and hi != 0.0:
                b += 0.1 * span
            if b <= a:
                pad = 0.5 * max(abs(a), 1.0)
                a, b = a - pad, b + pad
        self.hist_ranges[name] = (a, b)
        acc.edge0, acc.scale = a, self.bins / (b - a)
        acc.scale32 = np.float32(acc.scale)
        acc.offset32 = np.float32(1.0 - acc.edge0 * acc.scale)
        acc.shift = mean if abs(mean) > 3 * std else 0.0
        acc.hist = torch.zeros(self.bins + 2, dtype=torch.int64, device=flat.device)
        if flat.device.type == "cpu":
            acc.hist_np = acc.hist.numpy()
        return acc

    def arrays(self) -> dict[str, Any]:
        """The statistics as :class:`~cnc_widgets.evaluate.inference.EvalResult` fields."""
        names = list(self.acc)
        accs = [self.acc[m] for m in names]
        count = np.array([a.count for a in accs], dtype=np.int64)
        n = np.maximum(count, 1).astype(np.float64)
        m1 = np.array([a.s1 for a in accs]) / n
        m2 = np.array([a.s2 for a in accs]) / n
        shift = np.array([a.shift for a in accs])
        edges = [np.linspace(*self.hist_ranges[m], self.bins + 1) for m in names]
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


def _kernels() -> Any:
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
