"""Compression operations: the built-in catalogue, applying one, and recording it.

Every operation takes a model and returns a new one; the model passed in is deep-copied
first and never modified, so a parent in the provenance tree stays what it was. The
implementations live in modules named after what they do (:mod:`.pruning`,
:mod:`.structured`, :mod:`.precision`, :mod:`.low_rank`, :mod:`.encoder_layers`); this
module holds the catalogue, the parameter checks and the provenance record.

Example
-------
>>> from torch import nn
>>> from cnc_widgets.compress import apply_operation, operation_record
>>> parent = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
>>> child = apply_operation(parent, "prune", amount=0.5)
>>> operation_record("prune", {"amount": 0.5})["operation"]
'prune'
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import torch
from torch import nn

from . import bnb as bnb_ops
from . import encoder_layers, fastpath, low_rank, precision, pruning, structured
from . import gguf as gguf_ops
from . import quanto as quanto_ops
from . import torchao as torchao_ops
from .bnb_weight import is_bnb_linear
from .tensor_subclass import is_tensor_subclass

__all__ = ["apply_operation", "operation_record", "operations", "plain_params", "restore"]


def restore(model: nn.Module, *, pattern: str, source: nn.Module) -> nn.Module:
    """Take the tensors whose state_dict name matches ``pattern`` back from ``source``.

    ``pattern`` is a regular expression searched (``re.search``) in each state_dict name of
    ``model`` (parameters and persistent buffers). Every match must exist in ``source`` with
    the same shape; its values are copied and cast to the dtype of ``model``'s tensor (a
    half child stays half: restoring takes a's values, not a's precision).

    Quantized modules (``quantize_dynamic``'s int8 Linears, torchao tensor-subclass weights)
    cannot take values; a quantized module is taken back whole instead, as a copy of the
    module of that name in ``source`` (float when the source is), whenever the pattern
    matches one of its state_dict names or of the source module's. The child keeps every
    other module quantized, and its size follows. Modifies ``model``.

    Examples
    --------
    >>> from torch import nn
    >>> from cnc_widgets.compress import apply_operation
    >>> parent = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> child = apply_operation(parent, "quantize_dynamic")
    >>> back = apply_operation(child, "restore", pattern="^2[.]", source=parent)
    >>> type(back[0]).__module__.startswith("torch.ao"), type(back[2]).__name__
    (True, 'Linear')
    """
    try:
        regex = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ValueError(f"restore: pattern={pattern!r} is not a valid regular expression") from exc
    have = source.state_dict()
    swaps = _quantized_matches(model, have, regex)
    inside = tuple(f"{q}." for q in swaps)
    target = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    names = [k for k in target if regex.search(k) and not k.startswith(inside)]
    if not names and not swaps:
        raise ValueError(
            f"restore: pattern={pattern!r} matches no tensor; names look like {list(target)[:5]}"
        )
    problems = []
    for q in swaps:
        try:
            source.get_submodule(q)
        except AttributeError:
            problems.append(f"{q}: quantized module not in the parent")
    for k in names:
        if not isinstance(have.get(k), torch.Tensor):
            problems.append(f"{k}: not in the parent")
        elif have[k].shape != target[k].shape:
            problems.append(f"{k}: child {tuple(target[k].shape)} vs parent {tuple(have[k].shape)}")
        elif any(t.is_quantized or is_tensor_subclass(t) for t in (target[k], have[k])):
            problems.append(f"{k}: quantized tensors cannot be copied")
    if problems:
        raise ValueError("restore: cannot copy back " + "; ".join(problems))
    for q in swaps:
        owner, _, attr = q.rpartition(".")
        setattr(model.get_submodule(owner), attr, copy.deepcopy(source.get_submodule(q)))
    with torch.no_grad():
        for k in names:
            # state_dict tensors share storage with the module, so copy_ writes into the model.
            target[k].copy_(have[k].to(target[k].dtype))
    return model


def _is_quantized_module(module: nn.Module) -> bool:
    if type(module).__module__.startswith("torch.ao.nn.quantized") or is_bnb_linear(module):
        return True
    own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return any(t.is_quantized or is_tensor_subclass(t) for t in own)


def _quantized_matches(
    model: nn.Module, source_state: Mapping[str, Any], regex: re.Pattern
) -> list[str]:
    """Outermost quantized modules of ``model`` (never the model itself) that ``regex``
    touches: through their own state_dict names or those of the source's module."""
    names = list(model.state_dict()) + list(source_state)
    found: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(f"{q}.") for q in found):
            continue
        if _is_quantized_module(module) and any(
            k.startswith(f"{name}.") and regex.search(k) for k in names
        ):
            found.append(name)
    return found


_REQUIRED = object()


@dataclass(frozen=True)
class _Operation:
    fn: Callable[..., nn.Module]
    description: str
    params: dict[str, Any]
    # Context the caller supplies besides the params (not part of the provenance record).
    needs: tuple[str, ...] = field(default=())


_BUILTINS: dict[str, _Operation] = {
    "prune": _Operation(
        pruning.prune,
        "L1-magnitude unstructured pruning of weights, made permanent (zeros in the plain "
        "weights); biases, the output head and embeddings are left out unless biases=True / "
        "include= names them.",
        {
            "amount": _REQUIRED,
            "scope": "global",
            "include_norms": False,
            "modules": None,
            "biases": False,
            "include": None,
            "exclude": None,
        },
        needs=("report",),
    ),
    "prune_structured": _Operation(
        structured.prune_structured,
        "Physically remove the lowest-norm attention heads and FFN units (BERT-style encoders) "
        "or Conv/Linear output channels (other models; needs example_input).",
        {"amount": _REQUIRED},
        needs=("example_input", "report"),
    ),
    "quantize_dynamic": _Operation(
        precision.quantize_dynamic,
        "Dynamic int8 quantization of every nn.Linear (torch.ao.quantization).",
        {"dtype": "qint8"},
    ),
    "quantize": _Operation(
        torchao_ops.quantize,
        "Quantize every nn.Linear weight with torchao (optional extra cnc-widgets[torchao]); "
        f"config: {', '.join(torchao_ops.CONFIGS)}.",
        {"config": "int8_weight_only", "group_size": None},
    ),
    "gguf": _Operation(
        gguf_ops.quantize_gguf,
        "Quantize Linear and Embedding weights block-wise to a llama.cpp GGUF type with the "
        "gguf package (optional extra cnc-widgets[llm]); type: Q8_0, Q5_1, Q5_0, Q4_1, Q4_0, "
        "... (cnc_widgets.compress.gguf.quantizable_types()).",
        {"type": "Q8_0", "modules": None},
        needs=("report",),
    ),
    "quanto": _Operation(
        quanto_ops.quanto,
        "Quantize with optimum-quanto and freeze (optional extra cnc-widgets[quanto]); weights: "
        f"{', '.join(quanto_ops.WEIGHTS)}; activations: None or "
        f"{', '.join(quanto_ops.ACTIVATIONS)} (calibrated on a batch of the data).",
        {"weights": "qint8", "activations": None, "include": None, "exclude": None},
        needs=("example_input",),
    ),
    "bnb": _Operation(
        bnb_ops.bnb,
        "Quantize every nn.Linear with bitsandbytes (optional extra cnc-widgets[bnb]): bits=8 "
        "LLM.int8 (int8 weights, a scale per row; threshold > 0 keeps outlier input columns "
        "float16) or bits=4 (quant_type nf4 or fp4, a scale per blocksize weights).",
        {
            "bits": 8,
            "threshold": 0.0,
            "quant_type": "nf4",
            "blocksize": 64,
            "double_quant": False,
            "include": None,
            "exclude": None,
        },
    ),
    "half": _Operation(
        precision.half,
        "Cast to float16; float inputs are cast in and outputs cast back to float32.",
        {},
    ),
    "bfloat16": _Operation(
        precision.bfloat16,
        "Cast to bfloat16; float inputs are cast in and outputs cast back to float32.",
        {},
    ),
    "low_rank": _Operation(
        low_rank.low_rank,
        "Replace nn.Linear layers by two thinner ones (truncated SVD) where that saves params.",
        {"rank": None, "energy": None},
        needs=("report",),
    ),
    "drop_layers": _Operation(
        encoder_layers.drop_layers,
        "Remove transformer layers by index (BERT encoder.layer, Llama model.layers, "
        "GPT-2 transformer.h).",
        {"layers": _REQUIRED},
        needs=("report",),
    ),
    "restore": _Operation(
        restore,
        "Copy tensors whose name matches a regex back from the parent model.",
        {"pattern": _REQUIRED},
        needs=("source",),
    ),
}


def operations() -> dict[str, dict[str, Any]]:
    """The built-in operations, what each does and the parameters it accepts.

    Returns
    -------
    dict
        ``name -> {"description": str, "params": {param: default}, "needs": [context]}``.
        A default of ``"<required>"`` marks a parameter that must be given. ``needs`` names
        what :func:`apply_operation` takes besides the params: ``source`` (the model to copy
        from, for ``restore``), ``example_input`` (a batch, to trace a model) or
        ``report`` (a dict the operation fills with what it did).

    Examples
    --------
    >>> sorted(operations())[:3]
    ['bfloat16', 'bnb', 'drop_layers']
    >>> operations()["prune"]["params"]["scope"]
    'global'
    """
    return {
        name: {
            "description": op.description,
            "params": {k: "<required>" if v is _REQUIRED else v for k, v in op.params.items()},
            "needs": list(op.needs),
        }
        for name, op in _BUILTINS.items()
    }


def apply_operation(
    model: nn.Module,
    operation: str | Callable[..., nn.Module],
    *,
    source: nn.Module | None = None,
    example_input: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    report: dict[str, Any] | None = None,
    **params: Any,
) -> nn.Module:
    """Return a compressed copy of ``model``; ``model`` itself is never modified.

    Parameters
    ----------
    model
        The model to compress (the parent of the result).
    operation
        A name from :func:`operations`, or a callable ``fn(model, **params) -> model``
        that receives a deep copy (so it may modify it in place).
    source
        For ``"restore"``: the model whose tensors are copied back, normally the parent of
        ``model`` in the provenance tree.
    example_input
        A batch of inputs (a Tensor, or a dict called as ``model(**d)``); needed by
        ``"prune_structured"`` on models without transformer encoder layers.
    report
        A dict that operations fill, JSON-able, with what they did: ``module_map``
        (``drop_layers``: parent module name -> child name, ``None`` when removed),
        ``pruned`` and ``skipped`` (``prune_structured``: output widths before and after
        per module, and the modules left alone with the reason), ``factorised``
        (``low_rank``: the rank per replaced Linear), ``layer_sparsity`` and ``left_out``
        (``prune``: each pruned tensor's fraction of zeros; the head and embeddings it left
        alone). The registry keeps it in the
        child's ``info`` so the comparison can pair renamed modules.
    **params
        The operation's parameters; unknown names and bad values raise ``ValueError``.

    Examples
    --------
    >>> from torch import nn
    >>> parent = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    >>> child = apply_operation(parent, "low_rank", rank=4)
    >>> sum(p.numel() for p in child.parameters()) < sum(p.numel() for p in parent.parameters())
    True
    """
    params = plain_params(params)
    if callable(operation) and not isinstance(operation, str):
        child = operation(copy.deepcopy(model), **params)
        if not isinstance(child, nn.Module):
            raise TypeError(
                f"operation {_qualified_name(operation)} returned {type(child).__name__}, "
                "not an nn.Module"
            )
        return _keep_cast(child)
    if operation not in _BUILTINS:
        raise ValueError(
            f"unknown operation {operation!r}; built-in operations are {sorted(_BUILTINS)} "
            "(or pass a callable fn(model, **params) -> model)"
        )
    op = _BUILTINS[operation]
    unknown = sorted(set(params) - set(op.params))
    if unknown:
        raise ValueError(
            f"{operation}: unknown parameter(s) {unknown}; accepted parameters are "
            f"{sorted(op.params) or 'none'}"
        )
    kwargs = {k: params.get(k, default) for k, default in op.params.items()}
    missing = [k for k, v in kwargs.items() if v is _REQUIRED]
    if missing:
        raise ValueError(f"{operation}: missing required parameter(s) {missing}")
    if "source" in op.needs:
        if source is None:
            raise ValueError(f"{operation}: needs source= (the model to copy tensors from)")
        kwargs["source"] = source
    if "example_input" in op.needs:
        kwargs["example_input"] = example_input
    if "report" in op.needs:
        kwargs["report"] = {} if report is None else report
    return _keep_cast(op.fn(copy.deepcopy(model), **kwargs))


def _keep_cast(child: nn.Module) -> nn.Module:
    # Modules an operation adds to a half / bfloat16 model (low_rank's factors) need the
    # same input casts as the ones they replaced.
    child = precision.add_cast_hooks(child) if precision.is_cast(child) else child
    # Quantized or factorised encoder layers cannot run torch's fused encoder kernel.
    return fastpath.keep_slow_path(child)


def plain_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with numpy scalars and 0-d arrays turned into Python numbers (in lists too).

    ``np.float32(0.5)`` from a ``np.linspace`` sweep is an amount like ``0.5``.

    Examples
    --------
    >>> import numpy as np
    >>> plain_params({"amount": np.float32(0.5), "layers": [np.int64(1)]})
    {'amount': 0.5, 'layers': [1]}
    """

    def plain(value: Any) -> Any:
        if isinstance(value, np.floating):
            return float(str(value))  # float32 0.3 is 0.3, not 0.30000001192092896
        if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
            return value.item()
        if isinstance(value, list | tuple):
            return type(value)(plain(v) for v in value)
        return value

    return {k: plain(v) for k, v in params.items()}


def _qualified_name(fn: Callable) -> str:
    module = getattr(fn, "__module__", None) or type(fn).__module__
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qualname}"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, type) or callable(value):
        return _qualified_name(value)
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, torch.Tensor) and value.numel() <= 64:
        return value.tolist()
    return repr(value)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def operation_record(
    operation: str | Callable[..., nn.Module], params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON-able provenance record of one operation.

    Parameters
    ----------
    operation
        A built-in name or the callable that was applied; a callable is recorded by its
        qualified name ``module.qualname``.
    params
        The parameters it was given. Values that JSON cannot hold (types, dtypes) are
        recorded by name; anything else by ``repr``.

    Returns
    -------
    dict
        ``operation``, ``callable`` (bool), ``params`` and ``versions`` (torch,
        transformers, cnc_widgets). A caller may add ``elapsed_s``.

    Examples
    --------
    >>> operation_record("prune", {"amount": 0.5})["params"]
    {'amount': 0.5}
    """
    is_callable = callable(operation) and not isinstance(operation, str)
    return {
        "operation": _qualified_name(operation) if is_callable else str(operation),
        "callable": is_callable,
        "params": _jsonable(dict(params or {})),
        "versions": {
            "torch": torch.__version__,
            "transformers": _version("transformers"),
            "cnc_widgets": _version("cnc_widgets") or _version("cnc-widgets"),
            **({"torchao": _version("torchao")} if operation == "quantize" else {}),
            **({"gguf": _version("gguf")} if operation == "gguf" else {}),
            **({"optimum-quanto": _version("optimum-quanto")} if operation == "quanto" else {}),
            **({"bitsandbytes": _version("bitsandbytes")} if operation == "bnb" else {}),
        },
    }
