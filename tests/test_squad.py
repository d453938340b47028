"""SQuAD exact match and F1 against direct copies of the official evaluation scripts."""

from __future__ import annotations

import doctest
import re
import string
from collections import Counter

import numpy as np
import pytest

from cnc_widgets.metrics import squad


# --- the official SQuAD v1.1 evaluate script (evaluate-v1.1.py), its scoring functions --------
def v11_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def v11_f1_score(prediction, ground_truth):
    prediction_tokens = v11_normalize_answer(prediction).split()
    ground_truth_tokens = v11_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def v11_exact_match_score(prediction, ground_truth):
    return v11_normalize_answer(prediction) == v11_normalize_answer(ground_truth)


def v11_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


# --- the official SQuAD 2.0 script (evaluate-v2.0.py): empty answers ----------------------------
def v20_compute_f1(a_gold, a_pred):
    gold_toks = v11_normalize_answer(a_gold).split()
    pred_toks = v11_normalize_answer(a_pred).split()
    common = Counter(gold_toks) & Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def v20_scores(golds, pred):
    gold_answers = [a for a in golds if v11_normalize_answer(a)]
    if not gold_answers:
        gold_answers = [""]
    em = max(int(v11_normalize_answer(a) == v11_normalize_answer(pred)) for a in gold_answers)
    f1 = max(v20_compute_f1(a, pred) for a in gold_answers)
    return em, f1


NONEMPTY = [
    ("The Eiffel Tower", ["Eiffel Tower"]),
    ("an apple a day", ["apple day"]),
    ("the theatre", ["theatre"]),  # "the" inside a word stays
    ("Paris, France.", ["paris france"]),
    ("New York City", ["New York", "NYC", "the city of New York"]),
    ("one two two three", ["two two two one"]),  # bag-of-token counts, not sets
    ("Café  Müller", ["café müller!"]),
    ("“quoted” answer", ['"quoted" answer']),  # curly quotes are not string.punctuation
    ("Ünïcödé  THE Straße", ["ünïcödé straße"]),
    ("1,000 people", ["1000 people", "a thousand"]),
    ("mid-year", ["mid year", "midyear"]),
    ("completely wrong", ["Sydney", "Hill Top"]),
    ("A", ["a b"]),  # prediction normalises to nothing: SQuAD2 rule
    ("Hume Highway Hume", ["Hume Highway"]),
]


@pytest.mark.parametrize(("pred", "golds"), NONEMPTY)
def test_equals_official_v11_script(pred, golds):
    em = v11_max_over_ground_truths(v11_exact_match_score, pred, golds)
    f1 = v11_max_over_ground_truths(v11_f1_score, pred, golds)
    assert squad.normalize_answer(pred) == v11_normalize_answer(pred)
    assert squad.exact_match(pred, golds) == float(em)
    if v11_normalize_answer(pred):
        assert squad.f1(pred, golds) == pytest.approx(f1, abs=1e-15)
    assert squad.f1(pred, golds) == pytest.approx(v20_scores(golds, pred)[1], abs=1e-15)


EMPTY = [
    ("", [""]),
    ("", ["Paris"]),
    ("Paris", [""]),
    ("the", ["an"]),  # both normalise to nothing
    ("", ["", "Paris"]),  # an empty gold is dropped beside a real one
    ("Paris", ["", "Paris"]),
    ("", []),  # no gold at all: a no-answer question
    ("...", ["!"]),
]


@pytest.mark.parametrize(("pred", "golds"), EMPTY)
def test_empty_answers_follow_squad2(pred, golds):
    em, f1 = v20_scores(golds, pred)
    assert squad.exact_match(pred, golds) == float(em)
    assert squad.f1(pred, golds) == float(f1)


def test_hand_values():
    assert squad.f1("", [""]) == 1.0
    assert squad.f1("", ["Paris"]) == 0.0
    assert squad.f1("Paris", [""]) == 0.0
    # pred [eiffel, tower, in, paris], gold [eiffel, tower]: P 1/2, R 1 -> 2/3
    assert squad.f1("Eiffel Tower in Paris", "the Eiffel Tower") == pytest.approx(2 / 3)
    # counts: pred {one:1, two:2, three:1}, gold {two:3, one:1}: overlap 3, P 3/4, R 3/4
    assert squad.f1("one two two three", ["two two two one"]) == pytest.approx(0.75)
    assert squad.normalize_answer("  The  Quick,  brown-fox!! ") == "quick brownfox"


def test_vectorised_equals_scalar():
    preds = [p for p, _ in NONEMPTY + EMPTY]
    refs = [g for _, g in NONEMPTY + EMPTY]
    em = squad.exact_match_scores(preds, refs)
    f1 = squad.f1_scores(preds, refs)
    assert em.dtype == np.float64 and f1.dtype == np.float64 and em.shape == (len(preds),)
    assert em.tolist() == [squad.exact_match(p, g) for p, g in zip(preds, refs, strict=True)]
    assert f1.tolist() == [squad.f1(p, g) for p, g in zip(preds, refs, strict=True)]
    assert ((f1 >= 0) & (f1 <= 1)).all() and set(em.tolist()) <= {0.0, 1.0}
    assert (f1 >= em).all()  # an exact match always has F1 1
    assert 0 < em.mean() < 1 and 0 < f1.mean() < 1


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="one reference"):
        squad.f1_scores(["a", "b"], [["a"]])
    with pytest.raises(TypeError, match="list of predictions"):
        squad.exact_match_scores("abc", ["abc"])
    with pytest.raises(TypeError, match="gold answers must be strings"):
        squad.f1("a", [["a"]])
    with pytest.raises(TypeError, match="must be a string"):
        squad.exact_match(None, ["a"])


def test_docstring_examples():
    result = doctest.testmod(squad)
    assert result.attempted >= 6 and result.failed == 0
