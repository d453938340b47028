"""llama.cpp's GGUF quantization types, applied to a torch model and read from GGUF files.

``quantize_gguf(model, type="Q4_0")`` quantizes the weights of every ``nn.Linear`` and
``nn.Embedding`` (as ``llama-quantize`` does: the token embedding and every matrix) block by
block with the ``gguf`` package's own NumPy ``quantize``: the stored blocks are the bytes
llama.cpp would write, and the values the model computes with are ``gguf``'s ``dequantize``
of them (see :class:`.gguf_weight.GGUFWeight`). A weight whose rows are not a multiple of the
type's block size (32 for Q8_0 / Q5_x / Q4_x, 256 for the K-quants) stays float, as in
llama.cpp. Tied weights (a language model's embedding and output head) stay tied, quantized
once. Types are the ``gguf.GGMLQuantizationType`` names that the installed ``gguf`` can
quantize (:func:`quantizable_types`; 0.19 does Q8_0, Q5_0, Q5_1, Q4_0, Q4_1 and a few others,
not the K-quants). ``gguf`` is an optional extra (``pip install 'cnc-widgets[llm]'``).

A model loaded by transformers with ``from_pretrained(..., gguf_file=path)`` holds float
weights (transformers dequantizes the file on load); :func:`declare_gguf_file` records on it
what the file stores per tensor type, so that ``size_bytes`` is the file's tensor data
(``reg.add(name, model, info={"gguf_file": path})`` calls it).

Example
-------
>>> from torch import nn
>>> from cnc_widgets.compress.gguf import quantize_gguf
>>> model = quantize_gguf(nn.Sequential(nn.Linear(64, 8)), type="Q8_0")
>>> model[0].weight.qtype, tuple(model[0].weight.blocks.shape)
('Q8_0', (8, 68))
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .gguf_weight import GGUFWeight
from .tied import owners

__all__ = [
    "INSTALL_HINT",
    "declare_gguf_file",
    "declare_gguf_info",
    "gguf_file_sizes",
    "gguf_size_bytes",
    "quantizable_types",
    "quantize_gguf",
]

INSTALL_HINT = "pip install 'cnc-widgets[llm]' (or pip install gguf)"
# The attribute that carries a GGUF file's sizes on a model loaded from it (hashed into the
# fingerprint like any plain attribute: the same weights from another file are another model).
FILE_ATTRIBUTE = "cnc_gguf_file"


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:
        raise ImportError(f"GGUF quantization needs the gguf package: {INSTALL_HINT}") from exc
    return gguf


@functools.cache
def quantizable_types() -> tuple[str, ...]:
    """GGUF type names the installed ``gguf`` package can quantize (F32 left out).

    Examples
    --------
    >>> {"Q8_0", "Q4_0"} <= set(quantizable_types())
    True
    """
    gguf = _gguf()
    found = []
    for qtype in gguf.GGMLQuantizationType:
        if qtype.name == "F32":
            continue
        block, _ = gguf.GGML_QUANT_SIZES[qtype]
        try:
            gguf.quants.quantize(torch.zeros(1, block).numpy(), qtype)
        except (NotImplementedError, TypeError, ValueError, AssertionError):
            continue
        found.append(qtype.name)
    return tuple(found)


def _type(name: str) -> Any:
    gguf = _gguf()
    known = {t.name for t in gguf.GGMLQuantizationType}
    canonical = str(name).upper()
    if canonical not in known:
        raise ValueError(
            f"gguf: unknown type {name!r}; types this gguf package can quantize: "
            f"{', '.join(quantizable_types())}"
        )
    if canonical not in quantizable_types():
        raise ValueError(
            f"gguf: type {canonical!r} cannot be quantized by the gguf package "
            f"({_version()}) in Python (its NumPy code has no {canonical} quantizer; "
            f"llama-quantize has); types it can quantize: {', '.join(quantizable_types())}"
        )
    return gguf.GGMLQuantizationType[canonical]


def _version() -> str:
    from importlib import metadata

    try:
        return f"gguf {metadata.version('gguf')}"
    except metadata.PackageNotFoundError:
        return "gguf"


def _chosen(model: nn.Module, modules: str | list[str] | None) -> list[tuple[str, nn.Module]]:
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Embedding)]
    if modules is None:
        return layers
    if isinstance(modules, str):
        try:
            regex = re.compile(modules)
        except re.error as exc:
            raise ValueError(f"gguf: modules={modules!r} is not a valid regex") from exc
        return [(n, m) for n, m in layers if regex.search(n)]
    names = dict(layers)
    unknown = [n for n in modules if n not in names]
    if unknown:
        raise ValueError(
            f"gguf: modules {unknown} are not nn.Linear / nn.Embedding modules of the model; "
            f"they look like {list(names)[:5]}"
        )
    return [(n, names[n]) for n in modules]


def quantize_gguf(
    model: nn.Module,
    type: str = "Q8_0",  # llama-quantize's word for it
    modules: str | list[str] | None = None,
    report: dict[str, Any] | None = None,
) -> nn.Module:
    """Quantize the weights of ``model``'s Linear and Embedding modules to a GGUF type (in place).

    Parameters
    ----------
    model
        The model; :func:`cnc_widgets.compress.apply_operation` passes a copy.
    type
        A GGUF type name, e.g. ``"Q8_0"``, ``"Q5_1"``, ``"Q4_0"`` (:func:`quantizable_types`).
    modules
        Which modules: ``None`` (every ``nn.Linear`` and ``nn.Embedding``), a regular
        expression searched in their dotted names, or a list of names.
    report
        Filled with ``quantized`` (module -> type) and ``kept_float`` (module -> why).

    Returns
    -------
    nn.Module
        ``model`` in eval mode, its chosen weights :class:`.gguf_weight.GGUFWeight`
        parameters: no gradients, so it is attacked by transfer from its float parent.

    Raises
    ------
    ValueError
        For a type the ``gguf`` package cannot quantize (the message lists those it can), or
        when no chosen weight has rows that are a multiple of the block size.

    Examples
    --------
    >>> from torch import nn
    >>> m = quantize_gguf(nn.Sequential(nn.Linear(64, 4), nn.Linear(4, 2)), type="Q4_0")
    >>> type(m[0].weight).__name__, type(m[1].weight).__name__  # 4 is not a multiple of 32
    ('GGUFWeight', 'Parameter')
    """
    gguf = _gguf()
    qtype = _type(type)
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    chosen = _chosen(model, modules)
    model.eval()
    done: dict[int, nn.Parameter] = {}  # a tied weight is quantized once and stays tied
    shared = owners(model)
    quantized: dict[str, str] = {}
    kept: dict[str, str] = {}
    for name, module in chosen:
        weight = module.weight
        if id(weight) in done:
            module.weight = done[id(weight)]
            quantized[name] = qtype.name
            continue
        if isinstance(weight, GGUFWeight):
            kept[name] = f"already {weight.qtype}"
            continue
        if not weight.is_floating_point() or weight.dim() < 2:
            kept[name] = f"weight is {weight.dtype} {tuple(weight.shape)}"
            continue
        if weight.shape[-1] % block:
            kept[name] = f"rows of {weight.shape[-1]} are not a multiple of {block}"
            continue
        values = weight.detach().float().cpu().contiguous().numpy()
        blocks = torch.from_numpy(gguf.quants.quantize(values, qtype)).to(weight.device)
        new = nn.Parameter(GGUFWeight(blocks, qtype.name, weight.shape, weight.dtype), False)
        done[id(weight)] = done[id(new)] = new
        # Every module holding this weight gets the quantized one, chosen or not (a head
        # chosen alone keeps sharing its matrix with the embedding).
        for owner_name, owner, attr in shared.get(id(weight), [(name, module, "weight")]):
            setattr(owner, attr, new)
            quantized.setdefault(owner_name, qtype.name)
    if not quantized:
        raise ValueError(
            f"gguf: type {qtype.name} quantized no weight: {kept or 'no module chosen'}; "
            f"{qtype.name} needs rows that are a multiple of {block}"
        )
    if report is not None:
        report["quantized"] = quantized
        report["kept_float"] = kept
    return model


def gguf_size_bytes(shape: tuple[int, ...] | torch.Size, type: str) -> int:
    """Bytes a tensor of ``shape`` takes in GGUF ``type``: ``numel / block * type_size``.

    Examples
    --------
    >>> gguf_size_bytes((8, 64), "Q8_0")  # 16 blocks of 32 weights, 34 bytes each
    544
    """
    gguf = _gguf()
    block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[str(type).upper()]]
    numel = 1
    for n in shape:
        numel *= int(n)
    if numel % block:
        raise ValueError(f"{tuple(shape)} holds {numel} values, not a multiple of {block}")
    return numel // block * type_size


def gguf_file_sizes(path: str | Path) -> dict[str, Any]:
    """What a GGUF file stores per tensor type (read from its header, no tensor loaded).

    Returns
    -------
    dict
        ``file`` (the file name), ``size_bytes`` (bytes of all its tensor data: each
        tensor's elements / block size x type size), ``tensors`` (how many),
        ``bytes_by_type`` and ``tensors_by_type`` (type name -> bytes, count).
    """
    gguf = _gguf()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {str(path)!r}")
    reader = gguf.GGUFReader(str(path))
    by_type: dict[str, int] = {}
    count: dict[str, int] = {}
    for tensor in reader.tensors:
        name = gguf.GGMLQuantizationType(tensor.tensor_type).name
        by_type[name] = by_type.get(name, 0) + int(tensor.n_bytes)
        count[name] = count.get(name, 0) + 1
    return {
        "file": path.name,
        "size_bytes": sum(by_type.values()),
        "tensors": sum(count.values()),
        "bytes_by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
        "tensors_by_type": count,
    }


def declare_gguf_file(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Record on ``model`` (loaded from the GGUF file at ``path``) what the file stores.

    ``size_bytes`` of the model is then the file's tensor data (its quantized blocks), not
    the float weights transformers dequantized them to. Returns :func:`gguf_file_sizes`.
    """
    sizes = gguf_file_sizes(path)
    setattr(model, FILE_ATTRIBUTE, sizes)
    return sizes


def declare_gguf_info(model: nn.Module, info: dict[str, Any] | None) -> dict[str, Any] | None:
    """``info`` with a ``gguf_file`` path replaced by the file's sizes, declared on ``model``.

    The registry's ``add`` passes its ``info`` through this; without a ``gguf_file`` path
    (or with the sizes a record already holds) ``info`` comes back unchanged.
    """
    path = (info or {}).get("gguf_file")
    if not isinstance(path, str | Path):
        return info
    return {**info, "gguf_file": declare_gguf_file(model, path)}
