"""Compress and Compare experiment files: provenance and metrics without weights.

The format (apple/ml-compress-and-compare) holds ``metrics`` (names, ranges,
formats, units), ``operations`` and ``models``, each model with an ``id``, a ``base``
parent, an ``operation`` with ``name`` and ``parameters``, and ``metrics``.

Metrics keep their names and values; well-known ones are also copied to this
library's columns in its units: ``Model Size`` in MB becomes ``size_bytes`` in bytes,
``Latency`` in s becomes ``latency_ms``, an accuracy in % becomes a fraction. A metric
whose unit is not understood is not copied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .records import ModelRecord, jsonable_params

# C&C metric names that mean the same as this library's columns, so views that
# default to accuracy or size_bytes work on imported experiments too.
ALIASES = {
    "Top-1 Accuracy": "accuracy",
    "Accuracy": "accuracy",
    "Model Size": "size_bytes",
    "Sparsity": "sparsity",
    "Latency": "latency_ms",
}

# Per alias: unit (lower case) -> factor to this library's unit; None is "no unit given".
_UNITS: dict[str, dict[str | None, float]] = {
    "size_bytes": {
        None: 1.0,
        "b": 1.0,
        "byte": 1.0,
        "bytes": 1.0,
        "kb": 1e3,
        "mb": 1e6,
        "gb": 1e9,
        "tb": 1e12,
        "kib": 2.0**10,
        "mib": 2.0**20,
        "gib": 2.0**30,
    },
    "latency_ms": {
        None: 1.0,
        "ms": 1.0,
        "s": 1e3,
        "sec": 1e3,
        "seconds": 1e3,
        "us": 1e-3,
        "\u00b5s": 1e-3,
        "\u03bcs": 1e-3,
        "ns": 1e-6,
        "min": 6e4,
    },
    # Fractions in [0, 1].
    "accuracy": {None: 1.0, "fraction": 1.0, "%": 0.01, "percent": 0.01},
    "sparsity": {None: 1.0, "fraction": 1.0, "%": 0.01, "percent": 0.01},
}


def _factor(alias: str, spec: dict[str, Any], values: list[float]) -> float | None:
    """What to multiply ``spec``'s values by for ``alias``; None: do not alias it."""
    unit = spec.get("unit")
    unit = unit.strip().lower() if isinstance(unit, str) and unit.strip() else None
    table = _UNITS[alias]
    if unit not in table:
        return None
    factor = table[unit]
    if alias in ("accuracy", "sparsity") and unit is None:
        # A d3 format such as ".2%" displays fractions as percentages: the values stay.
        # Without a unit, values above 1 (or a declared maximum of 100) are percentages.
        top = spec.get("max")
        if any(v > 1.0 for v in values) or (isinstance(top, (int, float)) and top > 1.0):
            if any(v > 100.0 for v in values):
                return None
            factor = 0.01
    return factor


def read(path: str | Path) -> tuple[list[ModelRecord], dict[str, dict[str, Any]]]:
    """Parse ``path`` into provenance records and per-model metrics.

    Raises
    ------
    ValueError
        If the file is not a C&C experiment file (the message names the field).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}); expected a Compress and Compare file"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise ValueError(
            f"{path} has no 'models' list; expected a Compress and Compare experiment file"
        )
    specs = {m.get("name"): m for m in doc.get("metrics", []) if isinstance(m, dict)}
    records, metrics, seen = [], {}, set()
    for i, entry in enumerate(doc["models"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ValueError(f"{path}: models[{i}] has no string 'id'")
        name = entry["id"]
        if name in seen:
            raise ValueError(f"{path}: model id {name!r} appears twice")
        seen.add(name)
        op = entry.get("operation") or {}
        records.append(
            ModelRecord(
                name=name,
                parent=entry.get("base"),
                operation=op.get("name"),
                params=jsonable_params(name, op.get("parameters") or {}),
                info={"source": str(path.name), "tag": entry.get("tag", "")},
            )
        )
        metrics[name] = dict(entry.get("metrics") or {})
    # The metric keeps its own name and unit; the alias holds it in this library's unit
    # (bytes, milliseconds, fractions), or is left out when the unit is unknown.
    for original, alias in ALIASES.items():
        have = [m for m in metrics.values() if _number(m.get(original))]
        if not have:
            continue
        values = [float(m[original]) for m in have]
        factor = _factor(alias, specs.get(original, {}), values)
        if factor is None:
            continue
        for m in have:
            if alias not in m:
                m[alias] = float(m[original]) * factor if factor != 1.0 else m[original]
    return records, metrics


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_info(path: str | Path) -> dict[str, dict[str, Any]]:
    """The file's own description of each metric: d3 ``format``, ``unit``, ``min``, ``max``.

    Aliased columns (``size_bytes`` for ``Model Size``) keep this library's own units.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    info: dict[str, dict[str, Any]] = {}
    for entry in doc.get("metrics", []) if isinstance(doc, dict) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        described = {
            k: entry[k]
            for k in ("format", "unit", "min", "max")
            if isinstance(entry.get(k), (str, int, float)) and not isinstance(entry.get(k), bool)
        }
        info[entry["name"]] = described
    return info
