"""What every view shares: the registry's selection and filters, a key for linking, a summary.

A view subclasses :class:`RegistryView` and calls ``super().__init__(registry, ...)``, which
declares and links, once for every view:

``selected`` (list of model names, synced both ways with ``reg.selected``)
    the registry's selection; clicking a mark in any view changes it everywhere.
``filters`` (dict metric -> [low, high], synced both ways with ``reg.filters``)
    the ranges a filter panel brushed; every view dims the models outside them.
``filtered_out`` (list of model names, Python -> browser)
    the models ``reg.filters`` leaves out, kept current on every change of the filters or of
    the registry's contents; the browser marks them ``data-filtered="out"``.
``_registry_key`` (str, Python -> browser)
    a random id of the registry, by which an exported report (no kernel) links the views of
    one registry in the browser.

Registry observers a view adds go through :meth:`RegistryView.observe_registry`, so that
:meth:`RegistryView.close` removes every link and observer it made: a closed view no longer
follows, nor is kept alive by, its registry. Its ``_repr_mimebundle_`` carries a ``text/html``
table of what it shows (:meth:`RegistryView.summary_table`), so a notebook preview without
widgets (GitHub, nbviewer, a report whose scripts are blocked) shows that table instead of
``ProvenanceGraph(...)``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anywidget
import pandas as pd
import traitlets

from ._sync import link_filters, link_selection

SUMMARY_ROWS = 20
# Set (to "1") in the kernel that export_report(execute=True) runs: no frontend will draw
# the views, so a lazy view computes at once what the report is to show. Set it yourself
# when you execute a notebook another way (nbconvert --execute) before exporting it.
EXPORT_ENV = "CNC_WIDGETS_EXPORT"


def exporting() -> bool:
    """Whether this kernel runs a notebook for a report (see ``EXPORT_ENV``)."""
    return os.environ.get(EXPORT_ENV, "") not in ("", "0")


# Columns of the default summary, in this order, where the registry has them.
_MODEL_COLUMNS = ["parent", "operation", "accuracy", "size_bytes", "sparsity", "latency_ms"]


@dataclass
class Summary:
    """A titled table (and a line of notes) that stands in for a view where no widget runs."""

    title: str
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def to_html(self, max_rows: int = SUMMARY_ROWS) -> str:
        """The summary as escaped HTML: every cell and name is text, never markup."""
        shown = self.table.head(max_rows)
        notes = list(self.notes)
        if len(self.table) > max_rows:
            notes.append(f"{max_rows} of {len(self.table)} rows shown")
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [shown.index.name or ""])
        head += "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
        rows = []
        for index, row in shown.iterrows():
            cells = [f"<th>{html.escape(str(index))}</th>"]
            cells += [f"<td>{html.escape(_format(v))}</td>" for v in row]
            rows.append("<tr>" + "".join(cells) + "</tr>")
        parts = [
            '<div class="cnc-static-summary">',
            f"<strong>{html.escape(self.title)}</strong>",
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>",
        ]
        parts += [f"<p>{html.escape(n)}</p>" for n in notes]
        parts.append("</div>")
        return "".join(parts)


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def model_table(registry: Any, names: list[str] | None = None) -> pd.DataFrame:
    """The registry's models (or ``names``) with the columns a summary shows."""
    table = registry.metrics()
    if names is not None:
        table = table.loc[[n for n in names if n in table.index]]
    table = table[[c for c in _MODEL_COLUMNS if c in table.columns]].copy()
    table.index.name = "model"
    return table


class RegistryView(anywidget.AnyWidget):
    """Base of the views: synced selection and filters, a registry key, a static summary.

    Subclasses call ``super().__init__(registry, **traits)``, observe the registry through
    :meth:`observe_registry` and override :meth:`summary_table` to describe what they draw.

    Examples
    --------
    >>> class Count(RegistryView):
    ...     def __init__(self, registry):
    ...         super().__init__(registry)
    ...         self.observe_registry(lambda _c: None, "revision")
    >>> view = Count(reg)  # doctest: +SKIP
    >>> view.close()       # doctest: +SKIP  (unlinked from reg.selected and reg.filters)
    """

    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    filters = traitlets.Dict().tag(sync=True)
    filtered_out = traitlets.List(traitlets.Unicode()).tag(sync=True)
    _registry_key = traitlets.Unicode("").tag(sync=True)

    def __init__(self, registry: Any, **kwargs: Any) -> None:
        self.registry = registry
        self._registry_observers: list[tuple[Callable[..., Any], list[str]]] = []
        self._links: list[Any] = []
        super().__init__(**kwargs)
        self._links.append(link_selection(self, registry))
        filter_link, refresh = link_filters(self, registry)
        self._links.append(filter_link)
        self._registry_observers.append((refresh, ["filters", "revision"]))

    def observe_registry(self, handler: Callable[..., Any], names: str | list[str]) -> None:
        """``registry.observe(handler, names)``, undone by :meth:`close`."""
        names = [names] if isinstance(names, str) else list(names)
        self.registry.observe(handler, names=names)
        self._registry_observers.append((handler, names))

    def close(self) -> None:
        """Unlink the selection and filters and drop every registry observer, then close."""
        for link in self.__dict__.get("_links", []):
            try:
                link.unlink()
            except ValueError:  # already unlinked
                pass
        self._links = []
        for handler, names in self.__dict__.get("_registry_observers", []):
            try:
                self.registry.unobserve(handler, names=names)
            except ValueError:  # already removed
                pass
        self._registry_observers = []
        super().close()

    def summary_table(self) -> Summary:
        """What the view shows, as a table; by default the registry's models."""
        table = model_table(self.registry)
        table.insert(0, "selected", [n in self.selected for n in table.index])
        return Summary(f"{type(self).__name__}: {len(table)} models", table)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        try:
            summary = self.summary_table().to_html()
        except Exception as exc:  # a summary must never stop the view from showing
            summary = (
                f"<p>{html.escape(type(self).__name__)}: no summary "
                f"({html.escape(type(exc).__name__)}: {html.escape(str(exc))})</p>"
            )
        return {**data, "text/html": summary}, metadata
