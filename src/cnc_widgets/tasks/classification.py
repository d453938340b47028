"""Classification: one row of logits per instance, accuracy, argmax predictions.

The first task and the default of :meth:`ModelRegistry.set_data`. Definitions follow
docs/definitions.md: prediction = argmax of the logits, errors = prediction != label,
agreement and error Jaccard over instances, KL(p_a || p_b) in nats per instance.

Examples
--------
>>> import torch
>>> from cnc_widgets.tasks import get_task
>>> task = get_task("classification")
>>> task.batch_outputs(torch.tensor([[0.1, 2.0], [3.0, -1.0]]), None)["logits"].shape
torch.Size([2, 2])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from .. import metrics as m
from ..evaluate.model_io import extract_logits
from .base import Task


class Classification(Task):
    """A model that returns class logits ``(B, C)`` (or one logit: a binary classifier)."""

    name = "classification"
    quality = "accuracy"
    better: ClassVar[dict[str, str]] = {"accuracy": "higher"}
    outputs = ("logits",)

    def labels(self, labels: Any, n: int, options: Mapping[str, Any]) -> Any:
        from ..evaluate.data import check_labels

        if labels is None:
            raise ValueError(
                "set_data needs labels for a classifier: one integer class index per row "
                "(for a language model pass task='causal_lm')"
            )
        return check_labels(labels, n)

    def batch_outputs(self, output: Any, batch: Any) -> dict[str, torch.Tensor]:
        return {"logits": extract_logits(output)}

    def finish(self, name: str, arrays: Mapping[str, np.ndarray], data: Any) -> dict:
        from ..evaluate.errors import EvaluationError

        logits = arrays["logits"]
        width, top = logits.shape[1], int(data.labels.max())
        if data.classes_given and width != len(data.classes):
            raise EvaluationError(
                f"model {name!r} outputs {width} logits per instance but set_data named "
                f"{len(data.classes)} classes; pass one name per output as classes= (or none, "
                "to number the outputs) or fix the model's head"
            )
        if top >= width:
            raise EvaluationError(
                f"model {name!r} outputs {width} logits per instance but the labels go up to "
                f"{top}; labels must be indices of the model's outputs (0 to {width - 1})"
            )
        return {"accuracy": float(np.mean(logits.argmax(1) == data.labels))}

    # -- comparison ---------------------------------------------------------------------

    def check_pair(self, a: str, b: str, ra: Mapping, rb: Mapping) -> None:
        ca, cb = ra["logits"].shape[1], rb["logits"].shape[1]
        if ca != cb:
            raise ValueError(
                f"model {a!r} has {ca} classes but {b!r} has {cb}; compare models that "
                "share one label set"
            )

    def predictions(self, result: Mapping[str, Any]) -> np.ndarray:
        return result["logits"].argmax(1)

    def errors(self, result: Mapping[str, Any], data: Any) -> np.ndarray:
        return self.predictions(result) != data.labels

    def agreement(self, ra: Mapping, rb: Mapping, data: Any) -> float:
        return m.agreement(self.predictions(ra), self.predictions(rb))

    def error_jaccard(self, ra: Mapping, rb: Mapping, data: Any) -> float:
        return m.error_jaccard(self.predictions(ra), self.predictions(rb), data.labels)

    def instance_table(self, ra: Mapping, rb: Mapping, data: Any) -> pd.DataFrame:
        table = m.instance_table(ra["logits"], rb["logits"], data.labels, ids=data.ids)
        names = np.asarray(data.class_names(ra["logits"].shape[1]), dtype=object)
        # Class names beside the indices, so a person reads "positive", not 2.
        for column in ("label", "pred_a", "pred_b"):
            if column in table.columns:
                at = table.columns.get_loc(column) + 1
                table.insert(at, f"{column}_name", names[table[column].to_numpy()])
        if isinstance(data.instances, list):
            table.insert(0, "instance", data.instances)
        return table

    def attack_objective(self) -> Any:
        """Cross-entropy of the labels; a flip is a correctly classified instance whose
        predicted class changes (:data:`cnc_widgets.metrics.adversarial.CLASSIFICATION`)."""
        from ..metrics.adversarial import CLASSIFICATION

        return CLASSIFICATION

    def summary(
        self, ra: Mapping, rb: Mapping, data: Any, instances: pd.DataFrame
    ) -> dict[str, Any]:
        acc_a = float(np.mean(self.predictions(ra) == data.labels))
        acc_b = float(np.mean(self.predictions(rb) == data.labels))
        return {
            "accuracy_a": acc_a,
            "accuracy_b": acc_b,
            "accuracy_change": acc_b - acc_a,
            "agreement": self.agreement(ra, rb, data),
            "error_jaccard": self.error_jaccard(ra, rb, data),
            "mean_kl": float(instances["kl"].mean()),
            "mean_mse": float(instances["mse"].mean()),
        }
