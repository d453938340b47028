"""The prediction diff of answer tasks (``generation``, ``extractive_qa``): its payload.

One row per question (``cmp.instances``): both models' answers, EM and F1 per model, the
F1 change and whether the answers agree; the summary per compared model is the task's own
(``task.summary``: EM, F1, agreement). The question is the instance preview; the context
and, for extractive QA, both models' answer spans in it travel for the first
:data:`EMBED_CONTEXTS` questions and on request for the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..registry import ModelRegistry
from ._diff_lm import dynamic_note
from ._wire import pack

EMBED_CONTEXTS = 50
ANSWER_LIMIT = 300  # characters of one answer sent; the view truncates further
CONTEXT_LIMIT = 5000

SCORE_COLUMNS = ("em_a", "em_b", "f1_a", "f1_b", "f1_change")

EXPLAIN = {
    "exact_match": "fraction of questions whose answer equals a gold answer after SQuAD v1.1 "
    "normalisation (lower case, no punctuation, no articles, single spaces)",
    "f1": "mean over questions of the best token-overlap F1 against the gold answers (SQuAD v1.1)",
    "f1_change": "mean F1 of the model minus the reference's, on the same questions",
    "agreement": "fraction of questions both models answer alike (normalised answers equal)",
    "error_jaccard": "|missed by both| / |missed by either| (exact match 0); 1 when neither misses",
    "mean_kl": "mean over questions of the token KL(p_ref || p_model) along the reference's "
    "answer (nats)",
}


def _cut(texts: Iterable[Any], limit: int) -> list[str]:
    return [str(t)[:limit] for t in texts]


def answers_view(registry: ModelRegistry, names: Sequence[str]) -> dict[str, Any]:
    """Per compared model: both answers, the scores per question and the task's summary."""
    data = registry.data
    task = registry.task
    models = []
    reference_answers: list[str] = []
    for name in names[1:]:
        cmp = registry.compare(names[0], name)
        table = cmp.instances
        reference_answers = _cut(table["output_a"], ANSWER_LIMIT)
        summary = task.summary(registry.result(names[0]), registry.result(name), data, table)
        models.append(
            {
                "name": name,
                "output_b": _cut(table["output_b"], ANSWER_LIMIT),
                "columns": {
                    c: pack(table[c].to_numpy(np.float64), "float32") for c in SCORE_COLUMNS
                },
                "same_output": pack(table["same_output"].to_numpy(), "uint8"),
                "summary": {k: float(v) for k, v in summary.items()},
                "notes": [n for n in (dynamic_note(registry, x) for x in (names[0], name)) if n],
            }
        )
    default_ids = data.ids == [str(i) for i in range(len(data))]
    return {
        "task": task.name,
        "n": len(data),
        "ids": None if default_ids else list(data.ids),
        "gold": _cut((" | ".join(g) for g in task.opts["references"]), ANSWER_LIMIT),
        "output_a": reference_answers,
        "models": models,
        "explain": EXPLAIN,
        "embedded": min(len(data), EMBED_CONTEXTS),
    }


def answer_spans(registry: ModelRegistry, name: str, rows: Sequence[int]) -> list:
    """Extractive QA: ``[start, end)`` characters of ``name``'s answer in each row's context
    (``None`` where it gives no answer), the same characters its answer string holds."""
    task = registry.task
    result = registry.result(name)
    answers = task.answers(result)
    tokens = np.asarray(result["span_tokens"])
    offsets = task.opts["offsets"]
    spans = []
    for r in rows:
        s, e = (int(v) for v in tokens[r])
        if s < 0 or not answers[r]:
            spans.append(None)
        else:
            spans.append([int(offsets[r][s][0]), int(offsets[r][e][1])])
    return spans


def context_rows(
    registry: ModelRegistry, names: Sequence[str], rows: Iterable[int]
) -> dict[str, Any]:
    """The contexts of ``rows`` (extractive QA) and every model's answer span in them:
    ``{"rows", "contexts": [str] | None, "spans": [per model in names: [[s, e] | None]]}``."""
    data = registry.data
    task = registry.task
    picked = [r for r in dict.fromkeys(int(r) for r in rows) if 0 <= r < len(data)]
    if task.name != "extractive_qa":
        return {"rows": picked, "contexts": None, "spans": None}
    contexts = task.opts["contexts"]
    return {
        "rows": picked,
        "contexts": [contexts[r][:CONTEXT_LIMIT] for r in picked],
        "spans": [answer_spans(registry, name, picked) for name in names],
    }
