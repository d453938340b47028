"""Prediction agreement, error overlap, change matrix and the per-instance table."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cnc_widgets.metrics import (
    agreement,
    change_matrix,
    error_jaccard,
    group_accuracy_change,
    instance_table,
    jaccard,
)

LABELS = np.array([0, 0, 1, 1, 2, 2])
PRED_A = np.array([0, 1, 1, 0, 2, 2])  # errors at 1, 3
PRED_B = np.array([0, 1, 2, 1, 2, 0])  # errors at 1, 2, 5


def test_agreement_counts_equal_predictions():
    # Equal at 0, 1, 4 of 6.
    assert agreement(PRED_A, PRED_B) == pytest.approx(0.5)
    assert agreement(PRED_A, PRED_A) == 1.0
    assert agreement(torch.tensor(PRED_A), torch.tensor(PRED_B)) == pytest.approx(0.5)


def test_error_jaccard_hand_built_sets():
    # E_a = {1, 3}, E_b = {1, 2, 5}: intersection 1, union 4.
    assert error_jaccard(PRED_A, PRED_B, LABELS) == pytest.approx(0.25)
    assert error_jaccard(PRED_A, PRED_A, LABELS) == 1.0
    disjoint = np.array([1, 0, 1, 1, 2, 2])  # error only at 0
    assert error_jaccard(PRED_A, disjoint, LABELS) == 0.0


def test_error_jaccard_both_error_free_is_one():
    assert error_jaccard(LABELS, LABELS.copy(), LABELS) == 1.0
    # One model perfect, the other not: nothing shared.
    assert error_jaccard(LABELS, PRED_A, LABELS) == 0.0


def test_jaccard_of_masks():
    assert jaccard([True, True, False, False], [True, False, True, False]) == pytest.approx(1 / 3)
    assert jaccard([False, False], [False, False]) == 1.0


def test_change_matrix_known_counts():
    m = change_matrix(PRED_A, PRED_B, n_classes=3)
    expected = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]])
    np.testing.assert_array_equal(m.to_numpy(), expected)
    assert m.index.name == "pred_a" and m.columns.name == "pred_b"
    assert m.to_numpy().sum() == len(LABELS)
    assert np.trace(m.to_numpy()) == 3  # = agreement * N


def test_change_matrix_names_and_unused_classes():
    m = change_matrix([0, 0], [0, 0], n_classes=3, classes=["neg", "neu", "pos"])
    assert list(m.index) == ["neg", "neu", "pos"] and list(m.columns) == ["neg", "neu", "pos"]
    assert m.loc["neg", "neg"] == 2 and m.to_numpy().sum() == 2


def test_change_matrix_rejects_class_out_of_range():
    with pytest.raises(ValueError, match="n_classes"):
        change_matrix([0, 3], [0, 1], n_classes=3)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_instance_table_matches_direct_formulas():
    za = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 3.0]])
    zb = np.array([[1.0, 1.5, 0.0], [0.0, 1.0, 2.0]])
    y = np.array([0, 1])
    t = instance_table(za, zb, y, ids=["x", "y"])
    pa, pb = _softmax(za), _softmax(zb)
    assert list(t.index) == ["x", "y"] and t.index.name == "id"
    assert t["pred_a"].tolist() == [0, 2] and t["pred_b"].tolist() == [1, 2]
    np.testing.assert_allclose(t["conf_true_a"], pa[[0, 1], y], rtol=1e-12)
    np.testing.assert_allclose(t["conf_true_b"], pb[[0, 1], y], rtol=1e-12)
    np.testing.assert_allclose(t["conf_true_diff"], pb[[0, 1], y] - pa[[0, 1], y], rtol=1e-12)
    np.testing.assert_allclose(t["conf_true_ratio"], pb[[0, 1], y] / pa[[0, 1], y], rtol=1e-12)
    kl = (pa * np.log(pa / pb)).sum(axis=1)
    np.testing.assert_allclose(t["kl"], kl, rtol=1e-12)
    np.testing.assert_allclose(t["mse"], ((za - zb) ** 2).mean(axis=1), rtol=1e-12)
    # First row by hand: squared differences 1, 0.25, 0 over 3 classes.
    assert t["mse"].iloc[0] == pytest.approx(1.25 / 3)
    assert t["correct_a"].tolist() == [True, False]
    assert t["correct_b"].tolist() == [False, False]


def test_instance_table_self_comparison_is_identity():
    z = np.random.default_rng(0).normal(size=(20, 5)) * 10
    y = np.arange(20) % 5
    t = instance_table(z, z, y)
    assert (t["kl"] == 0).all() and (t["mse"] == 0).all()
    assert (t["conf_true_ratio"] == 1).all() and (t["conf_true_diff"] == 0).all()
    assert (t["pred_a"] == t["pred_b"]).all()
    assert isinstance(t.index, pd.RangeIndex)


def test_instance_table_stable_for_extreme_logits():
    za = np.array([[1000.0, -1000.0], [-800.0, 800.0]])
    zb = np.array([[-1000.0, 1000.0], [-800.0, 800.0]])
    t = instance_table(za, zb, [0, 0])
    assert np.isfinite(t[["kl", "mse", "conf_true_ratio"]].to_numpy()).all()
    # KL(p_a || p_b) ~ 2000 nats for the flipped row; 0 for the identical one.
    assert t["kl"].iloc[0] == pytest.approx(2000.0)
    assert t["kl"].iloc[1] == 0.0
    # p_a(y) underflows to 0 in row 1, yet the ratio stays exact: exp(0).
    assert t["conf_true_ratio"].iloc[1] == 1.0


def test_instance_table_accepts_low_precision_tensors():
    z = torch.tensor([[1.0, 2.0], [3.0, 0.0]], dtype=torch.bfloat16)
    t = instance_table(z, z.float() + 1.0, torch.tensor([1, 0]))
    # A constant shift of the logits leaves the probabilities unchanged.
    assert t["kl"].abs().max() < 1e-12
    assert t["mse"].tolist() == [1.0, 1.0]


def test_instance_table_class_count_mismatch_names_both_counts():
    with pytest.raises(ValueError, match=r"10 classes.*3") as info:
        instance_table(np.zeros((4, 10)), np.zeros((4, 3)), [0, 1, 2, 0])
    assert "label set" in str(info.value)


def test_length_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\)"):
        instance_table(np.zeros((4, 3)), np.zeros((5, 3)), [0] * 4)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        agreement([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="shapes"):
        error_jaccard([0, 1], [0, 1], [0, 1, 1])


def test_group_accuracy_change_per_class():
    g = group_accuracy_change(PRED_A, PRED_B, LABELS, names=["cat", "dog", "eel"])
    assert list(g.index) == ["cat", "dog", "eel"]
    assert g["count"].tolist() == [2, 2, 2]
    # class 0: a 1/2, b 1/2; class 1: a 1/2, b 1/2; class 2: a 1, b 1/2.
    np.testing.assert_allclose(g["accuracy_a"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(g["accuracy_b"], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(g["change"], [0.0, 0.0, -0.5])


def test_group_accuracy_change_custom_groups():
    groups = np.array(["short", "long", "short", "long", "short", "long"])
    g = group_accuracy_change(PRED_A, PRED_B, LABELS, groups=groups)
    # long = {1, 3, 5}: a right at 5, b right at 3; short = {0, 2, 4}: a 3/3, b 2/3.
    assert g.loc["long", "count"] == 3
    assert g.loc["long", "accuracy_a"] == pytest.approx(1 / 3)
    assert g.loc["long", "accuracy_b"] == pytest.approx(1 / 3)
    assert g.loc["long", "change"] == 0.0
    assert math.isclose(g.loc["short", "change"], 2 / 3 - 1)


def test_difference_argmax_matches_direct_formula_and_known_answers():
    za = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 3.0], [1.0, 1.0, 0.0]])
    zb = np.array([[1.0, 1.5, 0.0], [0.0, 1.0, 2.0], [0.0, 2.0, 0.0]])
    t = instance_table(za, zb, [1, 1, 2])  # the true labels play no part
    pa, pb = _softmax(za), _softmax(zb)
    top = pa.argmax(axis=1)  # the third row ties: numpy's argmax takes class 0 first
    rows = np.arange(3)
    np.testing.assert_allclose(t["difference_argmax"], pb[rows, top] - pa[rows, top], rtol=1e-12)
    # Known answer: row 3, class 0 under a is e/(2e+1); under b it is 1/(e^2+2).
    e = np.e
    assert t["difference_argmax"].iloc[2] == pytest.approx(1 / (e**2 + 2) - e / (2 * e + 1))
    assert (instance_table(za, za, [0, 0, 0])["difference_argmax"] == 0).all()
    # Extreme logits: a certain reference whose class b drops to nothing gives exactly -1.
    far = instance_table([[1000.0, -1000.0]], [[-1000.0, 1000.0]], [0])
    assert far["difference_argmax"].iloc[0] == -1.0
