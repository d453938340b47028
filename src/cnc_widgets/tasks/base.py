"""The task protocol: what one kind of model (a classifier, a language model, ...) means.

A task answers every question the rest of the library used to answer by assuming a
classifier: what a batch's model output becomes in the cached per-instance arrays, the
task's quality metrics and which direction is better, what the behaviour measures of a
comparison compare (predictions, errors, per-instance table), and what a view shows per
instance. Evaluation, :class:`~cnc_widgets.comparison.Comparison`, the scatter's default
axes and the diff's payload ask the task; a new kind of model is one module under
``tasks/`` with one :class:`Task` subclass, registered in ``tasks/__init__.py``.

Arrays a task produces are per instance (rows first) so evaluation can shard and merge
them (concatenation along rows) and the store can keep them by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from torch import nn

    from ..evaluate.data import EvalData
    from ..metrics.adversarial import Objective


class Task:
    """Base class of a task. Subclasses set the class attributes and override the methods.

    Attributes
    ----------
    name
        The ``task=`` name of :meth:`ModelRegistry.set_data`.
    quality
        The quality metric the views show by default (the scatter's y axis, the provenance
        graph's colour, the "keeps 95% of a's quality" of a restore search).
    better
        Direction of every quality metric: ``"higher"`` or ``"lower"``.
    outputs
        Names of the per-instance arrays :meth:`batch_outputs` returns, as cached.
    """

    name: ClassVar[str] = ""
    quality: ClassVar[str] = ""
    better: ClassVar[dict[str, str]] = {}
    outputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        #: The checked options of ``set_data`` (see :meth:`options`), for :meth:`run`.
        self.opts: dict[str, Any] = dict(options or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- data -------------------------------------------------------------------------

    def labels(self, labels: Any, n: int, options: Mapping[str, Any]) -> Any:
        """The labels :meth:`ModelRegistry.set_data` keeps: checked, one per row."""
        raise NotImplementedError

    def options(self, options: Mapping[str, Any], n: int) -> dict[str, Any]:
        """Check the task's own ``set_data`` keywords; the JSON-able ones are fingerprinted
        and stored, the rest (a tokenizer) stay in memory under ``"_"``-prefixed keys."""
        if options:
            raise ValueError(
                f"set_data(task={self.name!r}) takes no option(s) {sorted(options)}; "
                "see help(reg.set_data)"
            )
        return {}

    def check_inputs(self, inputs: Any, options: Mapping[str, Any]) -> None:
        """Raise when ``set_data``'s inputs cannot serve this task (checked :meth:`options`
        at hand), so the mistake shows at ``set_data`` rather than at evaluation."""

    # -- evaluation ---------------------------------------------------------------------

    def run(self, model: nn.Module, batch: Any, call: Any) -> Any:
        """The model's output on one batch; ``call(model, batch)`` is the plain forward."""
        return call(model, batch)

    def batch_outputs(self, output: Any, batch: Any) -> dict[str, torch.Tensor]:
        """The per-instance tensors (rows first) this batch adds to the cached arrays."""
        raise NotImplementedError

    def finish(self, name: str, arrays: Mapping[str, np.ndarray], data: EvalData) -> dict:
        """Quality metrics of one evaluated model; raise ``EvaluationError`` on a mismatch
        between the model's outputs and the data (the message says what to fix)."""
        raise NotImplementedError

    def record_arrays(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Arrays derived from the outputs that the cached record keeps beside them: what
        later needs something only evaluation has (generation: answers decoded with the
        tokenizer, which a reopened store does not hold). No pickled objects (the store
        loads arrays with ``allow_pickle=False``): strings as a numpy ``str`` array."""
        return {}

    def metric_columns(self) -> list[str]:
        """Quality columns every ``metrics()`` table has for this task (NaN until evaluated)."""
        return list(self.better)

    # -- comparison ---------------------------------------------------------------------

    def check_pair(self, a: str, b: str, ra: Mapping, rb: Mapping) -> None:
        """Raise when two evaluated models cannot be compared under this task."""

    def predictions(self, result: Mapping[str, Any]) -> np.ndarray:
        """One prediction per unit the behaviour measures count (instance or token)."""
        raise NotImplementedError

    def errors(self, result: Mapping[str, Any], data: EvalData) -> np.ndarray:
        """Boolean error mask over the same units as :meth:`predictions`."""
        raise NotImplementedError

    def agreement(self, ra: Mapping, rb: Mapping, data: EvalData) -> float:
        """Fraction of units on which both models predict the same thing."""
        raise NotImplementedError

    def instance_table(self, ra: Mapping, rb: Mapping, data: EvalData) -> pd.DataFrame:
        """One row per instance: what each model did with it and how that changed.

        A task with a :attr:`paired_measure` takes it as a fourth argument (``None`` when
        the models are not in the session)."""
        raise NotImplementedError

    #: The name of a measure that runs both models together (generation: the token KL of
    #: b along a's answers), computed by :meth:`paired` and cached by the comparison;
    #: ``None``: the instance table needs only the cached results.
    paired_measure: ClassVar[str | None] = None

    def paired(
        self, model_a: nn.Module, model_b: nn.Module, ra: Mapping, inputs: Any, data: EvalData
    ) -> Any:
        """The :attr:`paired_measure` of two models (a cacheable value: a DataFrame)."""
        raise NotImplementedError

    def error_jaccard(self, ra: Mapping, rb: Mapping, data: EvalData) -> float:
        """Jaccard overlap of the two models' error sets (1.0 when neither errs)."""
        raise NotImplementedError

    def attack_objective(self) -> Objective:
        """What ``adversarial_overlap`` attacks: the loss an attack ascends and what counts
        as a flip (:class:`cnc_widgets.metrics.adversarial.Objective`)."""
        raise ValueError(f"task {self.name!r} defines no adversarial attack")

    def summary(
        self, ra: Mapping, rb: Mapping, data: EvalData, instances: pd.DataFrame
    ) -> dict[str, Any]:
        """The task's scalar columns of ``compare_many``, in order: qualities of a and b and
        their change, agreement, error Jaccard, mean divergences (``instances`` is
        :meth:`instance_table`)."""
        raise NotImplementedError

    # -- views --------------------------------------------------------------------------

    def default_axes(self) -> dict[str, str]:
        """The scatter's default axes and the quality direction."""
        return {
            "x": "size_bytes",
            "y": self.quality,
            "x_better": "lower",
            "y_better": self.better.get(self.quality, "higher"),
        }
