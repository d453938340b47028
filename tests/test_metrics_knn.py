"""Blocked cosine k-nearest-neighbour search and kNN agreement."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from cnc_widgets.metrics import (
    knn_agreement,
    knn_agreement_sweep,
    knn_indices,
    knn_search,
    neighbour_jaccard,
)


def _angles(degrees):
    rad = np.deg2rad(np.asarray(degrees, dtype=float))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def _direct_knn_sets(h, k):
    """Full N x N cosine similarity in float64, self removed; sets of the k most similar."""
    u = h / np.linalg.norm(h, axis=1, keepdims=True)
    sims = u @ u.T
    np.fill_diagonal(sims, -np.inf)
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in sims]


def _direct_agreement(h_a, h_b, k):
    sets_a, sets_b = _direct_knn_sets(h_a, k), _direct_knn_sets(h_b, k)
    return np.mean([len(a & b) / len(a | b) for a, b in zip(sets_a, sets_b, strict=True)])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    h_a = rng.normal(size=(300, 16)).astype(np.float32)
    h_b = (h_a + 0.7 * rng.normal(size=h_a.shape)).astype(np.float32)
    return h_a, h_b


def test_known_neighbours_on_a_circle():
    h = _angles([0, 10, 100, 115, 300]) * np.array([[1.0], [3.0], [0.5], [2.0], [1.0]])
    idx = knn_indices(h, 2)
    # Sorted most similar first; lengths of the vectors do not matter.
    assert idx.tolist() == [[1, 4], [0, 4], [3, 1], [2, 1], [0, 1]]


def test_matches_sklearn_brute_force(data):
    h, _ = data
    k = 10
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(h)
    dist, ref = nn.kneighbors(h)
    # Tie-free check: the gap at the k-th boundary is far above float32 rounding.
    assert np.min(dist[:, k] - dist[:, k - 1]) > 1e-6
    ours = knn_indices(h, k)
    for i in range(len(h)):
        expected = set(ref[i].tolist()) - {i}
        assert len(expected) == k, "sklearn returned the instance itself"
        assert set(ours[i].tolist()) == expected
    sims, _ = knn_search(h, h, k, exclude_self=True)
    np.testing.assert_allclose(1 - sims, dist[:, 1:], atol=1e-5)


def test_blocking_does_not_change_results(data):
    h, _ = data
    small = knn_search(h, h, 15, exclude_self=True, block_bytes=1)  # one row per block
    medium = knn_search(h, h, 15, exclude_self=True, block_bytes=40_000)
    large = knn_search(h, h, 15, exclude_self=True, block_bytes=2**30)
    for other in (medium, large):
        np.testing.assert_array_equal(small[1], other[1])
        # Different matmul shapes may round the float32 similarities differently.
        np.testing.assert_allclose(small[0], other[0], atol=1e-6)


def test_self_excluded_by_index_with_duplicate_rows():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(20, 4))
    h[10] = h[3]  # an exact duplicate: similarity 1 to 3, just like 3 to itself
    h[11] = h[3]
    idx = knn_indices(h, 3)
    for i in range(20):
        assert i not in idx[i]
    assert set(idx[3][:2].tolist()) == {10, 11}
    assert set(idx[10][:2].tolist()) == {3, 11}


def test_zero_norm_rows_give_valid_neighbours_without_nan():
    rng = np.random.default_rng(2)
    h = rng.normal(size=(12, 3))
    h[[4, 7]] = 0.0
    sims, idx = knn_search(h, h, 5, exclude_self=True)
    assert np.isfinite(sims).all()
    assert (idx >= 0).all() and (idx < 12).all()
    assert 4 not in idx[4] and 7 not in idx[7]
    # A zero row is similarity 0 to everything.
    np.testing.assert_array_equal(sims[4], np.zeros(5, dtype=np.float32))
    assert 0.0 <= knn_agreement(h, h * 2, 5) <= 1.0


def test_k_too_large_raises_naming_k_and_n():
    h = np.eye(5)
    with pytest.raises(ValueError, match=r"k=5.*N=5"):
        knn_indices(h, 5)
    with pytest.raises(ValueError, match=r"k=0"):
        knn_indices(h, 0)
    with pytest.raises(ValueError, match=r"k=7.*N=5"):
        knn_agreement(h, h, 7)


def test_mismatched_instances_raise():
    with pytest.raises(ValueError, match=r"\(5, 2\).*\(6, 2\)"):
        knn_agreement(np.ones((5, 2)), np.ones((6, 2)), 2)


def test_nan_embeddings_rejected():
    h = np.ones((4, 2))
    h[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        knn_indices(h, 2)


def test_knn_agreement_hand_built_half():
    # a: neighbours {1}, {0}, {3}, {2}; b: {1}, {0}, {1}, {0}: Jaccards 1, 1, 0, 0.
    h_a = _angles([0, 10, 100, 110])
    h_b = _angles([0, 10, 100, 300])
    assert knn_agreement(h_a, h_b, 1) == pytest.approx(0.5)


def test_knn_agreement_self_and_scaled_is_one(data):
    h, _ = data
    assert knn_agreement(h, h, 10) == 1.0
    assert knn_agreement(torch.from_numpy(h), torch.from_numpy(3 * h), 10) == 1.0


def test_knn_agreement_matches_direct_sets(data):
    h_a, h_b = data
    for k in (1, 7, 30):
        assert knn_agreement(h_a, h_b, k) == pytest.approx(_direct_agreement(h_a, h_b, k))


def test_neighbour_jaccard_prefixes():
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    b = np.array([[2, 1, 9, 3], [8, 7, 6, 5]])
    got = neighbour_jaccard(a, b, ks=[1, 2, 4])
    # Row 0: k=1 {1} vs {2}: 0; k=2 {1,2} vs {2,1}: 1; k=4 {1,2,3,4} vs {1,2,3,9}: 3/5.
    # Row 1: k=1 {5} vs {8}: 0; k=2 {5,6} vs {8,7}: 0; k=4 same set: 1.
    np.testing.assert_allclose(got, [[0.0, 1.0, 0.6], [0.0, 0.0, 1.0]])


def test_sweep_equals_separate_runs_and_clips(data):
    h_a, h_b = data
    sweep = knn_agreement_sweep(h_a, h_b, ks=(5, 20, 1000, 500))
    assert list(sweep.index) == [5, 20, 299]  # 500 and 1000 clip to N - 1 = 299
    assert sweep.index.name == "k" and sweep.name == "knn_agreement"
    for k in (5, 20):
        assert sweep[k] == pytest.approx(knn_agreement(h_a, h_b, k), abs=1e-12)
    # With every other instance as neighbour the sets coincide.
    assert sweep[299] == 1.0


def test_sweep_is_blocking_independent(data):
    h_a, h_b = data
    a = knn_agreement_sweep(h_a, h_b, ks=(3, 10, 40), block_bytes=1)
    b = knn_agreement_sweep(h_a, h_b, ks=(3, 10, 40))
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def _exact_lists(h, k):
    """Float64 cosine neighbours, equal similarities by ascending index (lexsort)."""
    x = np.asarray(h, dtype=np.float64)
    norms = np.sqrt((x * x).sum(1))
    out = []
    for i in range(len(x)):
        sims = (x * x[i]).sum(1) / (norms * norms[i])
        sims[i] = -np.inf
        out.append(np.lexsort((np.arange(len(x)), -sims))[:k])
    return np.array(out)


def _exact_agreement(h_a, h_b, k):
    la, lb = _exact_lists(h_a, k), _exact_lists(h_b, k)
    return np.mean(
        [len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(la, lb, strict=True)]
    )


def test_near_ties_give_the_float64_neighbours():
    # Ten directions, each instance a copy perturbed by ~1e-7: similarities within a group
    # differ below float32 resolution, so only an exact computation orders them.
    rng = np.random.default_rng(3)
    base = rng.normal(size=(10, 32))
    h = base[np.arange(400) % 10] + 3e-7 * rng.normal(size=(400, 32))
    h_b = base[np.arange(400) % 10] + 3e-7 * rng.normal(size=(400, 32))
    for k in (5, 39, 60):
        np.testing.assert_array_equal(knn_indices(h, k), _exact_lists(h, k))
    assert knn_agreement(h, h_b, 10) == pytest.approx(_exact_agreement(h, h_b, 10), abs=1e-12)
    sweep = knn_agreement_sweep(h, h_b, ks=(10, 20))
    assert sweep.loc[10] == pytest.approx(knn_agreement(h, h_b, 10), abs=1e-12)


def test_saturated_tanh_mlp_neighbours_are_exact(digits):
    # A tanh MLP on the digits with a steep first layer: most hidden units sit at +-1, so
    # many instances share (nearly) the same embedding.
    torch.manual_seed(0)
    x = digits.test_inputs.flatten(1)
    model = torch.nn.Sequential(torch.nn.Linear(64, 24), torch.nn.Tanh(), torch.nn.Linear(24, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), digits.test_labels).backward()
        opt.step()
    with torch.no_grad():
        model[0].weight.mul_(8.0)
        h_a = model[1](model[0](x)).numpy()
        model[0].weight.mul_(1.5)
        h_b = model[1](model[0](x)).numpy()
    np.testing.assert_array_equal(knn_indices(h_a, 10), _exact_lists(h_a, 10))
    expected = _exact_agreement(h_a, h_b, 10)
    assert knn_agreement(h_a, h_b, 10) == pytest.approx(expected, abs=1e-12)
    sweep = knn_agreement_sweep(h_a, h_b, ks=(5, 10, 50))
    assert sweep.loc[10] == pytest.approx(expected, abs=1e-12)


def test_search_runs_in_ieee_float32_whatever_the_matmul_precision(monkeypatch):
    """The rounding margin assumes float32 products: "medium" would allow bfloat16."""
    rng = np.random.default_rng(4)
    base = rng.normal(size=(10, 32))
    h = base[np.arange(200) % 10] + 3e-7 * rng.normal(size=(200, 32))
    seen = []
    mm = torch.mm

    def spy(*args, **kwargs):
        seen.append(torch.get_float32_matmul_precision())
        return mm(*args, **kwargs)

    monkeypatch.setattr(torch, "mm", spy)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        got = knn_indices(h, 12)
        assert torch.get_float32_matmul_precision() == "medium"  # the user's setting is back
    finally:
        torch.set_float32_matmul_precision(before)
    assert seen and set(seen) == {"highest"}
    np.testing.assert_array_equal(got, _exact_lists(h, 12))
