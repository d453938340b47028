"""Lower numeric precision: dynamic int8 quantization and float16 / bfloat16 casts.

A cast model keeps the interface of its parent: hooks on the top module cast floating-point
inputs to the model's dtype and floating-point outputs back to float32, while integer inputs
(token ids, attention masks) pass through unchanged. Every module that holds floating
weights (and every int8 dynamic Linear) also casts its floating inputs to its own dtype, so a
``forward`` that makes float32 tensors itself (``mask.float()`` mean pooling) still runs.
Hooks rather than a wrapper module keep the state_dict names identical to the parent's, so
the two compare tensor by tensor.

Example
-------
>>> import torch
>>> from torch import nn
>>> from cnc_widgets.compress.precision import half
>>> model = half(nn.Linear(4, 2))
>>> model.weight.dtype, model(torch.zeros(1, 4)).dtype
(torch.float16, torch.float32)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .conv1d import conv1d_to_linear
from .tied import tied_linears

__all__ = ["add_cast_hooks", "bfloat16", "cast", "half", "is_cast", "quantize_dynamic"]


def quantize_dynamic(model: nn.Module, dtype: str = "qint8") -> nn.Module:
    """Quantize every ``nn.Linear`` to int8 weights with dynamic activation quantization.

    Uses ``torch.ao.quantization.quantize_dynamic`` (in place); its deprecation warning is
    silenced here only. The result runs on CPU and has no gradients. A Linear whose weight
    is tied to another module (an output head sharing the embedding) stays float, tied:
    quantized alone it would store the matrix twice.

    Examples
    --------
    >>> from torch import nn
    >>> type(quantize_dynamic(nn.Sequential(nn.Linear(4, 2)))[0]).__name__
    'Linear'
    """
    if dtype != "qint8":
        raise ValueError(f"quantize_dynamic: dtype must be 'qint8', got {dtype!r}")
    conv1d_to_linear(model)  # GPT-2 keeps its Linears as Conv1D, which torch.ao skips
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.weight.dtype != torch.float32:
            raise ValueError(
                f"quantize_dynamic: Linear {name!r} holds {module.weight.dtype} weights, but "
                "int8 dynamic quantization needs float32 Linears (its kernels take float32 "
                "activations); quantize the float32 model instead, then cast the result "
                "with 'half' or 'bfloat16' if you want both"
            )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecat.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # Module names override the type entry: a tied Linear gets no qconfig.
        spec: dict[Any, Any] = {nn.Linear: torch.ao.quantization.default_dynamic_qconfig}
        spec.update(dict.fromkeys(tied_linears(model)))
        return torch.ao.quantization.quantize_dynamic(
            model.eval(), spec, dtype=torch.qint8, inplace=True
        )


def _to(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, Mapping):
        if isinstance(value, dict):
            # ModelOutput and dict subclasses keep their type and attributes when set in place.
            for key in list(value):
                value[key] = _to(value[key], dtype)
            return value
        return {k: _to(v, dtype) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)._make(_to(v, dtype) for v in value)
    if isinstance(value, list | tuple):
        return type(value)(_to(v, dtype) for v in value)
    return value


def _model_dtype(module: nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def _cast_inputs(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    dtype = _model_dtype(module)
    return _to(args, dtype), _to(kwargs, dtype)


def _cast_outputs(module: nn.Module, args: tuple, output: Any) -> Any:
    return _to(output, torch.float32)


def _has_hook(hooks: Mapping[int, Any], fn: Any) -> bool:
    return any(h is fn for h in hooks.values())


def is_cast(model: nn.Module) -> bool:
    """Whether ``model`` was made by :func:`cast` (its top module casts outputs back)."""
    return _has_hook(model._forward_hooks, _cast_outputs)


def _takes_own_dtype(module: nn.Module) -> bool:
    if type(module).__module__.startswith("torch.ao.nn.quantized"):
        return hasattr(module, "_packed_params")  # int8 dynamic Linear: float32 in
    return any(p.is_floating_point() for p in module.parameters(recurse=False))


def add_cast_hooks(model: nn.Module) -> nn.Module:
    """Give every module with weights of its own an input cast to its dtype (idempotent).

    :func:`cast` calls it; an operation that adds modules to a cast model (``low_rank``)
    is followed by it, so the new modules cast their inputs too.
    """
    for module in model.modules():
        if _takes_own_dtype(module) and not _has_hook(module._forward_pre_hooks, _cast_inputs):
            module.register_forward_pre_hook(_cast_inputs, with_kwargs=True)
    if not _has_hook(model._forward_pre_hooks, _cast_inputs):
        model.register_forward_pre_hook(_cast_inputs, with_kwargs=True)
    if not is_cast(model):
        model.register_forward_hook(_cast_outputs)
    return model


def cast(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``model`` to ``dtype`` in place, keeping float32 in and float32 out.

    Besides the top module, each module with weights casts its floating inputs to its
    dtype, so tensors that ``forward`` makes in float32 (a ``mask.float()`` for mean
    pooling) meet half weights as half. Int8 dynamic Linears keep float32 inputs: half of
    a quantized model casts the rest. The hooks are module-level functions, so the model
    still deep-copies and pickles.
    """
    model.to(dtype)
    return add_cast_hooks(model)


def half(model: nn.Module) -> nn.Module:
    """Cast to float16 (see :func:`cast`)."""
    return cast(model, torch.float16)


def bfloat16(model: nn.Module) -> nn.Module:
    """Cast to bfloat16 (see :func:`cast`)."""
    return cast(model, torch.bfloat16)
