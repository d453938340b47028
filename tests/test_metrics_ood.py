"""Deep Nearest Neighbors OOD scores, flags and their agreement between models."""

import numpy as np
import pytest
import torch

from cnc_widgets.metrics import dknn_scores, jaccard, ood_agreement, ood_flags, ood_split


def direct_scores(x, ref, k):
    """Full cosine-distance matrix in float64; the k-th smallest distance per row."""
    xu = x / np.linalg.norm(x, axis=1, keepdims=True)
    ru = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    dist = 1.0 - xu @ ru.T
    return np.sort(dist, axis=1)[:, k - 1]


def direct_flags(x, ref, held, k, percentile):
    threshold = np.percentile(direct_scores(held, ref, k), percentile)
    return direct_scores(x, ref, k) > threshold


@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(7)
    centre = np.array([4.0, 0.0, 0.0, 0.0])
    ref = rng.normal(size=(200, 4)) + centre
    held = rng.normal(size=(100, 4)) + centre
    evaluated = np.concatenate([rng.normal(size=(50, 4)) + centre, rng.normal(size=(10, 4))])
    return ref, held, evaluated


def test_scores_match_direct_computation(clusters):
    ref, held, _ = clusters
    for k in (1, 5, 50):
        np.testing.assert_allclose(
            dknn_scores(held, ref, k), direct_scores(held, ref, k), atol=1e-6
        )


def test_known_answer_kth_neighbour_distance():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    x = np.array([[2.0, 0.0]])
    # Similarities 1, 0, -1: distances 0, 1, 2 for k = 1, 2, 3.
    for k, expected in ((1, 0.0), (2, 1.0), (3, 2.0)):
        assert dknn_scores(x, ref, k)[0] == pytest.approx(expected, abs=1e-6)
    # k is clipped to the reference size.
    assert dknn_scores(x, ref, 50)[0] == pytest.approx(2.0, abs=1e-6)


def test_flags_match_direct_computation(clusters):
    ref, held, evaluated = clusters
    for k, pct in ((10, 95.0), (3, 80.0)):
        got = ood_flags(evaluated, ref, held, k=k, percentile=pct)
        np.testing.assert_array_equal(got, direct_flags(evaluated, ref, held, k, pct))
    flags = ood_flags(evaluated, ref, held, k=10)
    # The far cluster (last 10 rows, directions all around the origin) is mostly flagged.
    assert flags[50:].sum() >= 7 and flags[:50].sum() <= 10


def test_flags_independent_of_blocking(clusters):
    ref, held, evaluated = clusters
    np.testing.assert_array_equal(
        ood_flags(evaluated, ref, held, k=10, block_bytes=1),
        ood_flags(evaluated, ref, held, k=10),
    )


def test_ood_agreement_matches_direct(clusters):
    ref, held, evaluated = clusters
    rng = np.random.default_rng(8)
    h_a = np.concatenate([ref, held, evaluated])
    h_b = h_a @ rng.normal(size=(4, 4)) + 0.5 * rng.normal(size=h_a.shape)
    splits = {
        "reference": np.arange(200),
        "heldout": np.arange(200, 300),
        "evaluated": np.arange(300, 360),
    }
    k = 10
    fa = direct_flags(h_a[300:], h_a[:200], h_a[200:300], k, 95.0)
    fb = direct_flags(h_b[300:], h_b[:200], h_b[200:300], k, 95.0)
    expected = (fa & fb).sum() / (fa | fb).sum()
    assert 0.0 < expected < 1.0
    assert ood_agreement(h_a, h_b, k=k, **splits) == pytest.approx(expected)
    # evaluated defaults to the rows in neither split; tensors work as well.
    got = ood_agreement(
        torch.from_numpy(h_a),
        torch.from_numpy(h_b),
        k=k,
        reference=splits["reference"],
        heldout=splits["heldout"],
    )
    assert got == pytest.approx(expected)


def test_self_comparison_is_one_and_empty_flags_are_one(clusters):
    ref, held, evaluated = clusters
    h = np.concatenate([ref, held, evaluated])
    assert ood_agreement(h, h, k=10) == 1.0
    assert ood_agreement(h, 2.0 * h, k=10) == 1.0
    # Percentile 100 on held-out data evaluated again: nothing scores strictly above its max.
    none = ood_flags(held, ref, held, k=10, percentile=100.0)
    assert not none.any()
    assert jaccard(none, none) == 1.0
    assert (
        ood_agreement(
            h,
            h @ np.diag([1.0, 2.0, 3.0, 4.0]),
            k=10,
            reference=np.arange(200),
            heldout=np.arange(200, 300),
            evaluated=np.arange(200, 300),
            percentile=100.0,
        )
        == 1.0
    )


def test_default_split_is_disjoint_and_deterministic():
    ref, held, ev = ood_split(101)
    assert len(ref) == 50 and len(held) == 25 and len(ev) == 26
    assert np.array_equal(np.sort(np.concatenate([ref, held, ev])), np.arange(101))
    again = ood_split(101)
    assert all(np.array_equal(a, b) for a, b in zip((ref, held, ev), again, strict=True))
    assert not np.array_equal(ood_split(101, seed=1)[0], ref)


def test_bad_inputs_raise(clusters):
    ref, held, evaluated = clusters
    with pytest.raises(ValueError, match="percentile"):
        ood_flags(evaluated, ref, held, percentile=120.0)
    with pytest.raises(ValueError, match="same instances"):
        ood_agreement(np.ones((10, 2)), np.ones((11, 2)))
    with pytest.raises(ValueError, match="both reference and heldout"):
        ood_agreement(ref, ref, reference=np.arange(10))
    with pytest.raises(ValueError, match="features"):
        dknn_scores(np.ones((3, 2)), np.ones((3, 5)), k=1)
    with pytest.raises(ValueError, match="too small"):
        ood_split(2)
