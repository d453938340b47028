"""Which modules without parameters get rows of their own in the layer table (ReLU, pooling,
GELU...), and which only hand on a measured module's tensor (Dropout in eval, Identity) and
copy its numbers instead of being measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..evaluate.model_io import call_model, eval_mode, model_device, model_dtype, n_rows, slice_rows
from ..evaluate.modules import first_tensor, leaf_modules
from .weights import module_weights


def activation_only_modules(
    model: nn.Module, weights: Mapping[str, Mapping[str, torch.Tensor]] | None = None
) -> list[str]:
    """Leaf modules without parameters (ReLU, GELU, pooling, dropout, ...), in module order.

    ``weights`` is :func:`module_weights` of ``model`` when already at hand.

    Examples
    --------
    >>> activation_only_modules(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Dropout()))
    ['1', '2']
    """
    weights = module_weights(model) if weights is None else weights
    owners = tuple(f"{name}." for name in weights)
    return [
        name
        for name in leaf_modules(model, pass_through=True)
        if name not in weights and not name.startswith(owners)
    ]


def _in_module_order(model: nn.Module, *groups: Sequence[str]) -> list[str]:
    wanted = set().union(*groups)
    return [name for name, _ in model.named_modules() if name in wanted]


def _copied_pairs(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: torch.Tensor | dict[str, torch.Tensor],
    pairs: Sequence[tuple[str, str]],
    act_a: Sequence[str],
    act_b: Sequence[str],
) -> dict[str, str]:
    """Pass-through rows whose outputs are another measured pair's, by a's name -> source.

    In eval mode Dropout and Identity return their input tensor itself; when that tensor
    is what a measured module returned, in a and in b, the pair's numbers are the same
    to the bit. One forward pass of each model on two rows finds out (a module whose
    last output is the same tensor object as another module's).
    """
    through_a = set(act_a) - set(leaf_modules(model_a))
    through_b = set(act_b) - set(leaf_modules(model_b))
    candidates = [(a, b) for a, b in pairs if a in through_a and b in through_b]
    if not candidates:
        return {}
    try:
        same_a = _same_output(model_a, inputs, [a for a, _ in pairs])
        same_b = _same_output(model_b, inputs, [b for _, b in pairs])
    except Exception:  # the probe is an optimisation: without it every row is measured
        return {}
    sources = [p for p in pairs if p[0] not in through_a or p[1] not in through_b]
    copies = {}
    for a, b in candidates:
        for src_a, src_b in sources:
            if src_a in same_a.get(a, ()) and src_b in same_b.get(b, ()):
                copies[a] = src_a
                break
    return copies


def _same_output(model: nn.Module, inputs: Any, names: Sequence[str]) -> dict[str, set[str]]:
    """For each module, the other modules whose last output on two rows is the same tensor."""
    outputs: dict[str, Any] = {}
    handles = []
    for name in dict.fromkeys(names):

        def hook(_m: nn.Module, _args: Any, output: Any, name: str = name) -> None:
            outputs[name] = first_tensor(output)

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        rows = min(2, n_rows(inputs))
        batch = slice_rows(inputs, 0, rows, model_dtype(model), model_device(model))
        with eval_mode(model):
            call_model(model, batch)
    finally:
        for h in handles:
            h.remove()
    live = {k: v for k, v in outputs.items() if v is not None}
    return {k: {o for o, w in live.items() if o != k and w is v} for k, v in live.items()}
