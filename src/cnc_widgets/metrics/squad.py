"""SQuAD answer scores: exact match and token-overlap F1 between answer strings.

Definitions follow docs/definitions.md and the official scripts. Normalisation is SQuAD
v1.1's (lowercase; drop ASCII punctuation, ``string.punctuation`` as the script does, so
curly quotes and other non-ASCII marks stay; drop the articles a/an/the as whole words;
collapse whitespace). Scores are the maximum over the gold answers. Answers that normalise to
nothing follow SQuAD 2.0: an empty gold or an empty prediction scores 1 only when both are
empty, and empty golds are dropped when the question also has a non-empty one (a question
with no gold at all, or only empty ones, is a "no answer" question).

Example
-------
>>> exact_match("The Eiffel Tower!", ["eiffel tower"])
1.0
>>> round(f1("Eiffel Tower in Paris", ["the Eiffel Tower"]), 3)
0.667
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = ["exact_match", "exact_match_scores", "f1", "f1_scores", "normalize_answer"]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, no punctuation, no articles, single spaces."""
    if not isinstance(text, str):
        raise TypeError(f"an answer must be a string, got {type(text).__name__}")
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(golds: str | Sequence[str]) -> list[str]:
    if isinstance(golds, str):
        golds = [golds]
    golds = list(golds)
    for g in golds:
        if not isinstance(g, str):
            raise TypeError(
                f"gold answers must be strings (one list of strings per question), got "
                f"{type(g).__name__}"
            )
    # SQuAD 2.0: empty golds count only when the question has no other answer.
    kept = [g for g in golds if normalize_answer(g)]
    return kept or [""]


def _f1_one(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals some normalised gold answer, else 0.0.

    Example
    -------
    >>> exact_match("an apple", ["Apple", "pear"])
    1.0
    """
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds(golds)))


def f1(prediction: str, golds: str | Sequence[str]) -> float:
    """Token-overlap F1 (bag-of-token counts) of the prediction, the maximum over the golds.

    Example
    -------
    >>> f1("", [""]), f1("", ["Paris"])
    (1.0, 0.0)
    """
    pred = normalize_answer(prediction).split()
    return max(_f1_one(pred, normalize_answer(g).split()) for g in _golds(golds))


def _check_lengths(predictions: Sequence[str], references: Sequence) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError(
            "pass a list of predictions and a list of references (one string or list of gold "
            "strings per prediction), not a single string"
        )
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references: give one "
            "reference (a string or a list of gold strings) per prediction"
        )


def exact_match_scores(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]]
) -> np.ndarray:
    """Exact match per prediction, a float64 array of 0.0 and 1.0.

    Example
    -------
    >>> exact_match_scores(["Paris", "Rome"], [["paris"], ["Milan", "Turin"]]).tolist()
    [1.0, 0.0]
    """
    _check_lengths(predictions, references)
    scores = [exact_match(p, g) for p, g in zip(predictions, references, strict=True)]
    return np.array(scores, np.float64)


def f1_scores(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> np.ndarray:
    """Token-overlap F1 per prediction, a float64 array in 0..1.

    Example
    -------
    >>> f1_scores(["new york city"], [["New York"]]).round(2).tolist()
    [0.8]
    """
    _check_lengths(predictions, references)
    return np.array([f1(p, g) for p, g in zip(predictions, references, strict=True)], np.float64)
