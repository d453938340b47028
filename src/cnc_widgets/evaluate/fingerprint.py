"""Content hashes of models and evaluation data, stable across processes.

A fingerprint lets the registry recognise a model (or a data set) it has already
evaluated, whatever Python object holds it: two models with the same class, module
tree and ``state_dict`` contents hash alike; one changed weight changes the hash.

Example
-------
>>> import copy, torch
>>> from cnc_widgets.evaluate.fingerprint import model_fingerprint
>>> model = torch.nn.Linear(4, 2)
>>> model_fingerprint(model) == model_fingerprint(copy.deepcopy(model))
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..compress.tensor_subclass import describe, is_tensor_subclass, stored_tensors
from .behaviour import behaviour_items

__all__ = ["data_fingerprint", "model_fingerprint"]


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 hex digest of a model's class, module tree, ``state_dict`` and behaviour.

    Entries are hashed in sorted name order, each as its name, dtype, shape and raw
    bytes. Quantized tensors contribute their integer representation plus scale and
    zero point; the packed weight and bias of ``torch.ao`` quantized modules appear in
    the ``state_dict`` as a tuple and are hashed element by element. Non-tensor
    entries (such as the ``dtype`` a dynamic quantized Linear records) are hashed by
    their ``repr``. Then come hooks that may change outputs, plain module attributes
    (``LeakyReLU.negative_slope``) and non-persistent buffers, described stably by
    :func:`cnc_widgets.evaluate.behaviour.behaviour_items`. Tensor subclasses (torchao's
    quantized weights) contribute their class, metadata and the plain tensors they store
    (packed data and scales).

    Parameters
    ----------
    model
        Any ``torch.nn.Module``; it is read, never modified.

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> import torch
    >>> a = torch.nn.Linear(3, 1)
    >>> before = model_fingerprint(a)
    >>> with torch.no_grad():
    ...     a.weight[0, 0] += 1.0
    >>> model_fingerprint(a) == before
    False
    """
    h = hashlib.sha256()
    _update_text(h, "model", _qualname(model))
    # The module tree separates models whose weights coincide but whose computation
    # differs (a float Linear and its dynamic-quantized twin, ReLU swapped for GELU).
    for name, module in model.named_modules():
        _update_text(h, "module", f"{name}={_qualname(module)}")
    state = model.state_dict()
    for name in sorted(state):
        _update_value(h, name, state[name])
    # Hooks, module attributes and non-persistent buffers change behaviour too.
    for name, value in behaviour_items(model):
        _update_value(h, name, value)
    return h.hexdigest()


def data_fingerprint(
    inputs: torch.Tensor | Mapping[str, torch.Tensor],
    labels: torch.Tensor | np.ndarray | Sequence[int] | None = None,
) -> str:
    """SHA-256 hex digest of evaluation inputs and labels.

    Parameters
    ----------
    inputs
        A tensor ``(N, ...)`` or a mapping of names to tensors (hashed in sorted key
        order), as :func:`cnc_widgets.evaluate.inference.evaluate_model` takes them.
    labels
        Integer class indices (tensor, array or sequence), or ``None``.

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(4, 3)
    >>> data_fingerprint(x, [0, 1, 0, 1]) == data_fingerprint(x.clone(), [0, 1, 0, 1])
    True
    """
    h = hashlib.sha256()
    if isinstance(inputs, Mapping):
        for key in sorted(inputs):
            _update_value(h, f"inputs.{key}", inputs[key])
    elif isinstance(inputs, torch.Tensor):
        _update_value(h, "inputs", inputs)
    else:
        raise TypeError(f"inputs must be a Tensor or a dict of Tensors, got {type(inputs)}")
    if labels is not None:
        if not isinstance(labels, torch.Tensor):
            labels = torch.from_numpy(np.asarray(labels))
        _update_value(h, "labels", labels)
    return h.hexdigest()


def _qualname(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _update_text(h: Any, kind: str, text: str) -> None:
    # Length prefixes keep the byte stream unambiguous ("ab"+"c" vs "a"+"bc").
    data = f"{kind}:{text}".encode()
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _update_value(h: Any, name: str, value: object) -> None:
    if isinstance(value, torch.Tensor):
        _update_tensor(h, name, value)
    elif isinstance(value, (tuple, list)):
        _update_text(h, "seq", f"{name}[{len(value)}]")
        for i, item in enumerate(value):
            _update_value(h, f"{name}.{i}", item)
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            _update_value(h, f"{name}.{key}", value[key])
    else:
        _update_text(h, "obj", f"{name}={value!r}")


def _update_tensor(h: Any, name: str, t: torch.Tensor) -> None:
    if is_tensor_subclass(t):
        _update_subclass(h, name, t)
        return
    t = t.detach()
    if t.is_sparse:
        t = t.to_dense()
    if t.is_quantized:
        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            qparams = f"scale={t.q_scale()!r},zero_point={t.q_zero_point()}"
        else:
            qparams = f"axis={t.q_per_channel_axis()}"
            _update_tensor(h, f"{name}.scales", t.q_per_channel_scales())
            _update_tensor(h, f"{name}.zero_points", t.q_per_channel_zero_points())
        _update_text(h, "qtensor", f"{name}:{t.dtype}:{tuple(t.shape)}:{qparams}")
        t = t.int_repr()
    _update_text(h, "tensor", f"{name}:{t.dtype}:{tuple(t.shape)}")
    # Reinterpreting the contiguous storage as bytes covers every dtype, bfloat16
    # included (numpy has none), without converting a single element.
    raw = t.cpu().contiguous().reshape(-1).view(torch.uint8)
    h.update(memoryview(raw.numpy()))


def _update_subclass(h: Any, name: str, t: torch.Tensor) -> None:
    # A quantized wrapper (torchao) lacks view and most ops: hash what it stores (packed
    # data, scales, zero points) and its metadata, never its dequantized values.
    _update_text(h, "subclass", f"{name}:{describe(t)}")
    for part, inner in stored_tensors(t):
        _update_tensor(h, f"{name}.{part}", inner)
