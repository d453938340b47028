"""Provenance records: which model was made from which, by what operation.

Kept free of torch so that a registry reopened from its store, or read from a
Compress and Compare experiment file, has its whole history without any model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ModelRecord:
    """Everything the registry knows about one model apart from its weights.

    Attributes
    ----------
    name : str
        Unique name in the registry.
    parent : str or None
        Name of the model this one was made from; ``None`` for a root.
    operation : str or None
        How it was made from its parent (``"prune"``, ``"quantize_dynamic"``, a
        callable's qualified name, or any label the user gives).
    params : dict
        Parameters of the operation, JSON-serialisable.
    fingerprint : str or None
        Content hash of the weights; ``None`` for metric-only models.
    info : dict
        Library versions, the time the operation took and similar facts.
    created : float
        Unix time the record was made.
    """

    name: str
    parent: str | None = None
    operation: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    def same_provenance(self, other: ModelRecord) -> bool:
        """True when parent, operation and parameters match."""
        return (self.parent, self.operation, _canonical(self.params)) == (
            other.parent,
            other.operation,
            _canonical(other.params),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _canonical(params: Mapping[str, Any] | None) -> str:
    return json.dumps(params or {}, sort_keys=True, default=str)


def jsonable_params(name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return ``params`` as plain JSON values, or raise a ValueError naming the culprit."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ValueError(
            f"params of model {name!r} must be a dict of JSON values, got {type(params).__name__}"
        )
    try:
        return json.loads(json.dumps(dict(params), sort_keys=True))
    except TypeError as exc:
        raise ValueError(
            f"params of model {name!r} are not JSON-serialisable ({exc}); "
            "pass numbers, strings, lists or dicts"
        ) from None


def check_parent(records: Mapping[str, ModelRecord], name: str, parent: str | None) -> None:
    """Raise a ValueError if ``parent`` is unknown or would close a cycle through ``name``."""
    if parent is None:
        return
    if not isinstance(parent, str):
        raise ValueError(
            f"parent of model {name!r} must be a model name (str), got {type(parent).__name__}"
        )
    if parent == name:
        raise ValueError(f"model {name!r} cannot be its own parent; pass parent=None for a root")
    if parent not in records:
        known = ", ".join(sorted(records)[:10]) or "none yet"
        raise ValueError(
            f"parent {parent!r} of model {name!r} is not in the registry (known: {known}); "
            f"add {parent!r} first or fix the name"
        )
    seen = {name}
    cursor: str | None = parent
    while cursor is not None:
        if cursor in seen:
            raise ValueError(
                f"making {parent!r} the parent of {name!r} would create a cycle "
                f"({name!r} is an ancestor of {parent!r}); choose a parent outside its subtree"
            )
        seen.add(cursor)
        cursor = records[cursor].parent if cursor in records else None


def ancestors(records: Mapping[str, ModelRecord], name: str) -> list[str]:
    """Names from ``name``'s parent up to its root."""
    out = []
    cursor = records[name].parent
    while cursor is not None and cursor in records and cursor not in out:
        out.append(cursor)
        cursor = records[cursor].parent
    return out


def topological(records: Iterable[ModelRecord]) -> list[ModelRecord]:
    """Order records so that every parent comes before its children.

    Raises
    ------
    ValueError
        If a parent is missing or the parents form a cycle.
    """
    pending = {r.name: r for r in records}
    done: dict[str, ModelRecord] = {}
    while pending:
        ready = [r for r in pending.values() if r.parent is None or r.parent in done]
        if not ready:
            missing = sorted({r.parent for r in pending.values() if r.parent not in pending})
            if missing:
                raise ValueError(
                    f"unknown parent(s) {missing} referenced by "
                    f"{sorted(r.name for r in pending.values() if r.parent in missing)}"
                )
            raise ValueError(f"the parents of {sorted(pending)} form a cycle")
        for r in ready:
            done[r.name] = pending.pop(r.name)
    return list(done.values())
