"""Compress and Compare experiment files: provenance and metrics without weights.

The format (apple/ml-compress-and-compare) holds ``metrics`` (names, ranges,
formats), ``operations`` and ``models``, each model with an ``id``, a ``base``
parent, an ``operation`` with ``name`` and ``parameters``, and ``metrics``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..provenance import ModelRecord, jsonable_params

# C&C metric names that mean the same as this library's columns, so views that
# default to accuracy or size_bytes work on imported experiments too.
ALIASES = {
    "Top-1 Accuracy": "accuracy",
    "Accuracy": "accuracy",
    "Model Size": "size_bytes",
    "Sparsity": "sparsity",
    "Latency": "latency_ms",
}


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
    units = {m.get("name"): m.get("unit") for m in doc.get("metrics", []) if isinstance(m, dict)}
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
        values = dict(entry.get("metrics") or {})
        for original, alias in ALIASES.items():
            if original in values and alias not in values:
                if alias == "latency_ms" and units.get(original) not in (None, "ms"):
                    continue
                values[alias] = values[original]
        metrics[name] = values
    return records, metrics


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
