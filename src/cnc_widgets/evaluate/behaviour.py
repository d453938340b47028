"""What a model computes besides its ``state_dict``: hooks, attributes, buffers.

Two models with equal weights can still compute different things: a forward hook that
clips activations, a ``LeakyReLU`` with another ``negative_slope``, a non-persistent
buffer. :func:`behaviour_items` lists those facts as stable text and tensors, so that
:func:`cnc_widgets.evaluate.fingerprint.model_fingerprint` (which hashes them) changes
whenever behaviour can, and stays the same across processes and deep copies.

Hooks that only observe (they return nothing, call nothing and change nothing but
their own counters, like a forward-call counter) are left out, so counting calls does
not make a model look new. Every other hook is described by its code, its constants and
the simple values it closes over; anything that cannot be described stably is named by
its type, which errs on the side of a new fingerprint.
"""

from __future__ import annotations

import dis
import enum
import functools
import hashlib
import json
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["behaviour_items", "callable_digest", "is_inert_hook"]

_SIMPLE = (bool, int, float, complex, str, bytes, type(None))
_HOOK_DICTS = (
    "_forward_pre_hooks",
    "_forward_hooks",
    "_backward_pre_hooks",
    "_backward_hooks",
)
_GLOBAL_HOOKS = (
    "_global_forward_pre_hooks",
    "_global_forward_hooks",
    "_global_backward_pre_hooks",
    "_global_backward_hooks",
)
# Module attributes that describe bookkeeping, not computation.
# Attributes that never change outputs: the mode (handled by evaluation), bookkeeping, and
# the printed description (torchao patches extra_repr on the modules it quantizes).
_SKIP_ATTRIBUTES = {"training", "warnings_issued", "extra_repr"}
# Objects whose other attributes are per-call scratch: bitsandbytes' int8 Linear keeps its
# settings in a MatmulLtState that its forward also fills (codes, scales, outlier columns,
# training flag); only the settings say what it computes (its codes are in the state_dict).
_SETTINGS_ONLY = {
    "bitsandbytes.autograd._functions.MatmulLtState": ("threshold", "has_fp16_weights"),
}


def behaviour_items(model: nn.Module) -> Iterator[tuple[str, Any]]:
    """``(name, value)`` pairs describing hooks, attributes and non-persistent buffers.

    Values are strings or tensors; the fingerprint hashes them in this order.
    """
    memo: dict[int, str] = {}
    persistent = set(model.state_dict().keys())
    for name, buf in model.named_buffers():
        if name not in persistent:
            yield f"buffer:{name}", buf
    for mname, module in model.named_modules():
        for attr in sorted(vars(module)):
            if attr.startswith("_") or attr in _SKIP_ATTRIBUTES:
                continue
            value = vars(module)[attr]
            if isinstance(value, nn.Module):
                continue
            yield f"attr:{mname}.{attr}", _describe(value, memo)
        for kind in _HOOK_DICTS:
            hooks = getattr(module, kind, None) or {}
            for i, hook in enumerate(hooks.values()):
                if not is_inert_hook(hook):
                    yield f"hook:{mname}:{kind}:{i}", _describe(hook, memo)
    from torch.nn.modules import module as module_mod

    for kind in _GLOBAL_HOOKS:
        hooks = getattr(module_mod, kind, None) or {}
        for i, hook in enumerate(hooks.values()):
            if not is_inert_hook(hook):
                yield f"global_hook:{kind}:{i}", _describe(hook, memo)


def callable_digest(fn: Any) -> str:
    """A stable hex digest of what a callable computes (code, constants, closed-over values).

    Examples
    --------
    >>> callable_digest(lambda x: x + 1) == callable_digest(lambda x: x + 1)
    True
    >>> callable_digest(lambda x: x + 1) == callable_digest(lambda x: x + 2)
    False
    """
    return hashlib.sha256(_describe(fn, {}).encode()).hexdigest()


def _describe(value: Any, memo: dict[int, str], depth: int = 0) -> Any:
    """Stable text for a value (a tensor stays a tensor at the top level)."""
    if isinstance(value, torch.Tensor):
        return value if depth == 0 else _tensor_text(value)
    if isinstance(value, _SIMPLE):
        return repr(value)
    if isinstance(value, (torch.dtype, torch.device, torch.Size, enum.Enum)):
        return repr(value)
    if depth > 4:
        return _qualname(value)
    key = id(value)
    if key in memo:
        return memo[key]
    memo[key] = _qualname(value)  # guards against cycles while describing
    text = _describe_object(value, memo, depth + 1)
    memo[key] = text
    return text


def _describe_object(value: Any, memo: dict[int, str], depth: int) -> str:
    if isinstance(value, (tuple, list, frozenset, set)):
        items = [_describe(v, memo, depth) for v in value]
        if isinstance(value, (set, frozenset)):
            items.sort()
        return f"{type(value).__name__}[{','.join(items)}]"
    if isinstance(value, dict):
        items = sorted(f"{k!r}:{_describe(v, memo, depth)}" for k, v in value.items())
        return "dict{" + ",".join(items) + "}"
    if isinstance(value, functools.partial):
        return (
            f"partial({_describe(value.func, memo, depth)},"
            f"{_describe(value.args, memo, depth)},{_describe(value.keywords, memo, depth)})"
        )
    if isinstance(value, types.MethodType):
        owner = value.__self__
        state = (
            {
                k: v
                for k, v in vars(owner).items()
                if isinstance(v, (float, bool, str, torch.Tensor)) and not k.startswith("__")
            }
            if hasattr(owner, "__dict__") and not isinstance(owner, nn.Module)
            else {}
        )
        return (
            f"method({_qualname(owner)},{_describe(value.__func__, memo, depth)},"
            f"{_describe_object(state, memo, depth)})"
        )
    if isinstance(value, types.FunctionType):
        return _function_text(value, memo, depth)
    if isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType)):
        return f"builtin:{getattr(value, '__module__', '')}.{value.__qualname__}"
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        try:
            return f"{_qualname(value)}:{json.dumps(to_dict(), sort_keys=True, default=str)}"
        except Exception:  # an odd to_dict only costs a cache hit
            pass
    if isinstance(value, type):
        return f"type:{value.__module__}.{value.__qualname__}"
    if hasattr(value, "__dict__") and not isinstance(value, nn.Module):
        # Simple settings only: a recorder's growing lists would make the text unstable.
        state = {k: v for k, v in vars(value).items() if isinstance(v, _SIMPLE)}
        if _qualname(value) in _SETTINGS_ONLY:
            state = {k: state.get(k) for k in _SETTINGS_ONLY[_qualname(value)]}
        # Not through _describe: its memo is keyed by id(), and this temporary dict's id can
        # be reused by the next one (quanto's qtype described as an optimizer's empty state).
        return f"{_qualname(value)}:{_describe_object(state, memo, depth)}"
    return _qualname(value)


def _function_text(fn: types.FunctionType, memo: dict[int, str], depth: int) -> str:
    parts = [f"fn:{fn.__module__}.{fn.__qualname__}", _code_text(fn.__code__)]
    if fn.__defaults__:
        parts.append(_describe(fn.__defaults__, memo, depth))
    if fn.__kwdefaults__:
        parts.append(_describe(fn.__kwdefaults__, memo, depth))
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
        try:
            content = cell.cell_contents
        except ValueError:  # an empty cell
            content = None
        parts.append(f"{name}={_describe(content, memo, depth)}")
    # Simple module-level values the code reads (a global clipping threshold).
    for name in fn.__code__.co_names:
        g = fn.__globals__.get(name)
        if isinstance(g, (bool, int, float, str)):
            parts.append(f"global {name}={g!r}")
    return "(" + ";".join(parts) + ")"


def _code_text(code: types.CodeType) -> str:
    # Bytecode, constants and names, not the file name or line numbers (which change
    # every time a notebook cell is re-run).
    consts = [_code_text(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    h = hashlib.sha256(code.co_code)
    h.update(repr((consts, code.co_names, code.co_argcount)).encode())
    return h.hexdigest()


def _tensor_text(t: torch.Tensor) -> str:
    t = t.detach().cpu()
    if t.is_quantized:
        t = t.dequantize()
    raw = t.contiguous().reshape(-1).view(torch.uint8).numpy()
    return f"tensor:{t.dtype}:{tuple(t.shape)}:{hashlib.sha256(raw).hexdigest()}"


def _qualname(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


_CALLS = {"CALL", "PRECALL", "CALL_FUNCTION", "CALL_FUNCTION_EX", "CALL_METHOD", "CALL_KW"}
_ITEM_WRITES = {"STORE_SUBSCR", "DELETE_SUBSCR", "STORE_SLICE", "DELETE_ATTR"}
_STORES = {"STORE_FAST", "STORE_DEREF", "STORE_GLOBAL", "STORE_NAME", "STORE_ATTR"}


def is_inert_hook(hook: Any) -> bool:
    """True for a hook that provably only observes: it returns ``None``, calls nothing,
    writes no item, and updates in place only its own state (``self.calls += 1``).

    Anything else (a hook that returns a value, calls a function, or is not plain
    Python code) may change what the model computes.
    """
    fn, owner_arg = hook, None
    if isinstance(hook, types.MethodType):
        fn, owner_arg = hook.__func__, 0
    if not isinstance(fn, types.FunctionType):
        return False
    code = fn.__code__
    if any(isinstance(c, types.CodeType) for c in code.co_consts):
        return False
    args = set(code.co_varnames[: code.co_argcount])
    own = code.co_varnames[0] if owner_arg == 0 and code.co_argcount else None
    if own is not None:
        args.discard(own)
    ops = list(dis.get_instructions(code))
    for i, ins in enumerate(ops):
        name = ins.opname
        if name in _CALLS or name in _ITEM_WRITES:
            return False
        if name == "RETURN_VALUE":
            if i == 0 or ops[i - 1].opname != "LOAD_CONST" or ops[i - 1].argval is not None:
                return False
        elif name == "RETURN_CONST" and ins.argval is not None:
            return False
        elif name.startswith("BINARY_OP") and "=" in (ins.argrepr or ""):
            # An in-place operator: allowed only on the hook's own state.
            store = next((o for o in ops[i + 1 :] if o.opname in _STORES), None)
            if store is None:
                return False
            if store.opname == "STORE_ATTR":
                base = _attribute_base(ops, i)
                if base is None or base in args:
                    return False
            elif store.argval in args:
                return False
        elif name.startswith("INPLACE_"):
            return False
    return True


def _attribute_base(ops: list[dis.Instruction], before: int) -> str | None:
    """The variable whose attribute an in-place operator at ``before`` updates."""
    for j in range(before - 1, -1, -1):
        if ops[j].opname == "COPY" or ops[j].opname == "DUP_TOP":
            if j == 0:
                return None
            load = ops[j - 1]
            if load.opname in {"LOAD_FAST", "LOAD_DEREF", "LOAD_GLOBAL", "LOAD_NAME"}:
                return str(load.argval)
            return None
    return None
