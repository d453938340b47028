"""Multiply-accumulates of one forward pass (torch.utils.flop_counter), sparsity not discounted,
and the effective count where pruning makes it meaningful. Recurrent layers are counted from
their shapes, nn.MultiheadAttention's fused kernel and int8 / torchao matmuls as their float
twins, and encoders run the padded batch while counting.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, mm_flop, sdpa_flop_count

from ..compress.bnb_weight import is_bnb_linear, plain_linear
from ..compress.tensor_subclass import dequantized, is_tensor_subclass
from .model_io import Inputs, call_model, prepare_inputs
from .modules import dense_encoders

_DYNAMIC_LINEAR = torch.ao.nn.quantized.dynamic.Linear
_WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd, _DYNAMIC_LINEAR)


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
    bitsandbytes' Linears become float Linears with their dequantized weights.
    """
    memo: dict[int, Any] = {}
    found = False
    for module in model.modules():
        if is_bnb_linear(module):
            # bitsandbytes' matmuls are custom ops the counter does not see: a float Linear
            # of the same shape counts like them, zeros and all.
            found = True
            memo[id(module)] = plain_linear(module)
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
            call_model(model, example_input)
    finally:
        for h in hooks:
            h.remove()
    total = (counter.get_total_flops() - recurrent["flops_seen"]) // 2 + recurrent["macs"]
    total += sum(n for m, n in per_module if isinstance(m, _DYNAMIC_LINEAR))
    skipped = sum(n * _zero_fraction(m) for m, n in per_module) + recurrent["skipped"]
    return int(total), round(total - skipped)
