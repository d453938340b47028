"""What the answer tasks share: text answers scored against gold strings (SQuAD).

Generated answers (:mod:`.generation`) and extracted spans (:mod:`.extractive_qa`) differ
only in how a model's output becomes one answer string per question; from there on the
definitions are the same (docs/definitions.md): ``exact_match`` and ``f1`` with SQuAD v1.1
normalisation, the maximum over the gold answers, fractions 0..1 (SQuAD2: an empty gold or
an empty answer scores 1 only when both are empty). A prediction is the normalised answer;
an error is an exact match of 0; two models agree on a question when their normalised
answers are equal.

Examples
--------
>>> check_references([["Paris", "paris, France"], "Rome"], 2, "generation")
[['Paris', 'paris, France'], ['Rome']]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .. import metrics as m
from ..metrics.squad import exact_match_scores, f1_scores, normalize_answer
from .base import Task


def check_references(references: Any, n: int, task: str) -> list[list[str]]:
    """One list of gold strings per row (a lone string becomes a list of one), checked."""
    if references is None:
        raise ValueError(
            f"set_data(task={task!r}) needs references=: one list of gold answer strings "
            "per row (an empty string or list for a question with no answer)"
        )
    if isinstance(references, str) or not isinstance(references, Sequence):
        raise ValueError(
            f"references must be a list with one entry per row (a string or a list of "
            f"strings), got {type(references).__name__}"
        )
    if len(references) != n:
        raise ValueError(
            f"references has {len(references)} entries but inputs has {n} rows; pass one "
            "list of gold answers per row"
        )
    out = []
    for i, golds in enumerate(references):
        golds = [golds] if isinstance(golds, str) else golds
        if not isinstance(golds, Sequence) or not all(isinstance(g, str) for g in golds):
            raise ValueError(
                f"references[{i}] must be a string or a list of strings, got {golds!r}"
            )
        out.append([str(g) for g in golds])
    return out


class AnswerTask(Task):
    """Base of the tasks whose models answer questions with text.

    Subclasses say how a result becomes answer strings (:meth:`answers`); the scores,
    predictions, errors, agreement and the per-question table are defined here. The gold
    answers are the ``references`` option (``self.opts["references"]``).
    """

    quality = "f1"
    better: ClassVar[dict[str, str]] = {
        "exact_match": "higher",
        "f1": "higher",
        "answered": "higher",
    }

    def labels(self, labels: Any, n: int, options: Mapping[str, Any]) -> Any:
        if labels is not None:
            raise ValueError(
                f"task={self.name!r} takes no labels: pass the gold answers as references= "
                "(one list of strings per row)"
            )
        return np.zeros(n, dtype=np.int64)

    def answers(self, result: Mapping[str, Any]) -> list[str]:
        """The answer string of every question (``""``: no answer)."""
        raise NotImplementedError

    def scores(self, answers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Exact match and F1 per question (float64, 0 or 1 and 0..1)."""
        refs = self.opts["references"]
        return exact_match_scores(answers, refs), f1_scores(answers, refs)

    def finish(self, name: str, arrays: Mapping[str, np.ndarray], data: Any) -> dict:
        answers = self.answers(arrays)
        em, f1 = self.scores(answers)
        return {
            "exact_match": float(em.mean()),
            "f1": float(f1.mean()),
            "answered": float(np.mean([bool(normalize_answer(a)) for a in answers])),
        }

    # -- comparison ---------------------------------------------------------------------

    def predictions(self, result: Mapping[str, Any]) -> np.ndarray:
        """The normalised answers, a numpy ``str`` array (stored without pickling)."""
        return np.array([normalize_answer(a) for a in self.answers(result)], dtype=str)

    def errors(self, result: Mapping[str, Any], data: Any) -> np.ndarray:
        return self.scores(self.answers(result))[0] == 0

    def agreement(self, ra: Mapping, rb: Mapping, data: Any) -> float:
        return float(np.mean(self.predictions(ra) == self.predictions(rb)))

    def error_jaccard(self, ra: Mapping, rb: Mapping, data: Any) -> float:
        return m.jaccard(self.errors(ra, data), self.errors(rb, data))

    def instance_table(
        self, ra: Mapping, rb: Mapping, data: Any, paired: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """One row per question: both answers, their scores and whether they are the same.

        Columns ``reference`` (the gold answers joined by `` | ``), ``output_a``,
        ``output_b`` (the answers as given), ``em_a``, ``em_b``, ``f1_a``, ``f1_b``,
        ``f1_change`` (b - a), ``same_output`` (normalised answers equal), then the task's
        own columns and those of its paired measure.
        """
        out_a, out_b = self.answers(ra), self.answers(rb)
        em_a, f1_a = self.scores(out_a)
        em_b, f1_b = self.scores(out_b)
        table = pd.DataFrame(
            {
                "reference": [" | ".join(g) for g in self.opts["references"]],
                "output_a": out_a,
                "output_b": out_b,
                "em_a": em_a,
                "em_b": em_b,
                "f1_a": f1_a,
                "f1_b": f1_b,
                "f1_change": f1_b - f1_a,
                "same_output": self.predictions(ra) == self.predictions(rb),
            },
            index=pd.Index(list(data.ids), name="id"),
        )
        for column, values in self.extra_columns(ra, rb).items():
            table[column] = values
        if paired is not None:
            for column in paired.columns:
                table[column] = paired[column].to_numpy()
        if isinstance(data.instances, list):
            table.insert(0, "instance", data.instances)
        return table

    def extra_columns(self, ra: Mapping, rb: Mapping) -> dict[str, np.ndarray]:
        """The task's own per-question columns of :meth:`instance_table`."""
        return {}

    def summary(
        self, ra: Mapping, rb: Mapping, data: Any, instances: pd.DataFrame
    ) -> dict[str, Any]:
        row = {
            "exact_match_a": float(instances["em_a"].mean()),
            "exact_match_b": float(instances["em_b"].mean()),
            "f1_a": float(instances["f1_a"].mean()),
            "f1_b": float(instances["f1_b"].mean()),
            "f1_change": float(instances["f1_change"].mean()),
            "agreement": float(instances["same_output"].mean()),
            "error_jaccard": self.error_jaccard(ra, rb, data),
        }
        if "kl_mean" in instances.columns:
            row["mean_kl"] = float(instances["kl_mean"].mean())
        return row
