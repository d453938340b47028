"""Efficiency of one model: size, parameters, sparsity, MACs, latency and peak memory.

What each number means (design.md section 4):

- ``params``: elements of all parameters, plus the packed int8 weights and biases of
  dynamically quantized Linears (which hold no ``nn.Parameter``). A tensor-subclass weight
  (torchao) counts the elements of the weight it stands for; its zeros are read dequantized.
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
import copy
import io
import math
import os
import statistics
import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, mm_flop, sdpa_flop_count

from ..compress.tensor_subclass import dequantized, is_tensor_subclass, stored_tensors
from .model_io import eval_mode, prepare_inputs
from .modules import dense_encoders

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
_DYNAMIC_LINEAR = torch.ao.nn.quantized.dynamic.Linear
_WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd, _DYNAMIC_LINEAR)


def _weights(model: nn.Module) -> Iterator[torch.Tensor]:
    """Every parameter once, plus the packed weight and bias of int8 dynamic Linears."""
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            yield p.detach()
    for m in model.modules():
        if isinstance(m, _DYNAMIC_LINEAR):
            yield m.weight()
            if m.bias() is not None:
                yield m.bias()


def _nonzero(t: torch.Tensor) -> int:
    if is_tensor_subclass(t):
        return int(torch.count_nonzero(dequantized(t)))
    if t.is_quantized:
        return (
            int((t.int_repr() != t.q_zero_point()).sum())
            if t.qscheme()
            in (
                torch.per_tensor_affine,
                torch.per_tensor_symmetric,
            )
            else int((t.dequantize() != 0).sum())
        )
    if t.is_floating_point() and t.element_size() == 1:
        t = t.float()  # float8 (quanto's qfloat8 weights): count_nonzero has no kernel for it
    return int(torch.count_nonzero(t))


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
    instead: the quantized blocks it ships, not the float weights it was dequantized to.

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
    """Tensor bytes of the GGUF file ``model`` was loaded from, when that was declared."""
    from ..compress.gguf import FILE_ATTRIBUTE

    declared = getattr(model, FILE_ATTRIBUTE, None)
    return int(declared["size_bytes"]) if isinstance(declared, dict) else None


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


def _call(model: nn.Module, inputs: Inputs) -> Any:
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def _module_macs(module: nn.Module, args: tuple, output: Any) -> int:
    out = output[0] if isinstance(output, tuple) else output
    if isinstance(module, nn.modules.conv._ConvNd):
        return out.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
    return out.numel() * module.in_features


def _zero_fraction(module: nn.Module) -> float:
    w = module.weight() if isinstance(module, _DYNAMIC_LINEAR) else module.weight.detach()
    return 1.0 - _nonzero(w) / max(1, w.numel())


def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    # FlopCounterMode passes shapes here (custom mappings are shape-wrapped).
    return sdpa_flop_count(query, key, value)


_QUANT_RNN = (
    torch.ao.nn.quantized.dynamic.modules.rnn.RNNBase,
    torch.ao.nn.quantized.dynamic.modules.rnn.RNNCellBase,
)
_RECURRENT = (nn.RNNBase, nn.RNNCellBase, *_QUANT_RNN)


def _gates(module: nn.Module) -> int:
    mode = getattr(module, "mode", None) or type(module).__name__
    return 4 if "LSTM" in mode else 3 if "GRU" in mode else 1


def _recurrent_macs(module: nn.Module, args: tuple) -> tuple[int, float]:
    """``(macs, skipped)`` of one call of a recurrent layer or cell, from its shapes.

    Per time step, row and direction a layer multiplies its input by ``gates x hidden x
    in`` weights and its state by ``gates x hidden x out`` (plus ``hidden x proj`` for an
    LSTM projection); ``skipped`` is the part a sparse kernel would not do (zero weights).
    """
    x = args[0] if args else None
    gates, hidden = _gates(module), module.hidden_size
    float_weights = not isinstance(module, _QUANT_RNN)

    def zeros(name: str) -> float:
        w = getattr(module, name, None) if float_weights else None
        return 0.0 if not isinstance(w, torch.Tensor) else 1.0 - _nonzero(w.detach()) / w.numel()

    if isinstance(module, (nn.RNNCellBase, _QUANT_RNN[1])):
        rows = x.shape[0] if x is not None and x.dim() == 2 else 1
        ih, hh = rows * gates * hidden * module.input_size, rows * gates * hidden * hidden
        return ih + hh, ih * zeros("weight_ih") + hh * zeros("weight_hh")
    if isinstance(x, nn.utils.rnn.PackedSequence):
        steps = int(x.batch_sizes.sum())
    elif x is not None:
        steps = int(x.shape[0] * x.shape[1]) if x.dim() == 3 else int(x.shape[0])
    else:
        steps = 0
    proj = getattr(module, "proj_size", 0) or 0
    out = proj or hidden
    dirs = 2 if module.bidirectional else 1
    total, skipped = 0, 0.0
    for layer in range(module.num_layers):
        width = module.input_size if layer == 0 else out * dirs
        for d in range(dirs):
            suffix = f"l{layer}{'_reverse' if d else ''}"
            ih, hh = steps * gates * hidden * width, steps * gates * hidden * out
            hr = steps * hidden * proj
            total += ih + hh + hr
            skipped += ih * zeros(f"weight_ih_{suffix}") + hh * zeros(f"weight_hh_{suffix}")
            skipped += hr * zeros(f"weight_hr_{suffix}") if proj else 0.0
    return total, skipped


def _int_mm_flops(a_shape: Any, b_shape: Any, *args: Any, **kwargs: Any) -> int:
    # int8 x int8 matmuls (torchao's dynamic activation quantization) count like mm.
    return mm_flop(a_shape, b_shape)


def _weight_pack_mm_flops(x_shape: Any, w_shape: Any, *args: Any, **kwargs: Any) -> int:
    # x (m, k) times an int8 weight stored (n, k).
    return mm_flop(x_shape, tuple(reversed(w_shape)))


def _padded(t: torch.Tensor) -> tuple[int, int]:
    """``(batch, length)`` of a batch-first sequence; a nested tensor (padding removed by
    nn.TransformerEncoder's fast path) counts as the padded batch the slow path would run."""
    if t.is_nested:
        lengths = t._nested_tensor_size()[:, 0]
        return int(lengths.numel()), int(lengths.max()) if lengths.numel() else 0
    return int(t.shape[0]), int(t.shape[1])


def _attention_macs(batch: int, q_len: int, k_len: int, embed: int) -> int:
    # Q K^T and the weighted sum of V: each batch x heads x q_len x k_len x head_dim.
    return 2 * batch * q_len * k_len * embed


def _native_mha_flops(q: Any, k: Any, v: Any, embed: int, heads: int, *args: Any, **kw: Any) -> int:
    # nn.MultiheadAttention's fused CPU path (self-attention, batch first): the packed
    # in-projection, attention, the out-projection; counted as its slow path would be.
    batch, length = _padded(q)
    tokens = batch * length
    return 2 * (tokens * 4 * embed * embed + _attention_macs(batch, length, length, embed))


# The counter would hand shapes, which a nested tensor has not; this reads the tensors.
_native_mha_flops._get_raw = True  # type: ignore[attr-defined]


def _quantized_mm_mapping() -> dict[Any, Any]:
    ops = {"_int_mm": _int_mm_flops, "_weight_int8pack_mm": _weight_pack_mm_flops}
    return {
        getattr(torch.ops.aten, op): fn for op, fn in ops.items() if hasattr(torch.ops.aten, op)
    }


def _plain_twin(model: nn.Module) -> nn.Module:
    """``model`` itself, or, when it holds tensor-subclass weights (torchao), a copy with
    those dequantized to plain tensors (every other tensor shared, not copied).

    Under the FLOP counter's dispatch mode a subclass weight can reach aten ops its class
    does not implement (``F.multi_head_attention_forward`` transposes ``out_proj.weight``:
    ``Int8Tensor ... aten.t``). The int8 kernels count like ``mm`` anyway, and the zeros
    of a subclass weight are read dequantized, so the twin gives the same two counts.
    """
    memo: dict[int, Any] = {}
    found = False
    for t in [*model.parameters(), *model.buffers()]:
        if is_tensor_subclass(t):
            found = True
            memo[id(t)] = nn.Parameter(dequantized(t.detach()), requires_grad=False)
        else:
            memo[id(t)] = t
    return copy.deepcopy(model, memo) if found else model


def macs(model: nn.Module, example_input: Inputs) -> tuple[int, int]:
    """``(macs, effective_macs)`` of one forward pass on ``example_input``.

    Recurrent layers (LSTM, GRU, RNN and their cells, float or int8) are counted from
    their shapes, in place of whatever the FLOP counter saw of them (it sees no LSTM).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> macs(nn.Linear(4, 3), torch.zeros(2, 4))
    (24, 24)
    """
    example_input = prepare_inputs(model, example_input)
    model = _plain_twin(model)
    per_module: list[tuple[nn.Module, int]] = []

    def record(module: nn.Module, args: tuple, output: Any) -> None:
        per_module.append((module, _module_macs(module, args, output)))

    # CPU fused attention is missing from the counter's table; count it like the CUDA kernels.
    mapping = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:
        mapping[cpu_sdpa] = _cpu_sdpa_flops
    mapping.update(_quantized_mm_mapping())
    # So is nn.MultiheadAttention's fused path (the hooks below keep encoder layers off theirs).
    mapping[torch.ops.aten._native_multi_head_attention] = _native_mha_flops
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    recurrent = {"flops_seen": 0, "macs": 0, "skipped": 0.0}
    started: list[int] = []

    def counted() -> int:
        return sum(counter.flop_counts["Global"].values())

    def enter(module: nn.Module, args: tuple) -> None:
        started.append(counted())

    def leave(module: nn.Module, args: tuple, output: Any) -> None:
        n, skip = _recurrent_macs(module, args)
        recurrent["flops_seen"] += counted() - started.pop()
        recurrent["macs"] += n
        recurrent["skipped"] += skip

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, _WEIGHTED)]
    for m in model.modules():
        if isinstance(m, _RECURRENT):
            hooks.append(m.register_forward_pre_hook(enter))
            hooks.append(m.register_forward_hook(leave))
    try:
        with torch.no_grad(), dense_encoders(model), counter:
            _call(model, example_input)
    finally:
        for h in hooks:
            h.remove()
    total = (counter.get_total_flops() - recurrent["flops_seen"]) // 2 + recurrent["macs"]
    total += sum(n for m, n in per_module if isinstance(m, _DYNAMIC_LINEAR))
    skipped = sum(n * _zero_fraction(m) for m, n in per_module) + recurrent["skipped"]
    return int(total), round(total - skipped)


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
            _call(model, example_input)
            if time.perf_counter() - start > budget_s / 4:
                break
        times: list[float] = []
        while len(times) < repeats:
            start = time.perf_counter()
            _call(model, example_input)
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
        _call(model, example_input)
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
