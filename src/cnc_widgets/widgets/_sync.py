"""Shared wiring of a view to its registry: the selection and filter links, and refreshes."""

from __future__ import annotations

import math
from typing import Any

import traitlets


def link_selection(widget: traitlets.HasTraits, registry: traitlets.HasTraits) -> traitlets.link:
    """Keep ``widget.selected`` and ``registry.selected`` equal in both directions."""
    return traitlets.link((registry, "selected"), (widget, "selected"))


def json_value(value: Any) -> Any:
    """A value JSON can carry: NaN and inf become None, numpy scalars plain Python."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return str(value)


def link_filters(widget: traitlets.HasTraits, registry: traitlets.HasTraits) -> traitlets.link:
    """Keep ``widget.filters`` equal to ``registry.filters`` and ``widget.filtered_out`` current.

    The widget declares ``filters = traitlets.Dict().tag(sync=True)`` and
    ``filtered_out = traitlets.List(traitlets.Unicode()).tag(sync=True)``; its JavaScript
    calls ``markFiltered(root, model.get("filtered_out"))`` (js/src/shared/filter.js).
    """

    def refresh(_change: Any = None) -> None:
        widget.filtered_out = registry.filtered_out()

    link = traitlets.link((registry, "filters"), (widget, "filters"))
    registry.observe(refresh, names=["filters", "revision"])
    refresh()
    return link
