"""Small charts as altair specifications: drawn in the browser by the views, returned to users.

Plain functions from tables to ``altair`` charts. The views send ``chart.to_dict()`` to
the browser, where vega-embed (bundled into the widget, no CDN) draws it; users get the
same chart object from :meth:`Comparison.histogram_chart` and can restyle it.

altair's own renderer fetches vega-embed from a CDN ("Error loading script" offline and in
exported reports), so a chart returned to users is made :func:`offline`: still the same
altair class (``to_dict``, ``properties``, ``save`` all work), but displayed by the views'
chart widget, which draws it with the bundled vega.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any, TypeVar

import altair as alt
import numpy as np
import pandas as pd

__all__ = ["histogram_chart", "offline", "sensitivity_chart"]

# Where the widget that draws a chart offline lives. The core never imports the views; a
# chart being displayed means a notebook is there, so the views are loaded only then, by
# name, as the package's __init__ loads them.
OFFLINE_VIEW = ("cnc_widgets.widgets.chart", "VegaChart")
C = TypeVar("C", bound=alt.TopLevelMixin)


class OfflineDisplay:
    """Mixin for altair chart classes: display through the bundled vega, not a CDN."""

    def _repr_mimebundle_(self, *args: Any, **kwargs: Any) -> Any:
        module, name = OFFLINE_VIEW
        view = getattr(import_module(module), name)(self)
        return view._repr_mimebundle_(**kwargs)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # The class is made on the fly: pickle the plain altair chart, and mark it again.
        plain = self.copy(deep=False)  # type: ignore[attr-defined]
        object.__setattr__(plain, "__class__", type(self).__bases__[1])
        return offline, (plain,)


@cache
def _offline_class(cls: type) -> type:
    return type(cls.__name__, (OfflineDisplay, cls), {"__module__": cls.__module__})


def offline(chart: C) -> C:
    """``chart``, displayed in notebooks and reports by the library's bundled vega.

    It stays an instance of its altair class, and so do its copies (``.properties()``,
    ``.interactive()``...): only how it displays changes.

    Examples
    --------
    >>> chart = offline(alt.Chart(frame).mark_bar().encode(x="a", y="b"))
    >>> chart  # drawn with no network  # doctest: +SKIP
    """
    if not isinstance(chart, OfflineDisplay):
        # altair's __setattr__ files attributes as chart properties: go around it.
        object.__setattr__(chart, "__class__", _offline_class(type(chart)))
    return chart


# Colour-blind-safe pair (Okabe-Ito blue and vermillion): reference, compared model.
PAIR_COLOURS = ["#0072B2", "#D55E00"]


def _weights_frame(weights: pd.DataFrame, names: tuple[str, str]) -> pd.DataFrame:
    parts = []
    for column, name in zip(("a", "b"), names, strict=True):
        part = weights[["left", "right"]].copy()
        part["model"] = name
        part["count"] = weights[column].to_numpy()
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _activations_frame(
    activations: pd.DataFrame, names: tuple[str, str]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """In-range bins of both models, and how many sampled outputs fell outside them."""
    parts, outside = [], {}
    for column, name in zip(("a", "b"), names, strict=True):
        if activations.empty or column not in activations.index.get_level_values("model"):
            continue
        part = activations.loc[column].reset_index()
        finite = np.isfinite(part["left"]) & np.isfinite(part["right"])
        outside[name] = int(part.loc[~finite, "count"].sum())
        part = part.loc[finite, ["left", "right", "count"]].copy()
        part["model"] = name
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return frame, outside


def _panel(frame: pd.DataFrame, names: tuple[str, str], title: str, y_title: str) -> alt.Chart:
    colour = alt.Color(
        "model:N",
        scale=alt.Scale(domain=list(names), range=PAIR_COLOURS),
        legend=alt.Legend(title=None, orient="top"),
    )
    return (
        alt.Chart(frame, title=title)
        .mark_bar(opacity=0.55, binSpacing=0)
        .encode(
            x=alt.X("left:Q", title="value", scale=alt.Scale(zero=False)),
            x2="right:Q",
            y=alt.Y("count:Q", title=y_title, stack=None, scale=alt.Scale(type="symlog")),
            # Bars rise from zero: without it a ranged x makes Vega-Lite draw thin slivers.
            y2=alt.datum(0),
            color=colour,
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("left:Q", format=".4g", title="from"),
                alt.Tooltip("right:Q", format=".4g", title="to"),
                alt.Tooltip("count:Q", title="count"),
            ],
        )
        .properties(width=300, height=130)
    )


def histogram_chart(
    histograms: dict[str, pd.DataFrame],
    names: tuple[str, str] = ("a", "b"),
    module: str = "",
) -> alt.VConcatChart | alt.Chart:
    """Weight and activation histograms of one module in two models, overlaid.

    Parameters
    ----------
    histograms
        :meth:`Comparison.histograms` of the module: ``weights`` (common bins of both
        models' parameters) and ``activations`` (each model's streaming histogram of its
        outputs over the whole evaluation set).
    names
        Labels of the reference and the compared model.
    module
        The module's dotted name, for the titles.

    Returns
    -------
    altair.VConcatChart or altair.Chart
        Weights above, activations below (the activation panel is left out when neither
        model recorded activations for the module, the weight panel for a module without
        parameters). Counts use a symlog axis, so the spike
        at zero of a pruned model and the spread of the rest are both readable.

    Examples
    --------
    >>> chart = cmp.histogram_chart("classifier.1")
    >>> chart.save("hist.html")  # doctest: +SKIP
    """
    label = f" of {module}" if module else ""
    weights = (
        None
        if histograms["weights"].empty  # a module without parameters (ReLU, pooling)
        else _panel(
            _weights_frame(histograms["weights"], names),
            names,
            f"weights{label}",
            "elements (symlog)",
        )
    )
    activations = histograms["activations"]
    frame, outside = _activations_frame(activations, names)
    if frame.empty:
        if weights is None:
            raise ValueError(
                f"module {module!r} has no parameters and no activations recorded at "
                "evaluation in either model: nothing to draw"
            )
        return offline(weights)
    note = ", ".join(f"{k}: {v}" for k, v in outside.items() if v)
    subtitle = [f"outside the bins: {note}"] if note else []
    if activations.attrs.get("bins") == "per-model" and len(outside) == 2:
        subtitle.append("each model's own bins")
    title = alt.TitleParams(f"activations{label}, all instances", subtitle=subtitle)
    acts = _panel(frame, names, "", "sampled outputs (symlog)").properties(title=title)
    if weights is None:
        return offline(acts)
    return offline(alt.vconcat(weights, acts).resolve_scale(color="shared"))


def sensitivity_chart(table: pd.DataFrame, names: tuple[str, str] = ("a", "b")) -> alt.Chart:
    """Bars of ``recovered`` per measured group of :meth:`Comparison.sensitivity`.

    One bar per group that got a restore run, worst (most recovered) first; 1.0 means
    restoring that group alone brings back the reference's quality on the rows. The
    tooltip gives the proxy, the parameters and the quality restored.

    Examples
    --------
    >>> chart = cmp.sensitivity_chart()  # doctest: +SKIP
    """
    frame = table.loc[table["recovered"].notna(), ["group", "by", "params", "proxy"]].copy()
    measured = table["recovered"].notna()
    frame["recovered"] = table.loc[measured, "recovered"].astype(float)
    frame["quality_restored"] = table.loc[measured, "quality_restored"].astype(float)
    attrs = table.attrs
    metric = attrs.get("metric", "quality")
    subtitle = (
        f"{metric}: {names[0]} {attrs['quality_a']:.4g}, {names[1]} {attrs['quality_b']:.4g} "
        f"on {len(attrs.get('rows', []))} rows; {attrs.get('restore_runs', 0)} restore runs"
        if "quality_a" in attrs
        else ""
    )
    return offline(
        alt.Chart(
            frame,
            title=alt.TitleParams(
                f"quality gap closed by restoring each group from {names[0]}",
                subtitle=[subtitle] if subtitle else [],
            ),
        )
        .mark_bar(color=PAIR_COLOURS[0])
        .encode(
            x=alt.X("recovered:Q", title="recovered (fraction of the gap)"),
            y=alt.Y("group:N", sort=list(frame["group"]), title=None),
            tooltip=[
                alt.Tooltip("group:N"),
                alt.Tooltip("by:N", title="grouped by"),
                alt.Tooltip("recovered:Q", format=".1%"),
                alt.Tooltip("quality_restored:Q", format=".4g", title=f"{metric} restored"),
                alt.Tooltip("proxy:Q", format=".3g", title="relative weight change"),
                alt.Tooltip("params:Q", format=",", title="parameters"),
            ],
        )
        .properties(width=320, height=alt.Step(18))
    )
