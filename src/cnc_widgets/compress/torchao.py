"""Quantization with torchao, the maintained successor of ``torch.ao.quantization``.

``quantize(model, config=...)`` applies ``torchao.quantization.quantize_`` to every
``nn.Linear``: the modules stay ``nn.Linear`` and their weights become torchao tensor
subclasses (int8 data plus scales), which :mod:`.tensor_subclass` reads for fingerprints,
sizes and the layer table. torchao is an optional extra (``pip install
'cnc-widgets[torchao]'``); it is imported only when the operation runs.

Configs (``CONFIGS``):

- ``int8_weight_only``: int8 weights, one scale per output row; float activations.
- ``int8_dynamic_activation_int8_weight``: the same weights, activations quantized to int8
  per row at run time (int8 x int8 matmuls).
- ``int4_weight_only``: torchao's packed int4 weights, one scale per group of
  ``group_size`` input columns. Its kernels need the ``mslk`` package (>= 1.0) or a CUDA
  device; where they are missing the operation raises and says which.
- ``intx_int4_weight_only``: int4 values per group of ``group_size``, kept unpacked one per
  byte (torchao's ``IntxWeightOnlyConfig``): runs on any CPU, ships no smaller than int8.

A Linear whose weight is tied to another module (a language model's output head sharing the
embedding matrix) stays as it is, float like the embedding: quantizing it alone would untie
the two and store the matrix twice (:mod:`.tied`).

Example
-------
>>> from torch import nn
>>> from cnc_widgets.compress.torchao import quantize
>>> model = quantize(nn.Sequential(nn.Linear(64, 8)), config="int8_weight_only")
>>> type(model[0].weight).__name__
'Int8Tensor'
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .conv1d import conv1d_to_linear
from .tensor_subclass import is_tensor_subclass
from .tied import tied_linears

__all__ = ["CONFIGS", "INSTALL_HINT", "quantize", "torchao_version"]

CONFIGS = (
    "int8_weight_only",
    "int8_dynamic_activation_int8_weight",
    "int4_weight_only",
    "intx_int4_weight_only",
)
INSTALL_HINT = "pip install 'cnc-widgets[torchao]' (or pip install torchao==0.18.0)"
_GROUPED = ("int4_weight_only", "intx_int4_weight_only")
_DEFAULT_GROUP = 128


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    # On a CPU build torchao logs a warning per CUDA-only kernel library it cannot load,
    # and torch one about how torchao registers its enums: noise, not the user's concern.
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _torchao() -> Any:
    try:
        with _quiet_import():
            import torchao
            import torchao.quantization
    except ImportError as exc:
        raise ImportError(
            f"the 'quantize' operation needs torchao, which is not installed: {INSTALL_HINT}"
        ) from exc
    return torchao


def torchao_version() -> str | None:
    """The installed torchao version, or ``None`` without torchao."""
    from importlib import metadata

    try:
        return metadata.version("torchao")
    except metadata.PackageNotFoundError:
        return None


def _config(config: str, group_size: int) -> Any:
    q = _torchao().quantization
    if config == "int8_weight_only":
        return q.Int8WeightOnlyConfig()
    if config == "int8_dynamic_activation_int8_weight":
        return q.Int8DynamicActivationInt8WeightConfig()
    if config == "int4_weight_only":
        return q.Int4WeightOnlyConfig(group_size=group_size)
    from torchao.quantization.granularity import PerGroup

    return q.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))


def _int4_missing(group_size: int) -> str:
    """What each int4 packing format of this torchao lacks here, one clause per format."""
    q = _torchao().quantization
    from torchao.quantization.quantize_.workflows import Int4PackingFormat

    reasons = []
    for fmt in Int4PackingFormat:
        # Some formats take bfloat16 weights only; probe each with the dtype it accepts.
        for dtype in (torch.float32, torch.bfloat16):
            probe = nn.Sequential(nn.Linear(group_size, 8)).to(dtype)
            try:
                q.quantize_(probe, q.Int4WeightOnlyConfig(group_size, int4_packing_format=fmt))
                probe(torch.zeros(1, group_size, dtype=dtype))
            except Exception as exc:  # torchao raises ImportError, AssertionError, ...
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                if "bfloat16" in reason and dtype == torch.float32:
                    continue
                reasons.append(f"{fmt.value} ({reason})")
                break
            else:
                return ""
    return "; ".join(reasons)


def quantize(
    model: nn.Module, config: str = "int8_weight_only", group_size: int | None = None
) -> nn.Module:
    """Quantize every ``nn.Linear`` weight of ``model`` with torchao (in place).

    Parameters
    ----------
    model
        The model to quantize; :func:`cnc_widgets.compress.apply_operation` passes a copy.
    config
        One of :data:`CONFIGS`.
    group_size
        Input columns that share a scale, for the int4 configs (default 128; a layer whose
        input width it does not divide is left in float). Not accepted by the int8 configs,
        which keep one scale per output row.

    Returns
    -------
    nn.Module
        ``model`` in eval mode, its Linear weights torchao tensor subclasses (a Linear tied
        to another module's weight left float). It runs on the CPU and is attacked by
        transfer from its float parent (no gradients).

    Raises
    ------
    ImportError
        Without torchao, naming the command that installs it.
    RuntimeError
        For ``int4_weight_only`` where this torchao build lacks the int4 kernels (the
        message names what each packing format needs), or when no Linear was quantized.

    Examples
    --------
    >>> from torch import nn
    >>> m = quantize(nn.Sequential(nn.Linear(64, 4)), config="int8_dynamic_activation_int8_weight")
    >>> m[0].weight.qdata.dtype
    torch.int8
    """
    if config not in CONFIGS:
        raise ValueError(f"quantize: config must be one of {list(CONFIGS)}, got {config!r}")
    if group_size is not None and config not in _GROUPED:
        raise ValueError(
            f"quantize: group_size applies to {list(_GROUPED)}; {config!r} keeps one scale "
            "per output row (leave group_size=None)"
        )
    group = _DEFAULT_GROUP if group_size is None else group_size
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise ValueError(f"quantize: group_size must be a positive int, got {group_size!r}")
    q = _torchao().quantization
    tao_config = _config(config, group)
    model.eval()
    conv1d_to_linear(model)  # GPT-2 keeps its Linears as Conv1D, which torchao skips
    tied = tied_linears(model)

    def divisible(module: nn.Module, fqn: str) -> bool:
        # torchao's int4 config skips a Linear whose width the group does not divide, the
        # intx one fails on it; skip it in both (it stays float, as torchao documents).
        # A tied head keeps the embedding's float weight (quantized alone it would untie).
        return (
            isinstance(module, nn.Linear)
            and fqn not in tied
            and (config not in _GROUPED or module.in_features % group == 0)
        )

    try:
        with torch.no_grad():
            q.quantize_(model, tao_config, filter_fn=divisible)
    except Exception as exc:
        if config != "int4_weight_only":
            raise
        missing = _int4_missing(group)
        raise RuntimeError(
            f"quantize: config='int4_weight_only' needs torchao's int4 kernels, which this "
            f"setup lacks (torch {torch.__version__}, torchao {torchao_version()}); packing "
            f"formats tried: {missing or str(exc)}. Use config='intx_int4_weight_only' (int4 "
            "values kept one per byte, runs on CPU) or 'int8_weight_only'"
        ) from exc
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"quantize: {type(model).__name__} has no nn.Linear to quantize")
    if not any(is_tensor_subclass(m.weight) for m in linears):
        widths = sorted({m.in_features for m in linears})
        raise RuntimeError(
            f"quantize: config={config!r} quantized no nn.Linear; their input widths {widths} "
            f"are not multiples of group_size={group}: pass a group_size that divides them"
        )
    return model
