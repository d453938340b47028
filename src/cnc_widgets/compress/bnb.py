"""Quantization with bitsandbytes: LLM.int8 (``Linear8bitLt``) and 4-bit NF4 / FP4 (``Linear4bit``).

``bnb(model, bits=8)`` replaces every ``nn.Linear`` by bitsandbytes' layer holding its weight
quantized, as transformers' ``load_in_8bit`` / ``load_in_4bit`` do, on bitsandbytes' CPU
backend:

- ``bits=8``: ``Linear8bitLt(has_fp16_weights=False)``: int8 weights with one float32
  absmax scale per output row (``CB``, ``SCB``; the weight is cast to float16 before it is
  quantized, as bitsandbytes does). Its forward quantizes each input row to int8 as well
  and multiplies in int8. With ``threshold > 0`` the input columns holding a value above the
  threshold (LLM.int8's outlier features; the paper uses 6.0) are multiplied in float16 with
  those weight columns dequantized instead; ``0.0`` (the default) quantizes every column.
- ``bits=4``: ``Linear4bit``: 4-bit codes, two a byte, of the NF4 (normal float, the
  default) or FP4 grid, with one absmax scale per ``blocksize`` weights (64 by default;
  ``double_quant=True`` quantizes those scales to 8 bits again, QLoRA's double
  quantization), computed in float32: the forward multiplies by the weight dequantized.
  bitsandbytes' bfloat16 fused CPU kernel (used on CPUs with AVX512-BF16, which would
  repack the codes and round the scales to bfloat16 on the first forward) is turned off, so
  the stored tensors stay what was quantized and the output is the dequantized weight's.

:mod:`.bnb_weight` reads these layers for the rest of the library: the fingerprint and
``size_bytes`` come from the state_dict (the int8 or packed codes, the scales, the biases),
the layer table from the weights dequantized by bitsandbytes, MACs from float twins, and the
model, without float weights to take gradients through, is attacked by transfer from its
float parent. A Linear whose weight is tied to another module (an output head sharing the
embedding matrix) stays float, and transformers' ``Conv1D`` (GPT-2) becomes an
``nn.Linear`` first.

bitsandbytes is an optional extra (``pip install 'cnc-widgets[bnb]'``), imported only when
the operation runs.

Example
-------
>>> from torch import nn
>>> from cnc_widgets.compress.bnb import bnb
>>> model = bnb(nn.Sequential(nn.Linear(64, 8)), bits=4)
>>> type(model[0]).__name__, type(model[0].weight).__name__
('Linear4bit', 'Params4bit')
"""

from __future__ import annotations

import logging
from fnmatch import fnmatch
from typing import Any

import torch
from torch import nn

from .conv1d import conv1d_to_linear
from .tied import tied_linears

__all__ = ["BITS", "INSTALL_HINT", "QUANT_TYPES", "bnb"]

BITS = (8, 4)
QUANT_TYPES = ("nf4", "fp4")
BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
INSTALL_HINT = "pip install 'cnc-widgets[bnb]' (or pip install bitsandbytes)"

# bitsandbytes logs, on every import, that it could not fetch a CPU kernel from the Hugging
# Face hub (no network here), and on every int8 forward that float32 inputs are cast to
# float16 (LLM.int8 quantizes from float16: what it always does).
_NOISE = ("Failed to load CPU gemm_4bit_forward", "inputs will be cast from")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _NOISE)


def _bitsandbytes() -> Any:
    for name in ("bitsandbytes.backends.cpu.ops", "bitsandbytes.autograd._functions"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    try:
        import bitsandbytes
    except ImportError as exc:
        raise ImportError(
            f"the 'bnb' operation needs bitsandbytes, which is not installed: {INSTALL_HINT}"
        ) from exc
    return bitsandbytes


def _patterns(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else None if value is None else list(value)


def _int8(bnb: Any, linear: nn.Linear, threshold: float) -> nn.Module:
    layer = bnb.nn.Linear8bitLt(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        has_fp16_weights=False,
        threshold=threshold,
    )
    layer.load_state_dict({k: v.detach().float() for k, v in linear.state_dict().items()})
    return layer.to("cpu")  # Int8Params quantizes when it is moved to a device


def _four_bit(
    bnb: Any, linear: nn.Linear, quant_type: str, blocksize: int, double_quant: bool
) -> nn.Module:
    layer = bnb.nn.Linear4bit(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        compute_dtype=torch.float32,
        compress_statistics=double_quant,
        quant_type=quant_type,
    )
    layer.weight = bnb.nn.Params4bit(
        linear.weight.detach().float().clone(),
        requires_grad=False,
        blocksize=blocksize,
        compress_statistics=double_quant,
        quant_type=quant_type,
        module=layer,
    )
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.detach().float().clone(), requires_grad=False)
    layer = layer.to("cpu")  # Params4bit quantizes when it is moved to a device
    # Keep the stored layout and float32 compute (see the module docstring).
    layer.support_avx512bf16_for_cpu = False
    return layer


def bnb(
    model: nn.Module,
    bits: int = 8,
    threshold: float = 0.0,
    quant_type: str = "nf4",
    blocksize: int = 64,
    double_quant: bool = False,
    include: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
) -> nn.Module:
    """Replace the ``nn.Linear`` layers of ``model`` by bitsandbytes' quantized ones (in place).

    Parameters
    ----------
    model
        The model; :func:`cnc_widgets.compress.apply_operation` passes a copy.
    bits
        8 (LLM.int8, ``Linear8bitLt``) or 4 (``Linear4bit``).
    threshold
        8 bit only: input values above it are multiplied in float16 (LLM.int8's outlier
        decomposition); 0.0 quantizes every input column to int8.
    quant_type, blocksize, double_quant
        4 bit only: ``"nf4"`` or ``"fp4"``; weights per absmax scale (one of
        :data:`BLOCKSIZES`); quantize the scales again to 8 bits.
    include, exclude
        Module name patterns (fnmatch), e.g. ``exclude="lm_head"``: only Linears matching
        ``include`` (all by default) and no pattern of ``exclude`` are quantized.

    Returns
    -------
    nn.Module
        ``model``, in eval mode.

    Examples
    --------
    >>> from torch import nn
    >>> m = bnb(nn.Sequential(nn.Linear(64, 4)), bits=8)
    >>> type(m[0].weight).__name__, m[0].weight.dtype
    ('Int8Params', torch.int8)
    """
    if bits not in BITS:
        raise ValueError(
            f"bnb: bits must be 8 (LLM.int8) or 4 (NF4/FP4), got {bits!r}; for other widths "
            "use 'quanto' (qint2) or 'gguf'"
        )
    if bits == 4 and quant_type not in QUANT_TYPES:
        raise ValueError(f"bnb: quant_type must be one of {list(QUANT_TYPES)}, got {quant_type!r}")
    if bits == 4 and blocksize not in BLOCKSIZES:
        raise ValueError(f"bnb: blocksize must be one of {list(BLOCKSIZES)}, got {blocksize!r}")
    if bits == 8 and not (isinstance(threshold, int | float) and threshold >= 0):
        raise ValueError(
            f"bnb: threshold must be a number >= 0 (0.0: all int8; LLM.int8 uses 6.0), got "
            f"{threshold!r}"
        )
    bitsandbytes = _bitsandbytes()
    model.eval()
    conv1d_to_linear(model)  # GPT-2 keeps its Linears as Conv1D
    # Replacing a tied head would give it a quantized copy of the shared matrix, untying it
    # from the embedding: it stays float, like the embedding.
    tied = tied_linears(model)
    included, excluded = _patterns(include), _patterns(exclude) or []
    targets = [
        name
        for name, module in model.named_modules()
        # Exactly nn.Linear: nn.MultiheadAttention's out_proj (a subclass) is read as a
        # plain weight by the attention function, which a quantized parameter is not.
        if type(module) is nn.Linear
        and name not in tied
        and (included is None or any(fnmatch(name, p) for p in included))
        and not any(fnmatch(name, p) for p in excluded)
    ]
    if not targets:
        found = [n for n, m in model.named_modules() if type(m) is nn.Linear]
        why = (
            f"its Linears {found[:5]} are all tied or left out by include/exclude"
            if found
            else "it has no nn.Linear (bitsandbytes quantizes Linear layers only)"
        )
        raise ValueError(f"bnb: nothing in {type(model).__name__} to quantize: {why}")
    for name in targets:
        linear = model.get_submodule(name)
        if bits == 8:
            layer = _int8(bitsandbytes, linear, float(threshold))
        else:
            layer = _four_bit(bitsandbytes, linear, quant_type, blocksize, double_quant)
        if name:
            owner, _, attr = name.rpartition(".")
            setattr(model.get_submodule(owner), attr, layer.eval())
        else:
            model = layer.eval()  # the model is one Linear
    return model
