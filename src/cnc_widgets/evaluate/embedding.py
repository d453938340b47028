"""Which module's output is a model's representation (for kNN and OOD agreement).

Default: the input of the last ``nn.Linear``; when that input is the raw model input, the
output of the last module before the logits, found on the first batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .model_io import (
    Inputs,
)
from .modules import first_tensor, leaf_modules


def resolve_embedding(model: nn.Module, embedding: str | None) -> tuple[str, str]:
    """``(module name, "input" | "output")`` where the embedding is read."""
    if embedding is not None:
        try:
            model.get_submodule(embedding)
        except AttributeError:
            raise ValueError(
                f"embedding={embedding!r} is not a module of {type(model).__name__}; "
                f"candidates: {_candidates(model)}"
            ) from None
        return embedding, "output"
    linear_types: tuple[type, ...] = (nn.Linear,)
    try:
        from torch.ao.nn.quantized import Linear as QuantizedLinear

        linear_types += (QuantizedLinear,)  # the dynamic quantized Linear subclasses it
    except ImportError:  # pragma: no cover - torch without torch.ao
        pass
    from ..compress.low_rank import LowRankLinear

    # A factorised Linear is one layer: its input, not the rank-r middle, is the embedding.
    linear_types += (LowRankLinear,)
    last = None
    for mname, module in model.named_modules():
        if isinstance(module, linear_types) and not (last and mname.startswith(last + ".")):
            last = mname
    if last is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear to take the default embedding "
            f"from (its input); set embedding= to the dotted name of the module whose "
            f"output is the representation, one of {_candidates(model)}"
        )
    return last, "input"


class _DefaultEmbeddingProbe:
    """Moves the default embedding off the raw input when the last Linear reads it.

    When the input of the last ``nn.Linear`` is the model's input itself (the only
    Linear is an input projection), neighbourhoods of it compare the data with itself.
    The first batch is run with every leaf module's output in view; if the Linear's
    input turns out to be raw, the output of the last module run before the logits that
    is neither the input nor the logits becomes the embedding. When there is none (a
    linear classifier), the input stays, with a warning.
    """

    def __init__(self, model: nn.Module, linear: str) -> None:
        self.model, self.linear = model, linear
        self.outputs: dict[str, Any] = {}
        self.order: list[str] = []
        self.handles = [
            model.get_submodule(n).register_forward_hook(self._hook(n))
            for n in leaf_modules(model, pass_through=True)
        ]

    def _hook(self, name: str) -> Any:
        def keep(_m: nn.Module, _args: tuple, output: Any) -> None:
            self.outputs[name] = first_tensor(output)
            self.order.append(name)

        return keep

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def choose(
        self, batch: Inputs, linear_input: Any, logits: torch.Tensor
    ) -> tuple[str, str, torch.Tensor] | None:
        """``(module, "output", its output)`` to use instead, or None to keep the Linear."""
        raw = list(batch.values()) if isinstance(batch, Mapping) else [batch]
        if not _same_as_any(linear_input, raw):
            return None
        for name in reversed(self.order):
            t = self.outputs[name]
            if (
                isinstance(t, torch.Tensor)
                and t.is_floating_point()
                and t.dim() >= 2
                and not _same_as_any(t, [logits])
                and not _same_as_any(t, raw)
            ):
                return name, "output", t
        warnings.warn(
            f"{type(self.model).__name__}: the input of its last nn.Linear ({self.linear!r}) "
            "is the raw model input and no other module computes a representation, so kNN "
            "and OOD agreement compare the data with itself; pass embedding= naming a "
            "module whose output is a learned representation",
            UserWarning,
            stacklevel=4,
        )
        return None


def _same_as_any(t: Any, others: list[torch.Tensor]) -> bool:
    """``t`` is one of ``others``, a view of it (Flatten) or a copy with equal values."""
    if not isinstance(t, torch.Tensor) or t.is_quantized:
        return False
    for o in others:
        if not isinstance(o, torch.Tensor) or o.is_quantized:
            continue
        if t.untyped_storage().data_ptr() == o.untyped_storage().data_ptr():
            return True
        if t.numel() == o.numel() and t.dtype == o.dtype and torch.equal(t.ravel(), o.ravel()):
            return True
    return False


def _candidates(model: nn.Module, limit: int = 12) -> list[str]:
    names = [n for n, _ in model.named_children()] + leaf_modules(model)
    names = list(dict.fromkeys(names))
    return names[-limit:] if len(names) > limit else names
