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


def rename_module(mapping: Mapping[str, str | None], name: str) -> str | None:
    """``name`` after an operation that renamed modules; ``None`` if it was removed.

    ``mapping`` maps dotted module names of the parent to those of the child (``None``:
    removed); a key renames itself and everything below it, the longest matching key
    wins, and names under no key are unchanged.

    Examples
    --------
    >>> rename_module({"enc.layer.3": "enc.layer.1", "enc.layer.1": None}, "enc.layer.3.fc")
    'enc.layer.1.fc'
    >>> rename_module({"enc.layer.1": None}, "enc.layer.10.fc")
    'enc.layer.10.fc'
    """
    best = None
    for key in mapping:
        if (name == key or name.startswith(key + ".")) and (best is None or len(key) > len(best)):
            best = key
    if best is None:
        return name
    target = mapping[best]
    return None if target is None else target + name[len(best) :]


@dataclass
class ModuleCorrespondence:
    """Which module of model b a module of model a became, along their provenance path.

    Built by :func:`module_correspondence`: ``steps`` are the renamings met on the way
    from a up to the nearest common ancestor (applied inverted) and then down to b,
    each ``(mapping, forward, operation)``. Without steps, modules pair by name.
    """

    steps: list[tuple[dict[str, str | None], bool, str]] = field(default_factory=list)

    def map(self, name: str) -> tuple[str | None, str]:
        """``(name in b, "")``, or ``(None, reason)`` when an operation removed it."""
        for mapping, forward, operation in self.steps:
            if forward:
                renamed = rename_module(mapping, name)
            else:
                inverse = {v: k for k, v in mapping.items() if v is not None}
                renamed = rename_module(inverse, name)
            if renamed is None:
                return None, f"removed by {operation}"
            name = renamed
        return name, ""

    def reversed(self) -> ModuleCorrespondence:
        """The same path walked from b to a."""
        return ModuleCorrespondence([(m, not f, o) for m, f, o in reversed(self.steps)])

    def describe(self) -> list[Any]:
        """A JSON-able form, for cache keys."""
        return [[m, f, o] for m, f, o in self.steps]


def module_correspondence(record_of: Any, a: str, b: str) -> ModuleCorrespondence:
    """Compose the module renamings recorded between ``a`` and ``b`` in their provenance.

    ``record_of(name)`` returns a :class:`ModelRecord`; an operation that renames
    modules keeps ``info["module_map"]`` (parent name -> child name, ``None`` for a
    removed module; see :func:`rename_module`). The path runs from ``a`` up to the
    nearest common ancestor and down to ``b``: a grandchild, a parent, or a sibling.
    Models without a common ancestor pair modules by name.

    Examples
    --------
    >>> recs = {
    ...     "base": ModelRecord("base"),
    ...     "small": ModelRecord(
    ...         "small", "base", "drop_layers", info={"module_map": {"l.1": None, "l.2": "l.1"}}
    ...     ),
    ... }
    >>> module_correspondence(recs.__getitem__, "base", "small").map("l.2.fc")
    ('l.1.fc', '')
    >>> module_correspondence(recs.__getitem__, "small", "base").map("l.1.fc")
    ('l.2.fc', '')
    """

    def chain(name: str) -> list[str]:
        out = [name]
        while True:
            try:
                parent = record_of(out[-1]).parent
            except KeyError:
                return out
            if parent is None or parent in out:
                return out
            out.append(parent)

    up, down = chain(a), chain(b)
    common = next((n for n in up if n in set(down)), None)
    if common is None:
        return ModuleCorrespondence()
    steps: list[tuple[dict[str, str | None], bool, str]] = []
    for name in up[: up.index(common)]:
        record = record_of(name)
        mapping = record.info.get("module_map") if record.info else None
        if mapping:
            steps.append((dict(mapping), False, str(record.operation)))
    for name in reversed(down[: down.index(common)]):
        record = record_of(name)
        mapping = record.info.get("module_map") if record.info else None
        if mapping:
            steps.append((dict(mapping), True, str(record.operation)))
    return ModuleCorrespondence(steps)
