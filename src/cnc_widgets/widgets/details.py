"""SelectionDetails: what the selected models are, how they were made, and how they compare.

One model selected: its metrics with units and its chain of operations from the root.
Two to sixteen: a bar chart per metric (altair, drawn by the bundled vega-embed) with the
operation parameter that varies among them on the x axis, and a warning when they differ
in more than one thing (:meth:`ModelRegistry.comparability`).
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import traitlets

from ..formatting import METRIC_HELP, format_metric, metric_kind
from ..formatting.charts import offline
from ..provenance.comparability import differences_sentence, path_steps
from ..registry import ModelRegistry
from ._bundle import bundle
from ._metrics import numeric_metrics
from ._sync import json_value
from ._view import RegistryView

MAX_MODELS = 16
# Okabe and Ito's palette: categories stay apart for the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]
_BYTE_UNITS = [("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("B", 1.0)]


def varying_parameter(comparison: pd.DataFrame) -> str | None:
    """The one operation parameter (``"prune: amount"``) that differs, else ``None``."""
    differing = [str(r) for r in comparison.index[comparison["status"] == "differs"]]
    if len(differing) == 1 and ": " in differing[0]:
        return differing[0]
    return None


def metric_chart(
    table: pd.DataFrame,
    metric: str,
    info: dict[str, Any] | None = None,
    *,
    x: pd.Series | None = None,
    x_title: str | None = None,
) -> alt.Chart:
    """A bar per model of ``metric``; ``x`` (one value per model) replaces the names on the axis."""
    info = info or {}
    kind = metric_kind(metric, info)
    values = pd.to_numeric(table[metric], errors="coerce")
    scale, unit = 1.0, info.get("unit") or ""
    if kind == "bytes" and values.notna().any():
        unit, scale = next((u, s) for u, s in _BYTE_UNITS if values.abs().max() >= s or u == "B")
    elif kind == "ms":
        unit = "ms"
    data = pd.DataFrame(
        {
            "model": [str(n) for n in table.index],
            "value": values / scale,
            "text": [format_metric(json_value(v), metric, info) for v in table[metric]],
            "operation": [str(o) if isinstance(o, str) else "root" for o in table["operation"]],
        }
    )
    title = f"{metric} ({unit})" if unit else metric
    # "~%": as many decimals as the ticks need (0.1%, 0.2%, ... for sparsities of a few
    # thousandths), where ".0%" rounded every tick to "0%".
    y_axis = alt.Axis(format="~%") if kind == "fraction" else alt.Axis(format="~s")
    tooltip = [alt.Tooltip("model:N"), alt.Tooltip("text:N", title=metric)]
    if x is not None:
        data["x"] = [str(json_value(v)) for v in x]
        numeric = pd.to_numeric(x, errors="coerce")
        order = (
            [str(json_value(v)) for v in x.iloc[numeric.argsort(kind="stable")]]
            if numeric.notna().all()
            else sorted(set(data["x"]))
        )
        x_enc = alt.X("x:N", title=x_title, sort=list(dict.fromkeys(order)))
        tooltip.insert(1, alt.Tooltip("x:N", title=x_title))
        colour = alt.Color("x:N", title=x_title, sort=list(dict.fromkeys(order)), legend=None)
    else:
        x_enc = alt.X("model:N", title=None, sort=list(data["model"]))
        colour = alt.Color("operation:N", title="operation")
    return (
        alt.Chart(data, title=title, width=alt.Step(22), height=120)
        .mark_bar()
        .encode(
            x=x_enc,
            y=alt.Y("value:Q", title=None, axis=y_axis),
            color=colour.scale(range=OKABE_ITO),
            tooltip=tooltip,
        )
    )


def selection_charts(
    registry: ModelRegistry, names: list[str]
) -> tuple[list[alt.Chart], pd.DataFrame, str | None]:
    """Bar charts of every numeric metric of ``names``, their comparability table, and the
    parameter that varies among them (on the x axis when there is exactly one)."""
    table = registry.metrics().loc[names]
    comparison = registry.comparability(names)
    varying = varying_parameter(comparison)
    x = comparison.loc[varying, names] if varying else None
    x_title = varying.split(": ", 1)[1] if varying else None
    charts = [
        metric_chart(table, m, registry.metric_info.get(m), x=x, x_title=x_title)
        for m in numeric_metrics(table)
    ]
    return charts, comparison, varying


def size_explanation(sizes: dict[str, Any] | None, row: pd.Series) -> dict[str, Any] | None:
    """Why a compressed child has its size: bytes by dtype (its and its parent's), what the
    operation changed and left, and a note when the latency spread is large."""
    if not sizes:
        return None
    changed = sizes.get("changed", {})
    kinds: dict[str, int] = {}
    for how in changed.values():
        kind = how.split(" (")[0].split(" to ")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    unchanged = list(sizes.get("unchanged", []))
    lines = [f"{n} module{'s' if n != 1 else ''} {kind}" for kind, n in sorted(kinds.items())]
    if unchanged:
        more = f" and {len(unchanged) - 4} more" if len(unchanged) > 4 else ""
        shown = ", ".join(unchanged[:4]) + more
        lines.append(f"{len(unchanged)} left as they were: {shown}")
    return {
        "bytes_by_dtype": [
            {"dtype": k, "text": format_metric(v, "size_bytes")}
            for k, v in sizes.get("bytes_by_dtype", {}).items()
        ],
        "parent_bytes_by_dtype": [
            {"dtype": k, "text": format_metric(v, "size_bytes")}
            for k, v in sizes.get("parent_bytes_by_dtype", {}).items()
        ],
        "lines": lines,
        "changed": [{"module": k, "how": v} for k, v in list(changed.items())[:50]],
    }


def _latency_text(text: str, row: pd.Series) -> str:
    """The median latency with its spread, flagged when the spread is large."""
    iqr = row.get("latency_iqr_ms")
    if iqr is None or pd.isna(iqr):
        return text
    note = ", noisy: other load on the machine" if row.get("latency_noisy") is True else ""
    return f"{text} (IQR {format_metric(float(iqr), 'latency_ms')}{note})"


def details_state(registry: ModelRegistry, names: list[str]) -> dict[str, Any]:
    """What the browser draws for ``names`` (JSON-able)."""
    if not names:
        return {"mode": "empty", "message": "Select a model in any view, or set reg.selected"}
    table = registry.metrics()
    info = registry.metric_info
    metrics = numeric_metrics(table.loc[names])
    if len(names) == 1:
        name = names[0]
        record = registry.record(name)
        chain = [
            {
                "name": r.name,
                "operation": r.operation,
                "params": json_value(r.params),
            }
            for r in path_steps(registry.record, name)
        ]
        rows = [
            {
                "metric": m,
                "value": json_value(table.loc[name, m]),
                "text": (_latency_text if m == "latency_ms" else lambda t, _r: t)(
                    format_metric(json_value(table.loc[name, m]), m, info.get(m)), table.loc[name]
                ),
                "kind": metric_kind(m, info.get(m)),
                "description": METRIC_HELP.get(m, ""),
            }
            for m in metrics
        ]
        return {
            "mode": "one",
            "name": name,
            "parent": record.parent,
            "chain": chain,
            "metrics": rows,
            "sizes": size_explanation(record.info.get("sizes"), table.loc[name]),
        }

    shown = names[:MAX_MODELS]
    charts, comparison, varying = selection_charts(registry, shown)
    return {
        "mode": "many",
        "names": shown,
        "more": len(names) - len(shown),
        "warning": differences_sentence(comparison),
        "varying": varying,
        "comparability": [
            {
                "parameter": str(p),
                "status": row["status"],
                "values": [json_value(row[n]) for n in shown],
            }
            for p, row in comparison.iterrows()
        ],
        "charts": [json_value(c.to_dict()) for c in charts],
    }


class SelectionDetails(RegistryView):
    """Details of the registry's selected models, following ``reg.selected``.

    Examples
    --------
    >>> details = cnc.SelectionDetails(reg)
    >>> reg.selected = ["base-prune-0.3", "base-prune-0.5", "base-prune-0.7"]
    >>> details.charts()[0]  # the altair chart of the first metric  # doctest: +SKIP
    """

    _esm = bundle("details")
    # What the browser draws for the selection (details_state), Python -> browser.
    details = traitlets.Dict().tag(sync=True)

    def __init__(self, registry: ModelRegistry, **kwargs: Any) -> None:
        super().__init__(registry, **kwargs)
        self.observe(self._refresh, names="selected")
        self.observe_registry(self._refresh, "revision")
        self._refresh()

    def _refresh(self, _change: Any = None) -> None:
        self.details = details_state(self.registry, list(self.selected))

    def charts(self) -> list[alt.Chart]:
        """The bar charts shown for the current selection, as altair charts (offline)."""
        names = list(self.selected)[:MAX_MODELS]
        charts = selection_charts(self.registry, names)[0] if len(names) > 1 else []
        return [offline(c) for c in charts]
