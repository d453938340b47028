"""Numbers as a person writes them: bytes in kB/MB/GB, milliseconds, percentages, counts.

The twin of ``js/src/shared/format.js``; both follow the same rules so a table in a text
repr and a tooltip in a view print the same value the same way. A Compress and Compare
file's own ``format`` (a d3-format string such as ``".2%"``) and ``unit`` win over the
rules by name.

Examples
--------
>>> format_metric(15526322, "size_bytes")
'15.5 MB'
>>> format_metric(0.9437, "accuracy")
'94.37%'
>>> format_metric(2041.18, "Latency", {"unit": "ms"})
'2,041 ms'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "METRIC_HELP",
    "d3_format",
    "format_bytes",
    "format_count",
    "format_metric",
    "format_ms",
    "format_number",
    "format_percent",
    "format_table",
    "metric_kind",
]

# What each built-in measure means and how it was computed (shown where the value is hovered).
METRIC_HELP = {
    "accuracy": "fraction of the evaluation set classified correctly",
    "size_bytes": "bytes of the serialized state_dict, the file one would ship "
    "(int8 weights one byte each)",
    "sparse_size_bytes": "size_bytes if each tensor were stored in its cheapest sparse form "
    "(dense, bitmap or coordinates)",
    "latency_ms": "median time of one forward pass after warm-up "
    "(batch size and threads: latency_batch_size, latency_threads)",
    "params": "parameter elements, packed int8 weights included",
    "nonzero_params": "nonzero parameter elements",
    "sparsity": "fraction of zeros among the weights (multi-dimensional weight tensors)",
    "param_sparsity": "1 - nonzero_params / params (every parameter, biases and norms too)",
    "macs": "multiply-accumulates of one forward pass per instance (zeros not discounted)",
    "effective_macs": "macs minus the work a sparse kernel would skip for zero weights",
    "peak_memory_bytes": "most bytes the CPU allocator held at once during one forward pass, "
    "beyond the weights",
}

_FRACTION = re.compile(
    r"(^|_)(accuracy|sparsity|agreement|jaccard|overlap|cka|fraction|rate)$|^zero_", re.I
)
_COUNT = re.compile(r"(^|_)(params|macs|count|instances)$|^n_", re.I)


def metric_kind(metric: str, info: Mapping[str, Any] | None = None) -> str:
    """``"bytes"``, ``"ms"``, ``"fraction"``, ``"count"`` or ``"number"`` for a metric name."""
    info = info or {}
    if info.get("kind"):
        return str(info["kind"])
    unit = str(info.get("unit") or "").lower()
    if unit == "ms":
        return "ms"
    if unit in ("b", "bytes"):
        return "bytes"
    if str(info.get("format") or "").endswith("%"):
        return "fraction"
    name = str(metric)
    if re.search(r"(^|_)bytes$", name, re.I):
        return "bytes"
    if re.search(r"(^|_)ms$", name, re.I):
        return "ms"
    if _FRACTION.search(name):
        return "fraction"
    if _COUNT.search(name):
        return "count"
    return "number"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _trim(text: str) -> str:
    if "." in text and "e" not in text.lower():
        text = text.rstrip("0").rstrip(".")
    return text


def _precision(value: float, digits: int) -> str:
    """JavaScript's ``toPrecision``: ``digits`` significant digits, fixed notation when short."""
    if value == 0:
        return f"{0:.{digits - 1}f}"
    exponent = math.floor(math.log10(abs(value)))
    rounded = float(f"{value:.{digits - 1}e}")
    exponent = math.floor(math.log10(abs(rounded))) if rounded else exponent
    if exponent < -6 or exponent >= digits:
        mantissa, exp = f"{value:.{digits - 1}e}".split("e")
        return f"{mantissa}e{int(exp):+d}"
    return f"{value:.{max(0, digits - 1 - exponent)}f}"


def _group(value: int) -> str:
    return f"{value:,}"


def format_number(value: Any) -> str:
    """A plain number: four significant digits, integers whole, tiny or huge ones in e-notation."""
    if _missing(value):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if math.isinf(value):
        return "\u221e" if value > 0 else "\u2212\u221e"
    if float(value).is_integer():
        return format_count(value) if abs(value) >= 1e4 else str(int(value))
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        mantissa, exp = f"{value:.3e}".split("e")
        return f"{mantissa}e{int(exp):+d}"
    return _trim(_precision(value, 4))


def format_bytes(value: Any) -> str:
    """Decimal units, three significant digits: ``15.5 MB``, ``812 kB``, ``96 B``."""
    if _missing(value):
        return "n/a"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{_trim(_precision(value / size, 3))} {unit}"
    return f"{round(value)} B"


def format_ms(value: Any) -> str:
    """Milliseconds: three significant digits below 100 ms, whole with separators above."""
    if _missing(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{_group(round(value))} ms"
    if value == 0:
        return "0 ms"
    return f"{_trim(_precision(value, 3))} ms"


def format_percent(value: Any, decimals: int = 2) -> str:
    """A fraction as a percentage with up to ``decimals`` decimals: ``0.9437`` -> ``94.37%``."""
    if _missing(value):
        return "n/a"
    return f"{_trim(f'{value * 100:.{decimals}f}')}%"


def format_count(value: Any) -> str:
    """Counts: ``1,234``, ``22.7M``, ``1.2G``."""
    if _missing(value):
        return "n/a"
    for suffix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(value) >= size:
            return f"{_trim(_precision(value / size, 3))}{suffix}"
    if float(value).is_integer():
        return _group(int(value))
    return format_number(value)


_SI = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "\u00b5")]
# d3-format's grammar without fill, align, sign and symbol: [0][width][,][.precision][~][type]
_SPEC = re.compile(r"^(0)?(\d+)?(,)?(?:\.(\d+))?(~)?([%sfdeg])?$")


def d3_format(spec: str, value: Any) -> str:
    """``value`` formatted by the subset of d3-format that Compress and Compare files use."""
    if _missing(value):
        return "n/a"
    m = _SPEC.match(str(spec or ""))
    if not m or isinstance(value, bool) or not isinstance(value, (int, float)):
        return format_number(value)
    zero, width, comma, precision, tilde, kind = m.groups()
    p = None if precision is None else int(precision)
    if kind == "%":
        text = f"{value * 100:.{6 if p is None else p}f}"
        text = (_trim(text) if tilde else text) + "%"
    elif kind == "s":
        size, prefix = next(((s, x) for s, x in _SI if abs(value) >= s), _SI[-1])
        text = _precision(value / size, max(1, 6 if p is None else p))
        text = (_trim(text) if tilde else text) + prefix
    elif kind == "f":
        text = f"{value:.{6 if p is None else p}f}"
        text = _trim(text) if tilde else text
    elif kind == "e":
        mantissa, exp = f"{value:.{6 if p is None else p}e}".split("e")
        text = f"{mantissa}e{int(exp):+d}"
    elif kind == "d":
        text = str(round(value))
    elif p is not None:
        text = _precision(value, max(1, p))
        text = _trim(text) if (tilde or not kind) else text
    else:
        text = str(value)
    if comma:
        m2 = re.match(r"^(-?)(\d+)(.*)$", text)
        if m2:
            text = m2.group(1) + _group(int(m2.group(2))) + m2.group(3)
    if zero and width:
        sign = "-" if text.startswith("-") else ""
        text = sign + text[len(sign) :].rjust(int(width) - len(sign), "0")
    return text


def format_metric(value: Any, metric: str, info: Mapping[str, Any] | None = None) -> str:
    """``value`` of ``metric`` with its unit; ``"n/a"`` when missing.

    Examples
    --------
    >>> format_metric(0.5, "sparsity")
    '50%'
    >>> format_metric(0.80319, "Top-1 Accuracy", {"format": ".2%"})
    '80.32%'
    """
    info = info or {}
    if _missing(value):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if info.get("format"):
        text = d3_format(info["format"], value)
        return f"{text} {info['unit']}" if info.get("unit") else text
    kind = metric_kind(metric, info)
    if kind == "bytes":
        return format_bytes(value)
    if kind == "ms":
        return format_ms(value)
    if kind == "fraction":
        return format_percent(value)
    if kind == "count":
        return format_count(value)
    text = format_number(value)
    return f"{text} {info['unit']}" if info.get("unit") else text


def format_table(table: Any, info: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """A copy of a metrics DataFrame with every numeric column as text with units.

    Examples
    --------
    >>> format_table(reg.metrics()[["accuracy", "size_bytes"]])  # doctest: +SKIP
              accuracy size_bytes
    base        97.5%     160 kB
    """
    info = info or {}
    out = table.copy()
    for column in out.columns:
        values = out[column]
        if values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all():
            out[column] = [format_metric(v, str(column), info.get(column)) for v in values]
    return out
