"""Default names of compressed children: ``parent-operation-values``."""

from __future__ import annotations

from typing import Any


def _name_part(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value.rsplit(".", 1)[-1] if "." in value and " " not in value else value
    if isinstance(value, type) or callable(value):
        return getattr(value, "__name__", type(value).__name__)
    if isinstance(value, (list, tuple, set, frozenset)):
        parts = [_name_part(v) for v in value]
        return "+".join(p for p in parts if p) or None
    return None


def default_name(parent: str, operation: str, params: dict[str, Any]) -> str:
    """``parent-operation-v1-v2`` from the parameter values, e.g. ``base-prune-0.5-global``.

    Lists join their items with ``+`` and classes give their name, so
    ``prune(amount=0.5, modules=[nn.Linear])`` is ``base-prune-0.5-Linear`` and
    ``drop_layers(layers=[3, 4])`` is ``base-drop_layers-3+4``.
    """
    short = operation.rsplit(".", 1)[-1]
    values = [part for v in params.values() if (part := _name_part(v))]
    return "-".join([parent, short, *values])
