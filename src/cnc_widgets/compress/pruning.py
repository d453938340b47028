"""Unstructured L1-magnitude pruning, written straight into the weights.

``torch.nn.utils.prune`` keeps a ``weight_orig`` and a ``weight_mask`` and recomputes the
weight in a hook; that renames state_dict entries and doubles the stored size. Here the
smallest weights are simply set to zero, so names, shapes and dtypes stay as they were and a
pruned model compares tensor-by-tensor with its parent.

Example
-------
>>> from torch import nn
>>> from cnc_widgets.compress.pruning import prune
>>> model = prune(nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)), amount=0.3)
>>> int((model[0].weight == 0).sum()), int((model[0].bias == 0).sum())
(30, 0)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["default_exclusions", "is_norm", "prunable_tensors", "prune"]

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


_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
# A layer left with fewer nonzero weights than this fraction is reported as emptied.
NEARLY_ALL = 0.99


def _patterns(value: str | Iterable[str] | None, what: str) -> list[re.Pattern]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    try:
        return [re.compile(v) for v in items]
    except (re.error, TypeError) as exc:
        raise ValueError(
            f"prune: {what} must be module names or regular expressions, got {value!r}"
        ) from exc


def _matches(name: str, patterns: list[re.Pattern]) -> bool:
    # A pattern matches a module when it matches its whole dotted name or that of a module
    # holding it: "encoder" covers encoder.layers.0.linear1, "layers.1" not layers.10.
    parts = name.split(".")
    scopes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return any(p.fullmatch(s) for p in patterns for s in scopes)


def default_exclusions(model: nn.Module) -> dict[str, str]:
    """Modules that :func:`prune` leaves out unless ``include`` names them, with the reason:
    the output head (the last ``nn.Linear`` or convolution registered, which produces the
    logits: a classifier that ends in a convolution after an input projection keeps its
    convolution, not the projection) and the embeddings (``nn.Embedding`` /
    ``nn.EmbeddingBag``).

    Examples
    --------
    >>> from torch import nn
    >>> default_exclusions(nn.Sequential(nn.Embedding(9, 4), nn.Linear(4, 4), nn.Linear(4, 2)))
    {'0': 'embedding', '2': 'output head'}
    """
    heads = [
        n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.modules.conv._ConvNd)
    ]
    head = heads[-1] if heads else None
    return {
        n: "output head" if n == head else "embedding"
        for n, m in model.named_modules()
        if n == head or isinstance(m, _EMBEDDINGS)
    }


def prunable_tensors(
    model: nn.Module,
    *,
    include_norms: bool = False,
    modules: Iterable[type | str] | None = None,
    biases: bool = False,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> list[tuple[str, nn.Parameter]]:
    """The parameters that :func:`prune` considers, as ``(name, parameter)`` pairs.

    The floating-point weights (parameters whose name has no ``bias``) of every module,
    except normalisation layers (unless ``include_norms``) and, unless ``include`` names
    them, the output head and the embeddings (:func:`default_exclusions`). ``biases`` adds
    the biases; ``modules`` keeps only modules of the given types (classes, or class names
    such as ``"Linear"``); ``include`` keeps only modules whose dotted name matches one of
    its regular expressions; ``exclude`` drops those matching. A tied parameter appears once.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> [n for n, _ in prunable_tensors(net)]
    ['0.weight']
    >>> [n for n, _ in prunable_tensors(net, biases=True, include=".*")]
    ['0.weight', '0.bias', '2.weight', '2.bias']
    """
    names, types = _module_filter(modules)
    inc, exc = _patterns(include, "include"), _patterns(exclude, "exclude")
    left_out = default_exclusions(model)
    seen: set[int] = set()
    chosen = []
    for prefix, module in model.named_modules():
        if is_norm(module) and not include_norms:
            continue
        if (names or types) and not (isinstance(module, types) or type(module).__name__ in names):
            continue
        if inc and not _matches(prefix, inc):
            continue
        if not inc and prefix in left_out:
            continue
        if exc and _matches(prefix, exc):
            continue
        for pname, param in module.named_parameters(recurse=False):
            if "bias" in pname and not biases:
                continue
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
    biases: bool = False,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    *,
    report: dict | None = None,
) -> nn.Module:
    """Zero the ``amount`` fraction of smallest-magnitude weights in place.

    As ``torch.nn.utils.prune`` on ``weight``, Torch-Pruning and Compress and Compare do:
    weights only, and neither the output head nor the embeddings unless asked, so that a
    global threshold cannot silence the classifier.

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
        Also prune the weights (and, with ``biases``, biases) of normalisation layers.
    modules
        Only prune parameters of these module types (classes, class names such as
        ``"Linear"``, or qualified names such as ``"torch.nn.modules.linear.Linear"``, which
        is how a provenance record keeps a class).
    biases
        Also prune biases (default: weights only).
    include
        Module names or regular expressions: prune only the modules they match, the head
        and the embeddings included when matched (``include=".*"``: every module).
    exclude
        Module names or regular expressions of modules to leave alone.
    report
        Filled with ``layer_sparsity`` (each pruned tensor's fraction of zeros afterwards)
        and ``left_out`` (the head and embeddings not pruned, with the reason).

    Warns
    -----
    UserWarning
        Naming the tensors that lost (nearly) all their weights (at least 99%).

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    >>> net = prune(net, amount=0.5, scope="tensor")
    >>> [round(float((p == 0).float().mean()), 2) for p in net.parameters()]
    [0.5, 0.0, 0.5, 0.0, 0.0, 0.0]
    """
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount <= 1:
        raise ValueError(f"prune: amount must be a number in [0, 1], got {amount!r}")
    if scope not in ("global", "tensor"):
        raise ValueError(f"prune: scope must be 'global' or 'tensor', got {scope!r}")
    for flag, value in (("include_norms", include_norms), ("biases", biases)):
        if not isinstance(value, bool):
            raise ValueError(f"prune: {flag} must be True or False, got {value!r}")
    named = prunable_tensors(
        model,
        include_norms=include_norms,
        modules=modules,
        biases=biases,
        include=include,
        exclude=exclude,
    )
    if not named:
        raise ValueError(
            f"prune: no parameters to prune (modules={modules!r}, include={include!r}, "
            f"exclude={exclude!r}); the output head and embeddings are left out unless "
            "include= names them"
        )
    chosen = [p for _, p in named]
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
    sparsity = {n: float((p == 0).sum()) / max(1, p.numel()) for n, p in named}
    emptied = [n for n, p in named if sparsity[n] >= NEARLY_ALL and p.numel() > 1]
    if emptied:
        warnings.warn(
            f"prune(amount={amount}): {len(emptied)} tensor(s) lost (nearly) all their weights "
            f"({', '.join(emptied)}); these layers now output only their bias. Use "
            "scope='tensor', a smaller amount, or exclude= them",
            UserWarning,
            stacklevel=2,
        )
    if report is not None:
        report["layer_sparsity"] = sparsity
        inc = _patterns(include, "include")
        report["left_out"] = {} if inc else default_exclusions(model)
    return model
