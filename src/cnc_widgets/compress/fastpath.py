"""Keep PyTorch's transformer fast path away from compressed layers.

In eval mode ``nn.TransformerEncoderLayer`` (and ``nn.TransformerEncoder``, which turns a
padded batch into a nested tensor for it) hands its weights straight to one fused kernel,
reading ``self_attn.out_proj.weight``, ``linear1.weight``, ``linear2.weight`` and the norms'
tensors itself. A dynamic int8 Linear's ``weight`` is a method and a low-rank Linear has
none, so such a child fails before it computes anything. ``torch.backends.mha
.set_fastpath_enabled(False)`` would avoid that for every model in the process; here only the
affected modules of the child are marked, with the switches torch itself honours:

- an encoder layer gets a no-op forward pre-hook (torch takes the slow path, module by
  module, whenever a hook is attached to the layer or its children);
- an encoder holding such a layer gets ``use_nested_tensor = False``.

Both travel with the model (``copy.deepcopy``, pickling) and are set again whenever the
operation is replayed, so the child also runs when called directly, outside the library.
``nn.MultiheadAttention`` (alone or in a decoder layer) reads only its own ``in_proj`` and
``out_proj`` tensors on its fast path; the built-in operations leave those as float
tensors (``out_proj`` is torch's ``NonDynamicallyQuantizableLinear``, which dynamic
quantization and ``low_rank`` skip; torchao's tensor subclasses make torch choose the slow
path itself), so it needs no mark. ``nn.TransformerDecoderLayer`` has no fused path.

Example
-------
>>> from torch import nn
>>> from cnc_widgets.compress.fastpath import keep_slow_path, slow_path_layers
>>> enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, batch_first=True), 1)
>>> slow_path_layers(keep_slow_path(enc))
[]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["keep_slow_path", "slow_path_layers"]

# What the fused encoder-layer kernel reads directly (torch/nn/modules/transformer.py).
_FUSED_TENSORS = (
    "self_attn.in_proj_weight",
    "self_attn.in_proj_bias",
    "self_attn.out_proj.weight",
    "self_attn.out_proj.bias",
    "norm1.weight",
    "norm1.bias",
    "norm2.weight",
    "norm2.bias",
    "linear1.weight",
    "linear1.bias",
    "linear2.weight",
    "linear2.bias",
)
_SUBMODULES = ("self_attn.out_proj", "linear1", "linear2", "norm1", "norm2")


def slow_path(module: nn.Module, args: Any) -> None:
    """The marker hook: does nothing; its presence makes torch skip the fused kernel."""
    return None


def _plain(module: nn.Module, dotted: str) -> bool:
    owner_name, _, attr = dotted.rpartition(".")
    try:
        owner = module.get_submodule(owner_name) if owner_name else module
    except AttributeError:
        return False
    value = getattr(owner, attr, None)
    return isinstance(value, torch.Tensor) and not value.is_quantized


def _fused_unsafe(layer: nn.TransformerEncoderLayer) -> bool:
    """Whether the fused kernel would read something that is not a plain tensor of a plain
    torch module (a quantized or factorised Linear)."""
    for sub in _SUBMODULES:
        try:
            m = layer.get_submodule(sub)
        except AttributeError:
            return True
        if not type(m).__module__.startswith("torch.nn.modules"):
            return True
    return not all(_plain(layer, t) for t in _FUSED_TENSORS)


def _marked(layer: nn.Module) -> bool:
    return any(h is slow_path for h in layer._forward_pre_hooks.values())


def keep_slow_path(model: nn.Module) -> nn.Module:
    """Mark the encoder layers (and encoders) of ``model`` that the fused kernel cannot run.

    Idempotent; modules the fused kernel handles are left as they are, so an uncompressed
    or pruned model keeps its speed. Modifies and returns ``model``.
    """
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoderLayer) and not _marked(module):
            if _fused_unsafe(module):
                module.register_forward_pre_hook(slow_path)
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoder) and any(
            _marked(layer) for layer in module.layers
        ):
            # A nested tensor would otherwise reach the slow layers, whose quantized Linears
            # take only dense inputs.
            module.use_nested_tensor = False
    return model


def slow_path_layers(model: nn.Module) -> list[str]:
    """Names of the encoder layers of ``model`` marked by :func:`keep_slow_path`."""
    return [n for n, m in model.named_modules() if _marked(m)]
