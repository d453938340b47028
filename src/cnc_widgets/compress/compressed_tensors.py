"""Checkpoints in the compressed-tensors format (llm-compressor's, vLLM's): load and size them.

A compressed-tensors checkpoint is a transformers folder whose ``config.json`` carries a
``quantization_config`` with ``quant_method: "compressed-tensors"`` and whose safetensors hold,
per quantized Linear, the packed integer weights (``weight_packed``: int4 or int8 values
packed into int32, format ``pack-quantized``) with their scales (``weight_scale``), zero
points where asymmetric, and the logical shape. :func:`load_compressed_tensors` loads it with
transformers' own compressed-tensors integration, dequantized (``dequantize=True``: plain
float Linears, so every view reads and runs it like any torch model), and records on the
model what the checkpoint stores (:func:`checkpoint_sizes`): ``size_bytes`` of the model is
then those bytes, the packed weights and scales, not the float copy in memory. Add the
model with ``reg.add(name, model, parent=...)``; it is fingerprinted by its dequantized
weights and the recorded sizes, so reloading the same checkpoint gives the same model.

Making such a checkpoint (llm-compressor's ``oneshot`` needs transformers <= 5.17 and does
not install beside this library; compressed-tensors itself does): apply a
``QuantizationConfig`` with ``apply_quantization_config``, set each module's
``weight_scale`` (round-to-nearest: ``calculate_qparams`` of its min and max), then
``ModelCompressor.from_pretrained_model(model)``, ``compress_model``, ``save_pretrained`` and
``update_config`` (see ``tests/test_compressed_tensors.py``). compressed-tensors is an
optional extra (``pip install 'cnc-widgets[compressed]'``).

Example
-------
>>> from cnc_widgets.compress.compressed_tensors import load_compressed_tensors
>>> model = load_compressed_tensors("llama-w4a16")  # doctest: +SKIP
>>> model.cnc_stored_checkpoint["size_bytes"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["ATTRIBUTE", "INSTALL_HINT", "checkpoint_sizes", "load_compressed_tensors"]

INSTALL_HINT = "pip install 'cnc-widgets[compressed]' (or pip install compressed-tensors)"
# The attribute that carries the checkpoint's sizes on the loaded model (hashed into the
# fingerprint like any plain attribute; read by evaluate.efficiency.size_bytes).
ATTRIBUTE = "cnc_stored_checkpoint"
METHOD = "compressed-tensors"
# safetensors' dtype names -> bytes per element.
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2,
    "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


def _header(path: Path) -> dict[str, Any]:
    # A safetensors file opens with an 8-byte little-endian length and a JSON header of
    # every tensor's dtype, shape and byte range: enough to size it without loading it.
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return header


def _config(folder: Path) -> dict[str, Any]:
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"no config.json in {str(folder)!r}: pass the folder that save_pretrained wrote"
        )
    quant = json.loads(config.read_text()).get("quantization_config") or {}
    if quant.get("quant_method") != METHOD:
        raise ValueError(
            f"{str(folder)!r} is not a compressed-tensors checkpoint: its config.json has "
            f"quantization_config.quant_method={quant.get('quant_method')!r}, not {METHOD!r} "
            "(load other checkpoints with from_pretrained and add them as they are)"
        )
    return quant


def checkpoint_sizes(folder: str | Path) -> dict[str, Any]:
    """What a compressed-tensors checkpoint folder stores (read from the safetensors headers).

    Returns
    -------
    dict
        ``format`` (``"compressed-tensors"``), ``quant_format`` (e.g. ``"pack-quantized"``),
        ``schemes`` (config group -> ``"int4 group 128 symmetric"``...), ``ignore`` (modules
        left float), ``size_bytes`` (bytes of all tensors), ``tensors`` (how many),
        ``bytes_by_dtype`` and ``quantized_modules`` (Linears stored packed).

    Raises
    ------
    ValueError
        For a folder whose ``config.json`` is not a compressed-tensors one.
    FileNotFoundError
        Without ``config.json`` or safetensors files.
    """
    folder = Path(folder)
    quant = _config(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {str(folder)!r}")
    by_dtype: dict[str, int] = {}
    tensors = 0
    packed: set[str] = set()
    for file in files:
        for name, entry in _header(file).items():
            start, end = entry["data_offsets"]
            dtype = str(entry["dtype"])
            by_dtype[dtype] = by_dtype.get(dtype, 0) + int(end - start)
            tensors += 1
            if name.endswith((".weight_packed", ".weight_scale")):
                packed.add(name.rsplit(".", 1)[0])
    schemes = {}
    for group, scheme in (quant.get("config_groups") or {}).items():
        w = scheme.get("weights") or {}
        text = f"{w.get('type', '?')}{w.get('num_bits', '?')} {w.get('strategy', '?')}"
        if w.get("group_size"):
            text += f" {w['group_size']}"
        text += " symmetric" if w.get("symmetric", True) else " asymmetric"
        if scheme.get("input_activations"):
            text += f", activations {scheme['input_activations'].get('num_bits')} bit"
        schemes[group] = text
    return {
        "format": METHOD,
        "quant_format": quant.get("format"),
        "schemes": schemes,
        "ignore": list(quant.get("ignore") or []),
        "size_bytes": sum(by_dtype.values()),
        "tensors": tensors,
        "bytes_by_dtype": dict(sorted(by_dtype.items(), key=lambda kv: -kv[1])),
        "quantized_modules": len(packed),
    }


def load_compressed_tensors(
    folder: str | Path, model_class: Any = None, **kwargs: Any
) -> nn.Module:
    """Load a compressed-tensors checkpoint, dequantized, its stored sizes recorded on it.

    Parameters
    ----------
    folder
        The folder ``save_pretrained`` + ``ModelCompressor.update_config`` wrote.
    model_class
        A transformers auto class or model class (default ``AutoModelForCausalLM``).
    **kwargs
        Passed to ``from_pretrained`` (e.g. ``torch_dtype``).

    Returns
    -------
    nn.Module
        The model in eval mode, its quantized Linears holding their dequantized values, and
        ``model.cnc_stored_checkpoint`` = :func:`checkpoint_sizes` (so ``size_bytes`` is the
        checkpoint's packed weights and scales).

    Raises
    ------
    ImportError
        Without compressed-tensors, naming the command that installs it.
    """
    folder = Path(folder)
    sizes = checkpoint_sizes(folder)
    try:
        import compressed_tensors  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"loading a compressed-tensors checkpoint needs compressed-tensors: {INSTALL_HINT}"
        ) from exc
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    cls = AutoModelForCausalLM if model_class is None else model_class
    # dequantize=True: float Linears from the start. Left compressed, the model would
    # decompress itself in a hook on its first forward pass, changing its weights (and
    # fingerprint) between adding it and evaluating it.
    config = CompressedTensorsConfig(dequantize=True)
    with warnings.catch_warnings():
        # transformers warns that the folder's own quantization_config wins, which it does
        # for the scheme: only the loading attribute (dequantize) is taken from ours.
        warnings.filterwarnings("ignore", message=".*already has a `quantization_config`.*")
        model = cls.from_pretrained(str(folder), quantization_config=config, **kwargs)
    setattr(model, ATTRIBUTE, sizes)
    return model.eval()
