"""Small charts as altair specifications: drawn in the browser by the views, returned to users.

Plain functions from tables to ``altair`` charts. The views send ``chart.to_dict()`` to
the browser, where vega-embed (bundled into the widget, no CDN) draws it; users get the
same chart object from :meth:`Comparison.histogram_chart` and can restyle it.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

__all__ = ["histogram_chart"]

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
        return weights
    note = ", ".join(f"{k}: {v}" for k, v in outside.items() if v)
    subtitle = [f"outside the bins: {note}"] if note else []
    if activations.attrs.get("bins") == "per-model" and len(outside) == 2:
        subtitle.append("each model's own bins")
    title = alt.TitleParams(f"activations{label}, all instances", subtitle=subtitle)
    acts = _panel(frame, names, "", "sampled outputs (symlog)").properties(title=title)
    if weights is None:
        return acts
    return alt.vconcat(weights, acts).resolve_scale(color="shared")
