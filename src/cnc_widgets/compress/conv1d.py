"""transformers' ``Conv1D`` (GPT-2's attention and MLP projections) as ``nn.Linear``.

``Conv1D`` is a Linear that stores its weight transposed, ``(in, out)``: ``y = x @ W + b``.
The Linear-only quantizers (torchao's ``quantize_``, quanto, ``torch.ao`` dynamic
quantization) do not recognise it, so on GPT-2 they would quantize nothing (or only the tied
head). :func:`conv1d_to_linear` swaps each one for an ``nn.Linear`` holding ``W.T`` (same
outputs up to float rounding) and records the swapped names on the model, so that
:func:`transposed_names` lets the layer table compare the weight in the parent's ``(in, out)``
layout.

Example
-------
>>> from torch import nn
>>> conv1d_to_linear(nn.Sequential(nn.Linear(2, 2)))
[]
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["conv1d_to_linear", "is_conv1d", "transposed_names"]

_ATTR = "cnc_conv1d_as_linear"


def is_conv1d(module: nn.Module) -> bool:
    """True for transformers' ``Conv1D`` (weight ``(in, out)``)."""
    return type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers")


def conv1d_to_linear(model: nn.Module) -> list[str]:
    """Replace every transformers ``Conv1D`` in ``model`` (in place) by an ``nn.Linear``.

    Returns the replaced module names (also kept on ``model`` for :func:`transposed_names`).
    """
    names = [name for name, m in model.named_modules() if is_conv1d(m)]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old = getattr(parent, attr)
        w = old.weight.detach()
        new = nn.Linear(w.shape[0], w.shape[1], bias=old.bias is not None)
        new = new.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            new.weight.copy_(w.T)
            if old.bias is not None:
                new.bias.copy_(old.bias.detach())
        new.train(old.training)
        setattr(parent, attr, new)
    if names:
        setattr(model, _ATTR, sorted(set(transposed_names(model)) | set(names)))
    return names


def transposed_names(model: nn.Module) -> tuple[str, ...]:
    """Names of modules that :func:`conv1d_to_linear` turned into Linears in ``model``."""
    return tuple(getattr(model, _ATTR, ()))
