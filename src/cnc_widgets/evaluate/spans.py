"""Extractive answers: from a QA model's start and end logits to character spans of the context.

The rule is the one of transformers' question-answering examples (``utils_qa.py``,
``postprocess_qa_predictions``): take the ``n_best`` highest start logits and the ``n_best``
highest end logits, keep the pairs with ``start <= end`` and at most ``max_answer_length``
tokens, and score a pair by ``start_logit + end_logit``; the best pair is the answer. Two
differences, both deliberate: the top ``n_best`` are taken among the context tokens (utils_qa
takes them over the whole sequence and then drops those outside the context, so it can find
no span where one exists), and one feature is one question (no stride over long contexts).

SQuAD 2.0 "no answer": the null score is ``start_logit + end_logit`` at the null position (the
``[CLS]`` token, index 0); with ``no_answer_threshold`` set, the answer is empty when
``null_score - best_span_score > no_answer_threshold`` (utils_qa's
``null_score_diff_threshold``, default 0.0 there). ``None`` (the default) always answers with
the best span, as SQuAD v1.1 models do.

Example
-------
>>> import numpy as np
>>> start = np.array([[0.0, 0.0, 5.0, 1.0]]); end = np.array([[0.0, 0.0, 1.0, 4.0]])
>>> offsets = np.array([[[0, 0], [0, 0], [0, 5], [6, 11]]])
>>> mask = np.array([[False, False, True, True]])
>>> decode_spans(start, end, offsets, mask, ["hello world"]).text
['hello world']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Spans", "context_mask", "decode_spans"]


@dataclass
class Spans:
    """Decoded answers, one per question.

    ``start_char``/``end_char`` index the context (end exclusive) and ``start_token``/
    ``end_token`` the sequence (end inclusive); all four are -1 for "no answer", whose
    ``text`` is ``""``. ``score`` is the best span's start + end logit (NaN when the context
    has no valid span) and ``null_score`` the null position's.
    """

    text: list[str]
    start_char: np.ndarray
    end_char: np.ndarray
    start_token: np.ndarray
    end_token: np.ndarray
    score: np.ndarray
    null_score: np.ndarray

    def __len__(self) -> int:
        return len(self.text)


def context_mask(encoding, context_sequence: int = 1) -> np.ndarray:
    """Boolean (N, L) mask of the context tokens of a tokenizer's batch encoding.

    ``encoding`` comes from a fast tokenizer called on (question, context) pairs;
    ``context_sequence`` is the pair member holding the context (1: the second).

    Example
    -------
    >>> enc = tok(questions, contexts, return_offsets_mapping=True)  # doctest: +SKIP
    >>> mask = context_mask(enc)  # doctest: +SKIP
    """
    if not hasattr(encoding, "sequence_ids"):
        raise TypeError(
            "context_mask needs a fast tokenizer's BatchEncoding (it has .sequence_ids(i)); "
            "call the tokenizer on (questions, contexts) with a PreTrainedTokenizerFast"
        )
    n = len(encoding["input_ids"])
    return np.array(
        [[s == context_sequence for s in encoding.sequence_ids(i)] for i in range(n)], dtype=bool
    )


def _as_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def decode_spans(
    start_logits,
    end_logits,
    offsets,
    context: np.ndarray,
    contexts: Sequence[str],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    no_answer_threshold: float | None = None,
    null_index: int = 0,
) -> Spans:
    """Best answer span per question (see the module docstring for the rule).

    Parameters
    ----------
    start_logits, end_logits
        (N, L) arrays or tensors from a QA head.
    offsets
        (N, L, 2) character offsets of each token in its own text (the tokenizer's
        ``offset_mapping``); only the context tokens' offsets are read.
    context
        (N, L) boolean mask of the context tokens (:func:`context_mask`).
    contexts
        The N context strings the offsets index.
    n_best, max_answer_length
        Candidates per side and the longest answer in tokens (utils_qa's 20 and 30).
    no_answer_threshold
        ``None``: always answer. A float: answer ``""`` when the null score beats the best
        span's score by more than this.
    null_index
        Position of the null token (``[CLS]``).

    Example
    -------
    >>> spans = decode_spans(out.start_logits, out.end_logits, enc["offset_mapping"],
    ...                      context_mask(enc), contexts)  # doctest: +SKIP
    """
    start = _as_array(start_logits, "start_logits").astype(np.float64)
    end = _as_array(end_logits, "end_logits").astype(np.float64)
    offs = _as_array(offsets, "offsets")
    mask = _as_array(context, "context").astype(bool)
    if start.ndim != 2 or start.shape != end.shape or mask.shape != start.shape:
        raise ValueError(
            f"start_logits {start.shape}, end_logits {end.shape} and the context mask "
            f"{mask.shape} must all be (N, L)"
        )
    if offs.shape != (*start.shape, 2):
        raise ValueError(
            f"offsets must be (N, L, 2) like the tokenizer's offset_mapping, got {offs.shape}"
        )
    if len(contexts) != len(start):
        raise ValueError(f"{len(start)} rows of logits but {len(contexts)} contexts")
    if n_best < 1 or max_answer_length < 1:
        raise ValueError("n_best and max_answer_length must be at least 1")
    n, length = start.shape
    k = min(n_best, length)
    s_masked = np.where(mask, start, -np.inf)
    e_masked = np.where(mask, end, -np.inf)
    # Stable descending order: among equal logits the earlier token ranks first.
    s_idx = np.argsort(-s_masked, axis=1, kind="stable")[:, :k]
    e_idx = np.argsort(-e_masked, axis=1, kind="stable")[:, :k]
    s_val = np.take_along_axis(s_masked, s_idx, 1)
    e_val = np.take_along_axis(e_masked, e_idx, 1)
    scores = s_val[:, :, None] + e_val[:, None, :]
    span_len = e_idx[:, None, :] - s_idx[:, :, None] + 1
    valid = np.isfinite(scores) & (span_len >= 1) & (span_len <= max_answer_length)
    scores = np.where(valid, scores, -np.inf)
    flat = scores.reshape(n, -1).argmax(1)
    rows = np.arange(n)
    best = scores.reshape(n, -1)[rows, flat]
    has_span = np.isfinite(best)
    best_start = np.where(has_span, s_idx[rows, flat // k], -1)
    best_end = np.where(has_span, e_idx[rows, flat % k], -1)
    null = start[:, null_index] + end[:, null_index]
    answer = has_span.copy()
    if no_answer_threshold is not None:
        answer &= ~(null - best > float(no_answer_threshold))
    start_tok = np.where(answer, best_start, -1)
    end_tok = np.where(answer, best_end, -1)
    start_char = np.where(answer, offs[rows, np.maximum(start_tok, 0), 0], -1).astype(np.int64)
    end_char = np.where(answer, offs[rows, np.maximum(end_tok, 0), 1], -1).astype(np.int64)
    text = [contexts[i][start_char[i] : end_char[i]] if answer[i] else "" for i in range(n)]
    return Spans(
        text=text,
        start_char=start_char,
        end_char=end_char,
        start_token=start_tok.astype(np.int64),
        end_token=end_tok.astype(np.int64),
        score=np.where(has_span, best, np.nan),
        null_score=null,
    )
