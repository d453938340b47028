"""Efficiency of one model: size, parameters, sparsity, MACs, latency and peak memory.

What each number means (docs/definitions.md):

- ``params``: elements of all parameters, plus the packed int8 weights and biases of
  dynamically quantized Linears (which hold no ``nn.Parameter``). A tensor-subclass weight
  (torchao) counts the elements of the weight it stands for; its zeros are read dequantized,
  and so does a bitsandbytes weight (int8 codes, or 4-bit codes packed two a byte).
- ``nonzero_params``: nonzero elements among those.
- ``sparsity``: the fraction of zeros among the weights: the multi-dimensional weight
  tensors (of Linear, Conv, Embedding, attention projections, int8 and torchao weights
  included), as Compress and Compare counts it; biases and norm parameters (1-D) are not
  weights. ``param_sparsity = 1 - nonzero_params / params`` over every parameter.
- ``size_bytes``: length of ``torch.save(model.state_dict())``, the file one would ship
  (buffers included, int8 weights one byte each, pickle overhead included). A weight held
  as a tensor subclass (torchao's quantized tensors) is saved as what it stores: int8
  data plus scales and zero points, a GGUF weight (:mod:`..compress.gguf`) as its blocks. A
  model loaded from a GGUF file by transformers (float weights) reports the file's tensor
  bytes when the file was declared (``reg.add(..., info={"gguf_file": path})``).
- ``sparse_size_bytes``: the same file if each tensor were stored in the cheapest of three
  forms: dense; a bitmap (one bit per element) plus the nonzero values; or coordinates (per
  nonzero, its value plus a flat int32 index, int64 past 2**31 elements).
- ``macs``: multiply-accumulates of one forward pass on ``example_input``: FLOPs counted by
  ``torch.utils.flop_counter.FlopCounterMode`` / 2, zeros not discounted. The counter does
  not see int8 dynamic Linear kernels nor CPU fused attention; those are added from shapes
  (``batch x in x out`` per quantized Linear, the standard attention count otherwise). The
  int8 matmuls of torchao's kernels (``_int_mm``, ``_weight_int8pack_mm``) count like ``mm``;
  a model with torchao weights is counted on a copy with those weights dequantized (torch's
  attention would otherwise hand them to aten ops torchao does not implement).
  ``nn.MultiheadAttention``'s fused kernel counts as its unfused path would (in-projection,
  attention, out-projection), and ``nn.TransformerEncoder`` runs the padded batch while
  counting, so the count does not depend on which path torch chose.
- ``effective_macs``: ``macs`` minus, for every Linear / Conv (float or int8), its MACs times
  its weight's fraction of zeros: the work a sparse kernel would skip.
- ``latency_ms``: median wall time of ``repeats`` forward passes after ``warmup`` passes,
  under ``torch.inference_mode``; ``latency_batch_size`` and ``latency_threads`` say how.
- ``peak_memory_bytes``: the most bytes that torch's CPU allocator held at once during one
  forward pass beyond what it held before it (activations and temporaries, not weights), from
  ``torch.profiler`` memory events at operator granularity (an operator's internal scratch
  that it frees before returning is not seen).

Example
-------
>>> import torch
>>> from torch import nn
>>> from cnc_widgets.evaluate.efficiency import efficiency
>>> stats = efficiency(nn.Linear(4, 3), torch.zeros(1, 4), latency=False)
>>> stats["params"], stats["macs"]
(15, 12)
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..compress.bnb_weight import dequantized_weight, is_bnb_linear
from ..compress.tensor_subclass import stored_tensors
from .macs import _DYNAMIC_LINEAR, _nonzero, macs
from .model_io import call_model, eval_mode, prepare_inputs

__all__ = [
    "efficiency",
    "latency_ms",
    "macs",
    "parameter_counts",
    "peak_memory_bytes",
    "size_bytes",
    "sparse_size_bytes",
    "weight_counts",
]

Inputs = torch.Tensor | Mapping[str, torch.Tensor]


def _weights(model: nn.Module) -> Iterator[torch.Tensor]:
    """Every parameter once, plus the packed weight and bias of int8 dynamic Linears."""
    seen: set[int] = set()
    for m in model.modules():
        if is_bnb_linear(m):
            # A 4-bit weight parameter holds two codes a byte: count the weight it stands for.
            seen.add(id(m.weight))
            yield dequantized_weight(m)
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            yield p.detach()
    for m in model.modules():
        if isinstance(m, _DYNAMIC_LINEAR):
            yield m.weight()
            if m.bias() is not None:
                yield m.bias()


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """``(params, nonzero_params)``, int8 dynamic Linear weights included.

    Examples
    --------
    >>> from torch import nn
    >>> parameter_counts(nn.Linear(4, 3))[0]
    15
    """
    total = nonzero = 0
    for t in _weights(model):
        total += t.numel()
        nonzero += _nonzero(t)
    return total, nonzero


def weight_counts(model: nn.Module) -> tuple[int, int]:
    """``(weights, nonzero_weights)``: elements of the multi-dimensional weight tensors.

    Examples
    --------
    >>> from torch import nn
    >>> weight_counts(nn.Linear(4, 3))
    (12, 12)
    """
    total = nonzero = 0
    for t in _weights(model):
        if t.dim() >= 2:
            total += t.numel()
            nonzero += _nonzero(t)
    return total, nonzero


def size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``.

    A model loaded from a GGUF file and declared so
    (:func:`cnc_widgets.compress.gguf.declare_gguf_file`) reports the file's tensor data
    instead: the quantized blocks it ships, not the float weights it was dequantized to; so
    does one loaded from a compressed-tensors checkpoint
    (:func:`cnc_widgets.compress.compressed_tensors.load_compressed_tensors`).

    Examples
    --------
    >>> from torch import nn
    >>> size_bytes(nn.Linear(1000, 1000)) > 4_000_000
    True
    """
    declared = _declared_file(model)
    if declared is not None:
        return declared
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _declared_file(model: nn.Module) -> int | None:
    """Tensor bytes of the GGUF file or compressed-tensors checkpoint ``model`` was loaded
    from, when that was declared."""
    from ..compress.compressed_tensors import ATTRIBUTE
    from ..compress.gguf import FILE_ATTRIBUTE

    for attribute in (FILE_ATTRIBUTE, ATTRIBUTE):
        declared = getattr(model, attribute, None)
        if isinstance(declared, dict):
            return int(declared["size_bytes"])
    return None


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    # Packed quantized params appear in state_dict as (weight, bias) tuples; a tensor
    # subclass (torchao) is shipped as the plain tensors it stores.
    if isinstance(value, torch.Tensor):
        yield from (inner for _, inner in stored_tensors(value))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _tensors(v)


def sparse_size_bytes(model: nn.Module, dense_size: int | None = None) -> int:
    """Serialized size if each state_dict tensor took its cheapest dense or sparse form.

    Per tensor: dense ``numel * b``; bitmap ``ceil(numel / 8) + nnz * b``; coordinates
    ``nnz * (b + i)`` with ``b`` the element bytes and ``i`` a flat int32 index (int64 past
    2**31 elements). The pickle overhead of the dense file is kept.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> layer = nn.Linear(100, 100)
    >>> with torch.no_grad():
    ...     _ = layer.weight.zero_()
    >>> size_bytes(layer) - sparse_size_bytes(layer)  # 10,000 zeros: 0 bytes, not 4 each
    40000
    """
    if _declared_file(model) is not None:
        return size_bytes(model)  # the file's blocks: no sparse form of them is known
    dense_size = size_bytes(model) if dense_size is None else dense_size
    saved = 0
    seen: set[Any] = set()
    for value in model.state_dict().values():
        for t in _tensors(value):
            # torch.save writes a storage shared by several names (tied embedding and
            # output weights, a weight and its transpose) once: count it once, whole.
            t, key = _whole_storage(t)
            if key in seen:
                continue
            seen.add(key)
            dense, nnz, b = t.numel() * t.element_size(), _nonzero(t), t.element_size()
            bitmap = -(-t.numel() // 8) + nnz * b
            coordinates = nnz * (b + (4 if t.numel() < 2**31 else 8))
            saved += dense - min(dense, bitmap, coordinates)
    return dense_size - saved


def _whole_storage(t: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """The flat tensor over all of ``t``'s storage and a key naming that storage."""
    if t.is_quantized or t.is_sparse or type(t) is not torch.Tensor:
        return t, ("tensor", id(t))
    storage = t.untyped_storage()
    flat = torch.empty(0, dtype=t.dtype, device=t.device)
    flat.set_(storage, 0, (storage.nbytes() // t.element_size(),))
    return flat, ("storage", storage.data_ptr(), storage.nbytes())


def _batch_size(inputs: Inputs) -> int:
    first = next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs
    return int(first.shape[0]) if first.dim() else 1


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[int]:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def latency_ms(
    model: nn.Module,
    example_input: Inputs,
    *,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    budget_s: float = 2.0,
) -> tuple[float, int]:
    """Median milliseconds of one forward pass and the number of threads used.

    ``warmup`` untimed passes, then ``repeats`` timed ones; a slow model stops earlier
    once ``budget_s`` seconds of timed passes are spent (never fewer than 3 timed passes,
    and one warm-up pass when that alone took a quarter of the budget). A one-second
    forward pass is timed 3 times, not 20.
    """
    example_input = prepare_inputs(model, example_input)
    with _threads(threads) as used, torch.inference_mode():
        for _ in range(warmup):
            start = time.perf_counter()
            call_model(model, example_input)
            if time.perf_counter() - start > budget_s / 4:
                break
        times: list[float] = []
        while len(times) < repeats:
            start = time.perf_counter()
            call_model(model, example_input)
            times.append((time.perf_counter() - start) * 1000.0)
            if len(times) >= 3 and sum(times) > budget_s * 1000.0:
                break
    return statistics.median(times), used


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    # Kineto writes start/stop lines straight to file descriptor 2.
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_bytes(model: nn.Module, example_input: Inputs) -> int:
    """Most bytes torch's CPU allocator held at once during a forward, beyond the start."""
    from torch.profiler import ProfilerActivity, profile

    example_input = prepare_inputs(model, example_input)
    with (
        _quiet_stderr(),
        torch.inference_mode(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        call_model(model, example_input)
    events = sorted(
        (e.time_range.start, e.self_cpu_memory_usage)
        for e in prof.events()
        if e.self_cpu_memory_usage
    )
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return int(peak)


def efficiency(
    model: nn.Module,
    example_input: Inputs,
    *,
    latency: bool = True,
    memory: bool = True,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
) -> dict[str, Any]:
    """All efficiency metrics of ``model`` on ``example_input`` (see the module docstring).

    Parameters
    ----------
    model
        Any ``nn.Module``. Every pass runs in eval mode under ``torch.inference_mode``;
        the model's own train/eval modes are restored afterwards, so a model left in
        train mode keeps its BatchNorm statistics.
    example_input
        A Tensor, or a dict of Tensors called as ``model(**d)``; its first dimension is the
        batch size used for MACs, latency and memory. Moved to the model's device and
        floating dtype first (:func:`.model_io.prepare_inputs`).
    latency, memory
        Skip the timed runs / the profiled run when False (their keys are then None).
    warmup, repeats, threads
        Latency protocol; ``threads`` temporarily sets ``torch.set_num_threads``.

    Returns
    -------
    dict
        params, nonzero_params, sparsity, param_sparsity, size_bytes, sparse_size_bytes, macs,
        effective_macs, latency_ms, latency_batch_size, latency_threads, peak_memory_bytes.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> efficiency(nn.Linear(4, 3), torch.zeros(1, 4), latency=False)["sparsity"]
    0.0
    """
    # Moved once here (device, dtype), so the timed runs below do not pay for it.
    example_input = prepare_inputs(model, example_input)
    params, nonzero = parameter_counts(model)
    weights, nonzero_weights = weight_counts(model)
    size = size_bytes(model)
    with eval_mode(model, inference=False):  # the MAC hooks read (subclass) weights
        total_macs, effective = macs(model, example_input)
    stats: dict[str, Any] = {
        "params": params,
        "nonzero_params": nonzero,
        "sparsity": 1.0 - nonzero_weights / weights if weights else 0.0,
        "param_sparsity": 1.0 - nonzero / params if params else 0.0,
        "size_bytes": size,
        "sparse_size_bytes": sparse_size_bytes(model, size),
        "macs": total_macs,
        "effective_macs": effective,
        "latency_ms": None,
        "latency_batch_size": _batch_size(example_input),
        "latency_threads": None,
        "peak_memory_bytes": None,
    }
    with eval_mode(model):
        if latency:
            stats["latency_ms"], stats["latency_threads"] = latency_ms(
                model, example_input, warmup=warmup, repeats=repeats, threads=threads
            )
        if memory:
            stats["peak_memory_bytes"] = peak_memory_bytes(model, example_input)
    return stats
