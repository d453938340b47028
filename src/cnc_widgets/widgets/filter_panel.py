"""FilterPanel: a brushable histogram per numeric metric that writes ``reg.filters``.

Compress and Compare's Filter tab in the notebook: brush a range on a metric's histogram
and every view dims the models outside it (``data-filtered="out"``); a click on the
histogram without dragging, or "Clear", resets.
"""

from __future__ import annotations

from typing import Any

import traitlets

from ..formatting import metric_kind
from ..registry import ModelRegistry
from ._bundle import bundle
from ._metrics import numeric_metrics
from ._sync import json_value
from ._view import RegistryView


def filter_table(registry: ModelRegistry) -> dict[str, Any]:
    """Model names, each numeric metric's values (None where missing) and how to print them."""
    table = registry.metrics()
    metrics = numeric_metrics(table)
    return {
        "names": [str(n) for n in table.index],
        "metrics": {m: [json_value(v) for v in table[m]] for m in metrics},
        "info": {
            m: {
                **json_value(registry.metric_info.get(m, {})),
                "kind": metric_kind(m, registry.metric_info.get(m)),
            }
            for m in metrics
        },
    }


class FilterPanel(RegistryView):
    """Histograms of the registry's metrics; brushing one sets ``reg.filters``.

    Examples
    --------
    >>> panel = cnc.FilterPanel(reg)
    >>> panel  # brush accuracy 0.9..1.0, then:  # doctest: +SKIP
    >>> reg.filters
    {'accuracy': (0.9, 1.0)}
    >>> reg.metrics(filtered=True)  # doctest: +SKIP

    Traits: ``table`` (names, each metric's values and how to print them; Python -> browser),
    and :class:`RegistryView`'s ``filters`` (written by brushing), ``filtered_out``, ``selected``.
    """

    _esm = bundle("filter_panel")
    table = traitlets.Dict().tag(sync=True)

    def __init__(self, registry: ModelRegistry, **kwargs: Any) -> None:
        super().__init__(registry, **kwargs)
        self._refresh()
        self.observe_registry(self._refresh, "revision")

    def _refresh(self, _change: Any = None) -> None:
        self.table = filter_table(self.registry)
