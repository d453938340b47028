"""Comparisons on a worker: a ``ResultSource`` detached from the registry that travels
(pickled) to a ``concurrent.futures`` or Dask worker, and the task that runs there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from ..evaluate.data import EvalData
from ..evaluate.heap import roomy_heap
from ..metrics.adversarial import CraftedCache
from ..provenance import ModelRecord
from .core import Comparison


class MissingMeasure(LookupError):
    """Raised by :class:`DetachedSource` in lookup-only mode for a measure not computed yet."""


class DetachedSource:
    """A :class:`ResultSource` over copies of what one comparison needs, for a worker.

    It holds the evaluation set, both models' results, the models (and the float ancestors
    a transfer attack needs) and the provenance records, and nothing else, so it pickles and
    travels to a ``concurrent.futures`` or Dask worker. Measures computed there are kept in
    :attr:`computed` for the caller to store; with ``lookup`` set, values come from that
    function and an uncached measure raises :class:`MissingMeasure` instead of computing.
    """

    def __init__(
        self,
        data: EvalData,
        results: dict[str, dict[str, Any]],
        models: dict[str, nn.Module],
        records: dict[str, ModelRecord],
        lookup: Callable[[str, str, str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self._data, self._results, self._models, self._records = data, results, models, records
        self._lookup = lookup
        self.computed: list[tuple[str, str, str, dict[str, Any], Any]] = []
        # Models are shared with the registry until this source travels (a pickled copy
        # is its own): model() copies them first, so tasks side by side in threads never
        # hook or switch the modes of one module together.
        self._own: set[str] = set()
        # Crafted attacks of this pair only: a transfer to b reuses what a's attack made.
        self.crafted_attacks = CraftedCache()

    @property
    def data(self) -> EvalData | None:
        return self._data

    def result(self, name: str) -> dict[str, Any]:
        return self._results[name]

    def model(self, name: str) -> nn.Module:
        if name not in self._models:
            raise KeyError(f"model {name!r} was not sent with this comparison")
        if name not in self._own:
            self._models[name] = copy.deepcopy(self._models[name])
            self._own.add(name)
        return self._models[name]

    def record(self, name: str) -> ModelRecord:
        return self._records[name]

    def cached_measure(
        self, a: str, b: str, measure: str, params: dict[str, Any], compute: Callable[[], Any]
    ) -> Any:
        if self._lookup is not None:
            return self._lookup(a, b, measure, params)
        for ca, cb, cm, cp, value in self.computed:
            if (ca, cb, cm, cp) == (a, b, measure, params):
                return value
        value = compute()
        self.computed.append((a, b, measure, params, value))
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "_lookup": None,
            "_own": set(self._models),
            "crafted_attacks": CraftedCache(),  # never ship crafted batches to a worker
        }


def summary_task(
    source: DetachedSource, a: str, b: str, k: int, adversarial: bool
) -> tuple[dict[str, Any], list[tuple[str, str, str, dict[str, Any], Any]]]:
    """One row of ``compare_many`` computed on a worker, with the measures it computed."""
    with roomy_heap():
        row = Comparison(source, a, b).summary(k=k, adversarial=adversarial)
    return row, source.computed
