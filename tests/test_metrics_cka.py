"""Exact linear CKA: one-shot, streaming, feature vs instance space, all-layer matrix."""

import ckatorch
import numpy as np
import pytest
import torch

from cnc_widgets.metrics import CKAMatrix, LinearCKA, cka_memory_estimate, linear_cka


def textbook_cka(x, y):
    """Kornblith et al. eq. via HSIC with the centring matrix H = I - 11^T / n."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)) + rng.normal(size=8) * 3
    y = np.tanh(x @ rng.normal(size=(8, 5))) + 0.3 * rng.normal(size=(60, 5))
    return x, y


def test_matches_textbook_formula(xy):
    x, y = xy
    expected = textbook_cka(x, y)
    assert 0.1 < expected < 0.99  # a non-trivial value
    assert linear_cka(x, y) == pytest.approx(expected, abs=1e-10)


def test_matches_independent_package(xy):
    x, y = xy
    theirs = ckatorch.cka_base(
        torch.from_numpy(x), torch.from_numpy(y), kernel="linear", unbiased=False
    ).item()
    assert linear_cka(x, y) == pytest.approx(theirs, abs=1e-10)


def test_identity_invariances_and_sensitivity(xy):
    x, y = xy
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))
    base = linear_cka(x, y)
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(7.5 * x, 0.01 * y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x + 100.0, y - 3.0) == pytest.approx(base, abs=1e-10)
    # Not invariant to anisotropic scaling: the test above would catch a broken formula.
    assert abs(linear_cka(x * np.arange(1, 9), y) - base) > 1e-3


def test_streaming_independent_of_batch_size(xy):
    x, y = xy
    results = []
    for batch in (1, 7, len(x)):
        acc = LinearCKA()
        for start in range(0, len(x), batch):
            acc.update(x[start : start + batch], y[start : start + batch])
        results.append(acc.result())
    assert results[0] == pytest.approx(results[2], abs=1e-12)
    assert results[1] == pytest.approx(results[2], abs=1e-12)
    assert results[2] == pytest.approx(textbook_cka(x, y), abs=1e-10)


def test_feature_and_instance_paths_agree(xy):
    x, y = xy
    feature = linear_cka(x, y, mode="feature")
    instance = linear_cka(x, y, mode="instance")
    assert feature == pytest.approx(instance, abs=1e-12)
    acc = LinearCKA(mode="instance")
    for start in range(0, len(x), 7):
        acc.update(x[start : start + 7], y[start : start + 7])
    assert acc.result() == pytest.approx(feature, abs=1e-12)


def test_auto_mode_uses_instance_space_for_wide_layers():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 50))  # p > N: Gram is smaller than X^T X
    y = rng.normal(size=(20, 4))  # q < N: feature space, rows kept for the mixed pair
    estimate = cka_memory_estimate([50], [4], n=20)
    assert estimate["self_terms"] == 8 * 4 * 4
    assert estimate["cross_terms"] == 0
    assert estimate["rows"] == 8 * 20 * (50 + 4)
    assert estimate["grams"] == 2 * 8 * 20 * 20
    assert linear_cka(x, y) == pytest.approx(textbook_cka(x, y), abs=1e-10)
    assert linear_cka(y, x) == pytest.approx(textbook_cka(y, x), abs=1e-10)


def test_accurate_with_large_means(xy):
    x, y = xy
    # Shift invariance must survive float64 accumulation even with huge offsets.
    assert linear_cka(x + 1e6, y + 1e6) == pytest.approx(linear_cka(x, y), abs=1e-7)
    acc = LinearCKA()
    for start in range(0, len(x), 5):
        acc.update(x[start : start + 5] + 1e6, y[start : start + 5])
    assert acc.result() == pytest.approx(linear_cka(x, y), abs=1e-7)


def test_matrix_matches_pairwise_and_accepts_conv_shapes():
    rng = np.random.default_rng(4)
    n = 40
    conv = rng.normal(size=(n, 3, 4, 4)).astype(np.float32)  # flattened to width 48
    acts_a = {"conv": conv, "fc": rng.normal(size=(n, 6)), "out": rng.normal(size=(n, 3))}
    acts_b = {"fc": acts_a["fc"] + 0.1 * rng.normal(size=(n, 6)), "out": rng.normal(size=(n, 3))}
    acc = CKAMatrix(list(acts_a), list(acts_b))
    for rows in np.array_split(np.arange(n), 3):
        acc.update(
            {k: v[rows] for k, v in acts_a.items()}, [acts_b["fc"][rows], acts_b["out"][rows]]
        )
    got = acc.result()
    assert list(got.index) == ["conv", "fc", "out"] and list(got.columns) == ["fc", "out"]
    for a_name, xa in acts_a.items():
        for b_name, xb in acts_b.items():
            expected = textbook_cka(xa.reshape(n, -1).astype(np.float64), xb)
            assert got.loc[a_name, b_name] == pytest.approx(expected, abs=1e-6)
    # Instance space for the wide conv layer (48 > 40) gives the same matrix.
    inst = CKAMatrix(list(acts_a), list(acts_b), n=n)
    inst.update(acts_a, acts_b)
    assert inst.memory_estimate()["grams"] > 0
    np.testing.assert_allclose(inst.result().to_numpy(), got.to_numpy(), atol=1e-10)


def test_self_comparison_diagonal_is_one():
    rng = np.random.default_rng(5)
    layers = [rng.normal(size=(30, w)) for w in (3, 9, 40)]
    names = ["l0", "l1", "l2"]
    acc = CKAMatrix(names, names, n=30)
    acc.update(layers, layers)
    m = acc.result().to_numpy()
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-12)
    np.testing.assert_allclose(m, m.T, atol=1e-12)


def test_memory_estimate_feature_space():
    est = cka_memory_estimate([10, 20], [30], n=None)
    assert est["self_terms"] == 8 * (100 + 400 + 900)
    assert est["cross_terms"] == 8 * 30 * 30
    assert est["rows"] == 0 and est["grams"] == 0
    assert est["total"] == sum(v for key, v in est.items() if key != "total")


def test_constant_layer_gives_nan_and_bad_inputs_raise(xy):
    x, y = xy
    assert np.isnan(linear_cka(np.ones((10, 3)), y[:10]))
    with pytest.raises(ValueError, match="same instances"):
        linear_cka(x, y[:-1])
    acc = CKAMatrix(["a"], ["b"])
    with pytest.raises(ValueError, match="batch sizes"):
        acc.update([x[:5]], [y[:4]])
    with pytest.raises(ValueError, match="at least 2"):
        acc.result()
    with pytest.raises(ValueError, match="mode"):
        LinearCKA(mode="gram")
