"""Quantization with optimum-quanto (Hugging Face's PyTorch quantization backend).

``quanto(model, weights="qint8")`` is what a user writes with quanto: ``quantize(model,
weights=..., activations=...)``, a calibration pass when activations are quantized, then
``freeze(model)``. The Linear (and Conv) modules become quanto's ``QLinear`` and their
weights quanto tensor subclasses (``WeightQBytesTensor``: int8 or float8 data and a float
scale per output row; ``WeightQBitsTensor``: int4 values packed two per byte, a scale and a
shift per group of 128 inputs), which :mod:`.tensor_subclass` reads like torchao's: the
fingerprint hashes what they store, ``size_bytes`` counts it (quanto's state_dict holds
exactly those plain tensors), the layer table reads them dequantized, and the model, with
no gradients through its weights, is attacked by transfer from its float parent. A model a
user quantized with quanto (``quantize`` + ``freeze``) is added as it is and reads the same.
A Linear whose weight is tied to another module (an output head sharing the embedding matrix)
is excluded and stays float like the embedding, so the two stay one tensor (:mod:`.tied`).

optimum-quanto is an optional extra (``pip install 'cnc-widgets[quanto]'``), imported only
when the operation runs.

Example
-------
>>> from torch import nn
>>> from cnc_widgets.compress.quanto import quanto
>>> model = quanto(nn.Sequential(nn.Linear(64, 8)), weights="qint8")
>>> type(model[0]).__name__, type(model[0].weight).__name__
('QLinear', 'WeightQBytesTensor')
"""

from __future__ import annotations

from collections.abc import Mapping
from glob import escape as glob_escape
from typing import Any

import torch
from torch import nn

from .conv1d import conv1d_to_linear
from .tensor_subclass import is_tensor_subclass
from .tied import tied_linears

__all__ = ["ACTIVATIONS", "INSTALL_HINT", "WEIGHTS", "quanto"]

WEIGHTS = ("qint8", "qint4", "qint2", "qfloat8")
ACTIVATIONS = ("qint8", "qfloat8")
INSTALL_HINT = "pip install 'cnc-widgets[quanto]' (or pip install optimum-quanto)"


def _quanto() -> Any:
    try:
        from .torchao import _quiet_import

        # optimum-quanto imports torchao when it is installed: the same noise to hide.
        with _quiet_import():
            import optimum.quanto as oq
    except ImportError as exc:
        raise ImportError(
            f"the 'quanto' operation needs optimum-quanto, which is not installed: {INSTALL_HINT}"
        ) from exc
    return oq


def _call(model: nn.Module, batch: Any) -> None:
    with torch.no_grad():
        if isinstance(batch, Mapping):
            model(**batch)
        else:
            model(batch)


def quanto(
    model: nn.Module,
    weights: str = "qint8",
    activations: str | None = None,
    include: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    example_input: Any = None,
) -> nn.Module:
    """Quantize ``model`` with optimum-quanto and freeze it (in place).

    Parameters
    ----------
    model
        The model; :func:`cnc_widgets.compress.apply_operation` passes a copy.
    weights
        One of :data:`WEIGHTS`: ``qint8`` (a quarter of float32 plus a scale per row),
        ``qint4`` / ``qint2`` (packed, a scale and shift per group of 128 inputs) or
        ``qfloat8`` (float8 e4m3).
    activations
        ``None`` (float activations), or one of :data:`ACTIVATIONS`: inputs and outputs of
        the quantized modules are quantized with scales calibrated on ``example_input``.
    include, exclude
        quanto's module name patterns (fnmatch), e.g. ``exclude="lm_head"``.
    example_input
        A batch (the registry passes one of the evaluation data); needed with
        ``activations``.

    Returns
    -------
    nn.Module
        ``model``, frozen, in eval mode.

    Examples
    --------
    >>> from torch import nn
    >>> m = quanto(nn.Sequential(nn.Linear(256, 4)), weights="qint4")
    >>> type(m[0].weight).__name__
    'WeightQBitsTensor'
    """
    if weights not in WEIGHTS:
        raise ValueError(f"quanto: weights must be one of {list(WEIGHTS)}, got {weights!r}")
    if activations is not None and activations not in ACTIVATIONS:
        raise ValueError(
            f"quanto: activations must be None or one of {list(ACTIVATIONS)}, got {activations!r}"
        )
    if activations is not None and example_input is None:
        raise ValueError(
            "quanto: activations= needs a calibration batch: call reg.set_data(...) first, or "
            "pass example_input= (a batch of inputs)"
        )
    oq = _quanto()
    model.eval()
    conv1d_to_linear(model)  # GPT-2 keeps its Linears as Conv1D, which quanto skips
    # quanto would replace a tied head by a QLinear holding a quantized copy of the shared
    # matrix, untying it from the embedding: exclude it by its exact name (fnmatch-escaped).
    tied = [glob_escape(name) for name in tied_linears(model)]
    if tied:
        exclude = [exclude] if isinstance(exclude, str) else list(exclude or [])
        exclude += tied
    oq.quantize(
        model,
        weights=getattr(oq, weights),
        activations=None if activations is None else getattr(oq, activations),
        include=include,
        exclude=exclude,
    )
    if activations is not None:
        # Activation scales come from the data (quanto's Calibration records their ranges).
        with oq.Calibration():
            _call(model, example_input)
    oq.freeze(model)
    if not any(is_tensor_subclass(p) for p in model.parameters()):
        raise ValueError(
            f"quanto: nothing in {type(model).__name__} was quantized (quanto quantizes "
            "nn.Linear, nn.Conv1d/2d and, with activations, LayerNorm); check include/exclude"
        )
    return model
