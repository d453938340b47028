"""Are these models comparable? Which operation parameters differ along their provenance paths.

Compress and Compare's "experiment comparability": two models whose paths from the root
differ in one operation parameter (``prune: amount`` 0.5 vs 0.7) tell you what that
parameter does; models that differ in two things at once (an amount and a scope, or a
prune and an extra fine-tune) do not, and a difference between them can't be pinned on
either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from .records import ModelRecord

__all__ = ["comparability", "differences_sentence", "path_steps"]

ROOT_ROW = "root"


def path_steps(record_of: Callable[[str], ModelRecord], name: str) -> list[ModelRecord]:
    """The records from the root down to ``name`` (the root first)."""
    chain, seen = [], set()
    current: str | None = name
    while current is not None and current not in seen:
        seen.add(current)
        record = record_of(current)
        chain.append(record)
        current = record.parent
    return chain[::-1]


def _value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def _operations(chain: list[ModelRecord]) -> dict[str, dict[str, Any]]:
    """``{"prune": {"amount": 0.5}, ...}`` for every operation on the path below the root."""
    out: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for record in chain[1:]:
        op = record.operation or "(unknown operation)"
        seen[op] = seen.get(op, 0) + 1
        label = op if seen[op] == 1 else f"{op} #{seen[op]}"
        out[label] = {k: _value(v) for k, v in sorted(record.params.items())}
    return out


def _described(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "applied"


def comparability(record_of: Callable[[str], ModelRecord], names: Sequence[str]) -> pd.DataFrame:
    """One row per operation parameter found along the models' paths from their roots.

    Columns: one per model (the parameter's value on its path) and ``status``:
    ``"differs"`` or ``"shared"``. An operation that only some paths have is one row named
    after it (its parameters as the value, ``None`` where absent): one thing that differs.
    Rows that differ come first; the ``root`` row names each path's root model.

    Examples
    --------
    >>> comparability(reg.record, ["base-prune-0.5", "base-prune-0.7"])
                   base-prune-0.5  base-prune-0.7   status
    prune: amount             0.5             0.7  differs
    root                     base            base   shared
    prune: scope           global          global   shared
    """
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("comparability needs at least one model name, e.g. reg.selected")
    chains = {name: path_steps(record_of, name) for name in names}
    ops = {name: _operations(chain) for name, chain in chains.items()}
    values: dict[str, dict[str, Any]] = {ROOT_ROW: {n: chains[n][0].name for n in names}}
    labels: list[str] = []
    for name in names:
        labels.extend(op for op in ops[name] if op not in labels)
    for op in labels:
        everywhere = all(op in ops[n] for n in names)
        keys = list(dict.fromkeys(k for n in names for k in ops[n].get(op, {})))
        if everywhere and keys:
            for key in keys:
                values[f"{op}: {key}"] = {n: ops[n][op].get(key) for n in names}
        else:
            values[op] = {n: _described(ops[n][op]) if op in ops[n] else None for n in names}
    rows = list(values)
    table = pd.DataFrame(
        {name: [values[row][name] for row in rows] for name in names},
        index=pd.Index(rows, name="parameter"),
        dtype=object,
    )
    status = ["differs" if len({repr(v) for v in table.loc[row]}) > 1 else "shared" for row in rows]
    table["status"] = status
    order = sorted(range(len(rows)), key=lambda i: (status[i] != "differs", i))
    return table.iloc[order]


def _short(label: str) -> str:
    return label.split(": ", 1)[-1]


def differences_sentence(table: pd.DataFrame) -> str | None:
    """A warning when more than one thing differs ("these differ in amount and in scope").

    ``None`` when the models differ in at most one parameter.
    """
    differing = [str(r) for r in table.index[table["status"] == "differs"]]
    if len(differing) <= 1:
        return None
    shorts = [_short(r) for r in differing]
    # The parameter name alone reads best; keep the operation where two share a name.
    labels = [s if shorts.count(s) == 1 else r for r, s in zip(differing, shorts, strict=True)]
    listed = ", ".join(labels[:-1]) + f" and in {labels[-1]}"
    return f"these differ in {listed}: a difference between them can't be pinned on one of them"
