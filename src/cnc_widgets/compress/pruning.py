"""Unstructured L1-magnitude pruning, written straight into the weights.

``torch.nn.utils.prune`` keeps a ``weight_orig`` and a ``weight_mask`` and recomputes the
weight in a hook; that renames state_dict entries and doubles the stored size. Here the
smallest weights are simply set to zero, so names, shapes and dtypes stay as they were and a
pruned model compares tensor-by-tensor with its parent.

Example
-------
>>> from torch import nn
>>> from cnc_widgets.compress.pruning import prune
>>> model = prune(nn.Linear(10, 10), amount=0.3)
>>> int((model.weight == 0).sum() + (model.bias == 0).sum())
33
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["is_norm", "prunable_tensors", "prune"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer (BatchNorm, LayerNorm, GroupNorm, RMSNorm).

    Subclasses of other libraries that are not torch norms (``T5LayerNorm``) are recognised by
    a class name ending in ``Norm``.
    """
    return isinstance(module, _NORMS) or type(module).__name__.endswith("Norm")


def _resolve(entry: type | str) -> type | str:
    """A dotted ``package.module.Class`` name, as the provenance record writes a type, is
    that type again, so a recorded ``modules=[nn.Linear]`` replays after reopening a store."""
    if not isinstance(entry, str) or "." not in entry:
        return entry
    import importlib

    module_name, _, attr = entry.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return entry.rsplit(".", 1)[-1]
    return found if isinstance(found, type) else entry


def _module_filter(modules: Iterable[type | str] | None) -> tuple[set[str], tuple[type, ...]]:
    if modules is None:
        return set(), ()
    if isinstance(modules, str | type):
        modules = [modules]
    modules = [_resolve(m) for m in modules]
    names = {m for m in modules if isinstance(m, str)}
    types = tuple(m for m in modules if isinstance(m, type))
    if len(names) + len(types) != len(list(modules)):
        raise ValueError(
            "prune: modules must be module types or class names, e.g. [nn.Linear, 'Conv2d']"
        )
    return names, types


def prunable_tensors(
    model: nn.Module,
    *,
    include_norms: bool = False,
    modules: Iterable[type | str] | None = None,
) -> list[tuple[str, nn.Parameter]]:
    """The parameters that :func:`prune` considers, as ``(name, parameter)`` pairs.

    Every floating-point parameter of every module, except those of normalisation layers
    (unless ``include_norms``); with ``modules`` only those of modules of the given types
    (classes, or class names such as ``"Linear"``). A tied parameter appears once.
    """
    names, types = _module_filter(modules)
    seen: set[int] = set()
    chosen = []
    for prefix, module in model.named_modules():
        if is_norm(module) and not include_norms:
            continue
        if (names or types) and not (isinstance(module, types) or type(module).__name__ in names):
            continue
        for pname, param in module.named_parameters(recurse=False):
            if param.is_floating_point() and id(param) not in seen:
                seen.add(id(param))
                chosen.append((f"{prefix}.{pname}" if prefix else pname, param))
    return chosen


def _smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly ``k`` smallest entries of the 1-D ``values`` (ties by position)."""
    mask = torch.zeros_like(values, dtype=torch.bool)
    if k <= 0:
        return mask
    if k >= values.numel():
        return ~mask
    threshold = torch.kthvalue(values, k).values
    mask = values < threshold
    # Weights equal to the threshold (often many exact zeros) are taken in order until k.
    ties = torch.nonzero(values == threshold).flatten()[: k - int(mask.sum())]
    mask[ties] = True
    return mask


def prune(
    model: nn.Module,
    amount: float,
    scope: str = "global",
    include_norms: bool = False,
    modules: Iterable[type | str] | None = None,
) -> nn.Module:
    """Zero the ``amount`` fraction of smallest-magnitude weights in place.

    Parameters
    ----------
    model
        Modified in place and returned (:func:`~cnc_widgets.compress.apply_operation`
        passes a copy).
    amount
        Fraction in [0, 1] of the chosen weights to set to zero.
    scope
        ``"global"``: one threshold over all chosen tensors together, so their total
        sparsity equals ``amount`` (to one element); ``"tensor"``: each tensor separately.
    include_norms
        Also prune the weights and biases of normalisation layers (default: left alone).
    modules
        Only prune parameters of these module types (classes, class names such as
        ``"Linear"``, or qualified names such as ``"torch.nn.modules.linear.Linear"``, which
        is how a provenance record keeps a class).

    Examples
    --------
    >>> from torch import nn
    >>> net = prune(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), amount=0.5, scope="tensor")
    >>> [round(float((p == 0).float().mean()), 2) for p in net.parameters()]
    [0.5, 0.5, 0.5, 0.5]
    """
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount <= 1:
        raise ValueError(f"prune: amount must be a number in [0, 1], got {amount!r}")
    if scope not in ("global", "tensor"):
        raise ValueError(f"prune: scope must be 'global' or 'tensor', got {scope!r}")
    if not isinstance(include_norms, bool):
        raise ValueError(f"prune: include_norms must be True or False, got {include_norms!r}")
    chosen = [p for _, p in prunable_tensors(model, include_norms=include_norms, modules=modules)]
    if not chosen:
        raise ValueError(f"prune: no parameters to prune (modules={modules!r})")
    with torch.no_grad():
        if scope == "tensor":
            for p in chosen:
                flat = p.detach().abs().flatten().float()
                keep = ~_smallest(flat, round(amount * flat.numel()))
                p.mul_(keep.view_as(p).to(p.dtype))
        else:
            flat = torch.cat([p.detach().abs().flatten().float() for p in chosen])
            keep = ~_smallest(flat, round(amount * flat.numel()))
            start = 0
            for p in chosen:
                p.mul_(keep[start : start + p.numel()].view_as(p).to(p.dtype))
                start += p.numel()
    return model
