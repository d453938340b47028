"""The layers view's damage mode: :meth:`Comparison.sensitivity` per module, and restores.

Sensitivity costs restore runs, so the view computes it only when asked (the ``damage``
mode, a ``_damage_request`` from the browser); :func:`damage_payload` is what it sends
back. ``suggest`` runs :meth:`ModelRegistry.suggest_restores` for the same pair; its
children are registry models, so every view of the registry shows them at once.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..registry import ModelRegistry
from ._sync import json_value

#: The table's columns as they travel (``modules`` is a list per group).
DAMAGE_COLUMNS = (
    "group",
    "by",
    "modules",
    "params",
    "proxy",
    "quality_restored",
    "recovered",
    "kl_restored",
    "pattern",
)
GROUPINGS = ("auto", "module")


def module_groups(table: pd.DataFrame, rows: list[str]) -> list[int]:
    """Per layer row, the index (in ``table``, worst first) of the worst group holding it.

    A module can sit in several groups (``"auto"``: its kind and its block); the table is
    ordered worst first, so the first group that lists it is its worst. -1: in none (a
    module without weights in both models).

    Examples
    --------
    >>> t = pd.DataFrame({"modules": [["a.0", "b"], ["a.0"]]})
    >>> module_groups(t, ["a.0", "b", "c"])
    [0, 0, -1]
    """
    first: dict[str, int] = {}
    for i, modules in enumerate(table["modules"]):
        for m in modules:
            first.setdefault(str(m), i)
    return [first.get(r, -1) for r in rows]


def damage_payload(
    registry: ModelRegistry,
    reference: str,
    name: str,
    rows: list[str],
    groups: str = "auto",
) -> dict[str, Any]:
    """:meth:`Comparison.sensitivity` of ``name`` against ``reference``, for the view.

    ``table`` holds the sensitivity table column by column (NaN as None, worst group
    first), ``attrs`` its attrs (``rows`` as ``n_rows``, the count), ``module_group`` the
    worst group of each of the layer table's ``rows`` (:func:`module_groups`), ``worst``
    the index of the worst measured group (None when no group was measured), ``spec`` the
    altair bar chart (:meth:`Comparison.sensitivity_chart`) and ``suggest`` whether
    ``reg.suggest_restores(reference, name)`` applies (``reference`` must be the parent).
    """
    from ..formatting.charts import sensitivity_chart

    if groups not in GROUPINGS:
        raise ValueError(f"groups must be one of {GROUPINGS} in the view, got {groups!r}")
    table = registry.compare(reference, name).sensitivity(groups=groups)
    attrs = dict(table.attrs)
    measured = table.index[table["recovered"].notna()]
    parent = registry.record(name).parent
    return {
        "reference": reference,
        "model": name,
        "groups": groups,
        "table": {
            c: [json_value(v) for v in table[c]] for c in DAMAGE_COLUMNS if c in table.columns
        },
        "attrs": {
            **{k: json_value(v) for k, v in attrs.items() if k != "rows"},
            "n_rows": len(attrs.get("rows", [])),
        },
        "module_group": module_groups(table, rows),
        "worst": int(measured[0]) if len(measured) else None,
        "spec": sensitivity_chart(table, (reference, name)).to_dict(),
        "suggest": {
            "ok": parent == reference,
            "why": ""
            if parent == reference
            else f"restore children copy from {name}'s parent ({parent}), not {reference}",
        },
    }


def suggest_payload(registry: ModelRegistry, reference: str, name: str) -> dict[str, Any]:
    """Run ``reg.suggest_restores(reference, name)``; the children made and their quality."""
    made = registry.suggest_restores(reference, name)
    quality = registry.task.quality
    table = registry.metrics()
    return {
        "made": made,
        "metric": quality,
        "quality": {n: json_value(table.at[n, quality]) for n in [reference, name, *made]},
    }
