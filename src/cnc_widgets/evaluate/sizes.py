"""Why a model has the size it has: bytes by dtype, and what an operation changed or left.

An int8 model of 1.47 MB beside a float32 one of 1.57 MB is right when the embedding (82%
of the parameters) stays float, and a pruned model keeps its dense size; both look wrong
without the reason. :func:`bytes_by_dtype` splits what the state_dict stores by element
type; :func:`what_changed` lists, per module with weights, what an operation did to it
(quantized, cast, pruned, replaced, changed) and which modules it left as they were. The
registry keeps both in a compressed child's record (``info["sizes"]``); the details view
shows them.

Examples
--------
>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
>>> bytes_by_dtype(model)
{'float32': 192}
>>> what_changed(model, model.half())["changed"]
{'0': 'cast to float16', '1': 'cast to float16'}
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..compress.tensor_subclass import is_tensor_subclass, stored_tensors

__all__ = ["bytes_by_dtype", "size_report", "what_changed"]


def _flat(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield from (inner for _, inner in stored_tensors(value))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _flat(v)


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def bytes_by_dtype(model: nn.Module) -> dict[str, int]:
    """Bytes the state_dict stores per element type (a storage shared by two names, such
    as tied embeddings, counted once), largest first."""
    seen: set[Any] = set()
    out: dict[str, int] = {}
    for value in model.state_dict().values():
        for t in _flat(value):
            key = (t.untyped_storage().data_ptr(), t.dtype, t.numel())
            if key in seen:
                continue
            seen.add(key)
            name = _dtype_name(t)
            out[name] = out.get(name, 0) + t.numel() * t.element_size()
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _module_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's own weights (not its children's), packed int8 ones unpacked."""
    own: dict[str, torch.Tensor] = {}
    for key, value in module.state_dict(keep_vars=False).items():
        if "." in key.replace("_packed_params.", ""):
            continue
        tensors = list(_flat(value))
        if tensors:
            own[key] = tensors[0]
    return own


def _is_quantized(t: torch.Tensor) -> bool:
    return t.is_quantized or not (t.is_floating_point() or t.is_complex())


def _describe(mod_a: nn.Module, mod_b: nn.Module) -> str | None:
    """What happened to one module between a and b, or None when it is the same."""
    ta, tb = _module_tensors(mod_a), _module_tensors(mod_b)
    if type(mod_a) is not type(mod_b):
        kind = f"{type(mod_b).__module__}.{type(mod_b).__name__}"
        if any(_is_quantized(t) for t in tb.values()) or "quantized" in kind:
            return f"quantized ({kind.removeprefix('torch.ao.nn.')})"
        return f"replaced by {type(mod_b).__name__}"
    if ta.keys() != tb.keys():
        return "weights changed"
    for key, a in ta.items():
        b = tb[key]
        if a.shape != b.shape:
            return _packed(mod_b, key) or "reshaped"
        if a.dtype != b.dtype:
            what = "quantized to" if _is_quantized(b) else "cast to"
            return f"{what} {_dtype_name(b)}"
    for key, a in ta.items():
        b = tb[key]
        if a.is_quantized or b.is_quantized:
            a, b = a.dequantize(), b.dequantize()
        if not torch.equal(a, b):
            zeros_a, zeros_b = int((a == 0).sum()), int((b == 0).sum())
            if zeros_b > zeros_a and torch.equal(torch.where(b == 0, 0, a), b):
                return f"pruned ({zeros_b / max(b.numel(), 1):.0%} zeros in {key})"
            return "weights changed"
    return None


def _packed(module: nn.Module, key: str) -> str | None:
    """``quantized (GGUFWeight Q4_0)`` for a weight stored packed in a tensor subclass (its
    blocks have another shape than the float weight), else None."""
    weight = getattr(module, key, None)
    if not is_tensor_subclass(weight):
        return None
    qtype = getattr(weight, "qtype", None)
    return f"quantized ({type(weight).__name__}{f' {qtype}' if qtype is not None else ''})"


def what_changed(parent: nn.Module, child: nn.Module) -> dict[str, Any]:
    """Per module with weights of the child: what the operation did, matched by name.

    Returns ``{"changed": {module: description}, "unchanged": [modules], "added":
    [modules], "removed": [modules]}``.
    """

    def weighted(model: nn.Module) -> dict[str, nn.Module]:
        return {name: m for name, m in model.named_modules() if _module_tensors(m)}

    a, b = weighted(parent), weighted(child)
    every_b = dict(child.named_modules())
    changed, unchanged = {}, []
    for name, mod_a in a.items():
        if name in b:
            how = _describe(mod_a, b[name])
        elif name in every_b:  # its weights moved into new children (a low-rank pair)
            how = f"replaced by {type(every_b[name]).__name__}"
        else:
            continue
        if how is None:
            unchanged.append(name)
        else:
            changed[name] = how

    def inside_changed(name: str) -> bool:
        return any(name.startswith(c + ".") for c in changed)

    return {
        "changed": changed,
        "unchanged": unchanged,
        "added": [n for n in b if n not in a and not inside_changed(n)],
        "removed": [n for n in a if n not in every_b],
    }


def size_report(parent: nn.Module, child: nn.Module) -> dict[str, Any]:
    """:func:`what_changed` plus :func:`bytes_by_dtype` of both, for a child's record."""
    return {
        **what_changed(parent, child),
        "bytes_by_dtype": bytes_by_dtype(child),
        "parent_bytes_by_dtype": bytes_by_dtype(parent),
    }
