"""Weights held as tensor subclasses (torchao's quantized tensors and their kind).

A quantized weight from torchao is a wrapper tensor: it reports the float dtype and shape of
the weight it replaced, keeps its real contents in plain inner tensors (int8 data, scales,
zero points) and implements only the operators its kernels need, so ``view``,
``count_nonzero`` or ``torch.equal`` on it raise. This module is the one place that knows how
to read such a weight: the plain tensors it stores (what is hashed and shipped), their bytes,
and its values dequantized to float32 (what sparsity, the layer table and histograms read).
It works for any traceable wrapper subclass (``__tensor_flatten__``), not torchao's only, and
never imports torchao.

Example
-------
>>> import torch
>>> from cnc_widgets.compress.tensor_subclass import dequantized, is_tensor_subclass
>>> w = torch.ones(2, 3)
>>> is_tensor_subclass(w), dequantized(w).dtype
(False, torch.float32)
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch
from torch import nn

from .bnb_weight import is_bnb_param, param_dequantized, param_parts

__all__ = ["dequantized", "describe", "is_tensor_subclass", "stored_bytes", "stored_tensors"]

# Object reprs with addresses would make two copies of one weight describe differently.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def is_tensor_subclass(t: object) -> bool:
    """True for a wrapper tensor subclass that keeps its data in inner tensors.

    Plain tensors, ``nn.Parameter`` and ``torch.ao`` quantized tensors are not.

    Examples
    --------
    >>> is_tensor_subclass(torch.nn.Parameter(torch.zeros(2)))
    False
    """
    if not isinstance(t, torch.Tensor) or type(t) in (torch.Tensor, nn.Parameter):
        return False
    return callable(getattr(type(t), "__tensor_flatten__", None))


def stored_tensors(t: torch.Tensor, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, plain tensor)`` for what ``t`` stores, nested subclasses flattened.

    For a torchao ``Int8Tensor`` these are ``qdata`` (int8), ``scale`` and ``zero_point``;
    for bitsandbytes' ``Params4bit`` its packed codes, block scales and code values, for its
    ``Int8Params`` the int8 codes and row scales (:func:`.bnb_weight.param_parts`); for a
    plain tensor, the tensor itself under ``prefix``.
    """
    if is_bnb_param(t):
        for name, inner in param_parts(t):
            yield (f"{prefix}.{name}" if prefix else name), inner
        return
    if not is_tensor_subclass(t):
        yield prefix, t
        return
    names, _ = t.__tensor_flatten__()
    for name in names:
        inner = getattr(t, name)
        if inner is not None:
            yield from stored_tensors(inner, f"{prefix}.{name}" if prefix else name)


def describe(t: torch.Tensor) -> str:
    """Class, logical shape and dtype, and the non-tensor metadata of a subclass.

    Two weights with equal :func:`stored_tensors` and equal descriptions hold the same
    values (block size, target dtype and activation quantization are in the metadata).
    """
    cls = type(t)
    text = f"{cls.__module__}.{cls.__qualname__}:{t.dtype}:{tuple(t.shape)}"
    if is_tensor_subclass(t):
        _, context = t.__tensor_flatten__()
        text += ":" + _ADDRESS.sub("", repr(context))
    return text


def stored_bytes(t: torch.Tensor) -> int:
    """Bytes of the data ``t`` stores: inner tensors for a subclass, else its elements.

    Examples
    --------
    >>> stored_bytes(torch.zeros(4, 4))
    64
    """
    return sum(inner.numel() * inner.element_size() for _, inner in stored_tensors(t))


def dequantized(t: torch.Tensor) -> torch.Tensor:
    """The values of ``t`` as a plain float32 tensor, detached.

    ``torch.ao`` quantized tensors and subclasses are dequantized with their own
    ``dequantize``, bitsandbytes' weights by bitsandbytes (:func:`.bnb_weight.param_dequantized`);
    plain tensors are cast.

    Raises
    ------
    TypeError
        For a subclass that offers no way to read its values.
    """
    if t.is_quantized:
        return t.detach().dequantize().float()
    if is_bnb_param(t):
        return param_dequantized(t)
    if not is_tensor_subclass(t):
        return t.detach().float()
    with torch.no_grad():
        for read in (lambda: t.dequantize(), lambda: t.to(torch.float32)):
            try:
                value = read()
            except (NotImplementedError, RuntimeError, TypeError, AttributeError):
                continue
            if isinstance(value, torch.Tensor) and not is_tensor_subclass(value):
                return value.detach().float()
    raise TypeError(
        f"cannot read the values of a {type(t).__qualname__} weight: it implements neither "
        "dequantize() nor a cast to float32 that returns a plain tensor"
    )
