"""What every view shares: the registry's selection, a key for linking, a static summary.

A view subclasses :class:`RegistryView`. Its ``selected`` trait follows the registry's
(through :func:`._sync.link_selection`), its ``_registry_key`` lets an exported report link
views of one registry in the browser without a kernel, and its ``_repr_mimebundle_`` carries a
``text/html`` table of what it shows (:meth:`RegistryView.summary_table`), so a notebook preview
without widgets (GitHub, nbviewer, a report whose scripts are blocked) shows that table instead
of ``ProvenanceGraph(...)``.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from typing import Any

import anywidget
import pandas as pd
import traitlets

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
    """Base of the views: a synced selection, a registry key and a static HTML summary.

    Subclasses set ``self.registry``, call :func:`._sync.link_selection` and override
    :meth:`summary` to describe what they draw.
    """

    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    _registry_key = traitlets.Unicode("").tag(sync=True)

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
