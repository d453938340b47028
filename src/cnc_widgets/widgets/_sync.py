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


class EqualLink:
    """Two traits kept equal in both directions, like ``traitlets.link`` but without its
    ``updating`` flag: widget messages are handled on another thread than the cell's
    (ipykernel 7), and while a click's update ran there (views recomputing for the new
    selection), the flag made the link drop a selection the cell set meanwhile. Each side is
    set only when it differs, so the two converge without a flag."""

    def __init__(self, source: tuple[Any, str], target: tuple[Any, str]) -> None:
        self.source, self.target = source, target
        setattr(target[0], target[1], getattr(source[0], source[1]))
        source[0].observe(self._to_target, names=source[1])
        target[0].observe(self._to_source, names=target[1])

    def _to_target(self, change: Any) -> None:
        obj, name = self.target
        if getattr(obj, name) != change.new:
            setattr(obj, name, change.new)

    def _to_source(self, change: Any) -> None:
        obj, name = self.source
        if getattr(obj, name) != change.new:
            setattr(obj, name, change.new)

    def unlink(self) -> None:
        self.source[0].unobserve(self._to_target, names=self.source[1])
        self.target[0].unobserve(self._to_source, names=self.target[1])


def link_selection(widget: traitlets.HasTraits, registry: traitlets.HasTraits) -> EqualLink:
    """Keep ``widget.selected`` and ``registry.selected`` equal in both directions.

    A view with a ``_registry_key`` trait also gets its registry's key, by which an exported
    report (no kernel) links the selections of views of one registry in the browser.
    """
    if widget.has_trait("_registry_key"):
        widget.set_trait("_registry_key", registry_key(registry))
    return EqualLink((registry, "selected"), (widget, "selected"))


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
) -> tuple[EqualLink, Callable[..., None]]:
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

    link = EqualLink((registry, "filters"), (widget, "filters"))
    registry.observe(refresh, names=["filters", "revision"])
    refresh()
    return link, refresh
