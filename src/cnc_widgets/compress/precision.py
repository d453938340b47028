"""Lower numeric precision: dynamic int8 quantization and float16 / bfloat16 casts.

A cast model keeps the interface of its parent: hooks on the top module cast floating-point
inputs to the model's dtype and floating-point outputs back to float32, while integer inputs
(token ids, attention masks) pass through unchanged. Hooks rather than a wrapper module keep
the state_dict names identical to the parent's, so the two compare tensor by tensor.

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

__all__ = ["bfloat16", "cast", "half", "quantize_dynamic"]


def quantize_dynamic(model: nn.Module, dtype: str = "qint8") -> nn.Module:
    """Quantize every ``nn.Linear`` to int8 weights with dynamic activation quantization.

    Uses ``torch.ao.quantization.quantize_dynamic`` (in place); its deprecation warning is
    silenced here only. The result runs on CPU and has no gradients.

    Examples
    --------
    >>> from torch import nn
    >>> type(quantize_dynamic(nn.Sequential(nn.Linear(4, 2)))[0]).__name__
    'Linear'
    """
    if dtype != "qint8":
        raise ValueError(f"quantize_dynamic: dtype must be 'qint8', got {dtype!r}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecat.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(
            model.eval(), {nn.Linear}, dtype=torch.qint8, inplace=True
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


def cast(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``model`` to ``dtype`` in place, keeping float32 in and float32 out.

    The hooks are module-level functions, so the model still deep-copies and pickles.
    """
    model.to(dtype)
    model.register_forward_pre_hook(_cast_inputs, with_kwargs=True)
    model.register_forward_hook(_cast_outputs)
    return model


def half(model: nn.Module) -> nn.Module:
    """Cast to float16 (see :func:`cast`)."""
    return cast(model, torch.float16)


def bfloat16(model: nn.Module) -> nn.Module:
    """Cast to bfloat16 (see :func:`cast`)."""
    return cast(model, torch.bfloat16)
