"""Shared wiring of a view to its registry: the selection and filter links, and refreshes."""

from __future__ import annotations

import math
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import traitlets

_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def registry_key(registry: object) -> str:
    """A random id of ``registry``, the same for every view of it (links them in reports)."""
    if registry not in _KEYS:
        _KEYS[registry] = uuid.uuid4().hex
    return _KEYS[registry]


def link_selection(widget: traitlets.HasTraits, registry: traitlets.HasTraits) -> traitlets.link:
    """Keep ``widget.selected`` and ``registry.selected`` equal in both directions.

    A view with a ``_registry_key`` trait also gets its registry's key, by which an exported
    report (no kernel) links the selections of views of one registry in the browser.
    """
    if widget.has_trait("_registry_key"):
        widget.set_trait("_registry_key", registry_key(registry))
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


def link_filters(
    widget: traitlets.HasTraits, registry: traitlets.HasTraits
) -> tuple[traitlets.link, Callable[..., None]]:
    """Keep ``widget.filters`` equal to ``registry.filters`` and ``widget.filtered_out`` current.

    The widget declares ``filters = traitlets.Dict().tag(sync=True)`` and
    ``filtered_out = traitlets.List(traitlets.Unicode()).tag(sync=True)`` (as
    :class:`._view.RegistryView` does); its JavaScript calls
    ``markFiltered(root, model.get("filtered_out"))`` (js/src/shared/filter.js).
    Returns the link and the registry observer (on ``filters`` and ``revision``), so the
    caller can undo both.
    """

    def refresh(_change: Any = None) -> None:
        widget.filtered_out = registry.filtered_out()

    link = traitlets.link((registry, "filters"), (widget, "filters"))
    registry.observe(refresh, names=["filters", "revision"])
    refresh()
    return link, refresh
