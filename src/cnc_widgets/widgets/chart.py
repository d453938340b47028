"""VegaChart: an altair chart drawn by the vega-embed bundled into the views, with no CDN.

altair's default renderer loads vega-embed from a CDN, so its charts show "Error loading
script" offline and in exported reports. The charts the library returns
(:func:`cnc_widgets.formatting.charts.offline`) display through this widget instead; the
widget state carries the spec, so a report draws the chart with no kernel and no network.
"""

from __future__ import annotations

import html
from typing import Any

import anywidget
import traitlets

from ._bundle import bundle


class VegaChart(anywidget.AnyWidget):
    """Draw ``chart`` (an altair chart or a Vega-Lite dict) with the bundled vega.

    Parameters
    ----------
    chart
        An altair chart, or its ``to_dict()``. ``.chart`` gives the altair chart back.

    Examples
    --------
    >>> VegaChart(cmp.histogram_chart("features.1"))  # doctest: +SKIP
    """

    _esm = bundle("chart")
    spec = traitlets.Dict().tag(sync=True)

    def __init__(self, chart: Any, **kwargs: Any) -> None:
        spec = chart if isinstance(chart, dict) else chart.to_dict()
        super().__init__(spec=spec, **kwargs)
        self.chart = chart

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        bundle_ = super()._repr_mimebundle_(**kwargs)
        if bundle_ is None:
            return None
        data, metadata = bundle_ if isinstance(bundle_, tuple) else (bundle_, {})
        # Where no widget runs (GitHub, a report whose widget state was not saved): say what
        # stands here instead of a blank.
        title = self.spec.get("title") or _first_title(self.spec) or "chart"
        text = title if isinstance(title, str) else title.get("text", "chart")
        note = (
            f"<p class='cnc-static-summary'>Chart: {html.escape(str(text))} (drawn by the "
            "cnc_widgets chart widget; run the notebook, or export it with execute=True)</p>"
        )
        return {**data, "text/html": note}, metadata


def _first_title(spec: dict) -> Any:
    for key in ("vconcat", "hconcat", "concat", "layer"):
        for part in spec.get(key, []):
            if isinstance(part, dict) and part.get("title"):
                return part["title"]
    return None
