"""Reading bitsandbytes' quantized Linears: what they store and the weights they stand for.

bitsandbytes keeps a quantized weight as an ``nn.Parameter`` subclass, not a wrapper tensor:
``Int8Params`` (``Linear8bitLt``, LLM.int8) is the int8 matrix itself and its float32 row
scales (``SCB``) sit on the parameter until the first forward moves them to the module's
``state``; ``Params4bit`` (``Linear4bit``) is the packed 4-bit codes, two a byte, shaped
``(out * in / 2, 1)``, with a ``quant_state`` holding the block scales (``absmax``, themselves
quantized to 8 bits with their own scales when the statistics are compressed) and the 16-value
code. Read as plain tensors they would be the codes, not the weights: this module reads them
through the layer, with bitsandbytes' own dequantization, and never imports bitsandbytes
unless such a layer is present (then it is installed).

Example
-------
>>> from torch import nn
>>> is_bnb_linear(nn.Linear(2, 2))
False
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = [
    "bnb_linears",
    "dequantized_weight",
    "is_bnb_linear",
    "is_bnb_param",
    "param_dequantized",
    "param_parts",
    "plain_linear",
    "stored_parts",
]

_LAYERS = ("Linear8bitLt", "Linear4bit")
_PARAMS = ("Int8Params", "Params4bit")


def _from_bnb(obj: object, names: tuple[str, ...]) -> bool:
    return any(
        c.__module__.startswith("bitsandbytes.") and c.__name__ in names for c in type(obj).__mro__
    )


def is_bnb_linear(module: nn.Module) -> bool:
    """True for bitsandbytes' ``Linear8bitLt`` and ``Linear4bit`` (and their subclasses)."""
    return _from_bnb(module, _LAYERS)


def is_bnb_param(t: object) -> bool:
    """True for bitsandbytes' ``Int8Params`` and ``Params4bit``."""
    return _from_bnb(t, _PARAMS)


def bnb_linears(model: nn.Module) -> dict[str, nn.Module]:
    """``{name: layer}`` of the bitsandbytes quantized Linears in ``model``."""
    return {name: m for name, m in model.named_modules() if is_bnb_linear(m)}


def _int8_parts(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    weight = module.weight
    # Before the first forward the codes and scales sit on the weight (CB, SCB); the forward
    # moves them to module.state (init_8bit_state). weight.data is the codes either way.
    scb = getattr(weight, "SCB", None)
    if scb is None:
        scb = getattr(getattr(module, "state", None), "SCB", None)
    if scb is None:
        raise ValueError(
            f"{type(module).__name__} holds no row scales (SCB): it is not quantized yet; "
            "build it with has_fp16_weights=False and move it to a device (.to('cpu'))"
        )
    return weight.data, scb


def _quant_state(module: nn.Module) -> Any:
    state = getattr(module.weight, "quant_state", None)
    if state is None:
        raise ValueError(
            f"{type(module).__name__} has no quant_state: it is not quantized yet; move it to "
            "a device (.to('cpu')) after loading its float weights"
        )
    if getattr(state, "packing_format_for_cpu", False):
        # bitsandbytes repacks a Linear4bit for its bfloat16 CPU kernel on the first forward
        # (CPUs with AVX512-BF16); the bnb operation turns that off. Its state_dict() packs it
        # back, which reads the stored layout again.
        raise ValueError(
            f"this {type(module).__name__} was repacked for bitsandbytes' bfloat16 CPU kernel "
            "by a forward pass; set module.support_avx512bf16_for_cpu = False before running "
            "it (the 'bnb' operation does) and call its state_dict() to restore the layout"
        )
    return state


def _state_parts(state: Any) -> Iterator[tuple[str, torch.Tensor]]:
    yield "absmax", state.absmax
    if state.nested:
        yield "nested_absmax", state.state2.absmax
        yield "nested_code", state.state2.code
    yield "code", state.code


def stored_parts(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, plain tensor)`` for the weight data a bitsandbytes Linear stores.

    8-bit: ``CB`` (int8, one byte a weight) and ``SCB`` (float32, one per output row).
    4-bit: ``data`` (uint8, two codes a byte), ``absmax`` (a scale per block: float32, or
    uint8 with ``nested_absmax`` float32 scales per 256 of them and their ``nested_code``
    when the statistics are compressed) and ``code`` (the 16 values of NF4 / FP4). The bias
    is not included.
    """
    if _from_bnb(module, ("Linear8bitLt",)):
        cb, scb = _int8_parts(module)
        yield "CB", cb
        yield "SCB", scb
        return
    state = _quant_state(module)
    yield "data", module.weight.data
    yield from _state_parts(state)


def dequantized_weight(module: nn.Module) -> torch.Tensor:
    """The layer's weight as a float32 ``(out, in)`` tensor, dequantized by bitsandbytes.

    8-bit: ``int8_vectorwise_dequant(CB, SCB)`` (codes times row scale / 127); 4-bit:
    ``dequantize_4bit`` of the codes with their quant_state.
    """
    if _from_bnb(module, ("Linear8bitLt",)):
        return _dequantize(*_int8_parts(module))
    return _dequantize(module.weight.data, _quant_state(module))


def _dequantize(codes: torch.Tensor, scales_or_state: Any) -> torch.Tensor:
    import bitsandbytes.functional as bnb_f

    with torch.no_grad():
        if isinstance(scales_or_state, torch.Tensor):
            return bnb_f.int8_vectorwise_dequant(codes, scales_or_state).float()
        return bnb_f.dequantize_4bit(codes, scales_or_state).float()


def param_parts(t: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    """What an ``Int8Params`` / ``Params4bit`` holds by itself: its codes, and its scales
    while they sit on it (an int8 weight's move to its layer on the first forward, and a
    weight not yet quantized has none: read those through the layer, :func:`stored_parts`)."""
    yield ("CB" if _from_bnb(t, ("Int8Params",)) else "data"), t.data
    scb = getattr(t, "SCB", None)
    if scb is not None:
        yield "SCB", scb
    state = getattr(t, "quant_state", None)
    if state is not None and not getattr(state, "packing_format_for_cpu", False):
        yield from _state_parts(state)


def param_dequantized(t: torch.Tensor) -> torch.Tensor:
    """The float32 weight an ``Int8Params`` / ``Params4bit`` stands for.

    Raises
    ------
    TypeError
        When its scales are not on it (see :func:`param_parts`).
    """
    scb = getattr(t, "SCB", None)
    state = getattr(t, "quant_state", None)
    if scb is not None:
        return _dequantize(t.data, scb)
    if state is not None and not getattr(state, "packing_format_for_cpu", False):
        return _dequantize(t.data, state)
    raise TypeError(
        f"this {type(t).__name__} holds its codes without their scales (an int8 weight's "
        "move to its layer on the first forward); read it through its layer: "
        "cnc_widgets.compress.bnb_weight.dequantized_weight(layer)"
    )


def plain_linear(module: nn.Module) -> nn.Linear:
    """An ``nn.Linear`` with the layer's dequantized weight and its bias (for MAC counting:
    bitsandbytes' matmuls are custom ops the FLOP counter does not see)."""
    weight = dequantized_weight(module)
    plain = nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if module.bias is not None:
            plain.bias.copy_(module.bias.detach().float())
    return plain.requires_grad_(False)
