"""Weights shared by several modules (a language model's embedding and its tied output head).

A quantizer that replaces the weight of one module only (torchao's ``quantize_``, quanto,
``torch.ao`` dynamic quantization: Linear modules, not the embedding) would untie such a
weight: the embedding keeps the float matrix and the head gets a quantized copy of it, so
the model stores the matrix twice and ``params`` counts it twice (SmolLM2: 162.8M instead of
134.5M). The Linear-only quantizers therefore leave a tied Linear as it is, with the
embedding's treatment (float, still the same tensor, counted once); :func:`tied_linears`
finds them. The ``gguf`` operation, which quantizes embeddings too, quantizes the shared
weight once and gives every owner the same quantized tensor (:func:`owners`).

Example
-------
>>> from torch import nn
>>> model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
>>> model[1].weight = model[0].weight
>>> tied_linears(model)
{'1': '0'}
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["owners", "tied_linears"]


def owners(model: nn.Module) -> dict[int, list[tuple[str, nn.Module, str]]]:
    """``id(parameter) -> [(module name, module, attribute), ...]`` for every parameter.

    A parameter shared by several modules lists each of them.
    """
    found: dict[int, list[tuple[str, nn.Module, str]]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for attr, p in module.named_parameters(recurse=False):
            found.setdefault(id(p), []).append((name, module, attr))
    return found


def tied_linears(model: nn.Module) -> dict[str, str]:
    """``{Linear name: name of another module holding the same weight}``.

    Examples
    --------
    >>> tied_linears(nn.Sequential(nn.Linear(2, 2)))
    {}
    """
    shared = owners(model)
    out: dict[str, str] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(module, nn.Linear) or not isinstance(weight, torch.Tensor):
            continue
        others = [n for n, _, _ in shared.get(id(weight), []) if n != name]
        if others:
            out[name] = others[0]
    return out
