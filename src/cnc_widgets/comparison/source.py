"""What a comparison needs from whoever holds the models: the ``ResultSource`` protocol."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import nn

from ..evaluate.data import EvalData
from ..metrics.adversarial import CraftedCache
from ..provenance import ModelRecord


class ResultSource(Protocol):
    """What a comparison needs from whoever holds the models: :class:`ModelRegistry` is one.

    A narrow interface, so that a comparison can be built and tested without a registry
    and the registry can import this module without this module importing it.
    """

    @property
    def data(self) -> EvalData | None:
        """The evaluation set both models were run on."""

    def result(self, name: str) -> dict[str, Any]:
        """Cached evaluation arrays of ``name`` (``logits``, ``embeddings``, ...)."""

    def model(self, name: str) -> nn.Module:
        """The module registered as ``name`` (raises ``KeyError`` without weights)."""

    def record(self, name: str) -> ModelRecord:
        """The provenance record of ``name`` (its ``parent``)."""

    def cached_measure(
        self, a: str, b: str, measure: str, params: dict[str, Any], compute: Callable[[], Any]
    ) -> Any:
        """``compute()`` once per (weights of a and b, data, measure, params), then cached."""

    #: The adversarial batches crafted for this source's models
    #: (:class:`~cnc_widgets.metrics.adversarial.CraftedCache`), reused by transfer attacks;
    #: a source without one crafts anew for every comparison.
    crafted_attacks: CraftedCache
