"""Out-of-distribution flags by Deep Nearest Neighbors and their agreement between models.

Deep Nearest Neighbors (Sun, Ming, Zhu and Li, ICML 2022): embeddings are L2-normalised; the
score of x is the cosine distance to its k-th nearest neighbour among in-distribution
reference embeddings; the threshold is the 95th percentile of the scores of held-out
in-distribution data (so 95% of in-distribution data stays unflagged); instances of the
evaluated set scoring above it are flagged. The neighbour search is the blocked one of
:mod:`cnc_widgets.metrics.knn`, so memory stays bounded for large reference sets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .agreement import jaccard
from .knn import DEFAULT_BLOCK_BYTES, ArrayLike, knn_search

__all__ = [
    "DEFAULT_K",
    "DEFAULT_PERCENTILE",
    "dknn_scores",
    "ood_agreement",
    "ood_flags",
    "ood_split",
]

#: k used by Sun et al. for CIFAR-10 with its full training set as reference; clipped to the
#: reference size when the reference is smaller.
DEFAULT_K = 50
#: Held-out in-distribution scores above this percentile are flagged (TPR 95% on ID data).
DEFAULT_PERCENTILE = 95.0


def _rows(h: ArrayLike, index: np.ndarray) -> ArrayLike:
    if isinstance(h, torch.Tensor):
        return h[torch.from_numpy(index)]
    return np.asarray(h)[index]


def dknn_scores(
    embeddings: ArrayLike,
    reference: ArrayLike,
    k: int = DEFAULT_K,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> np.ndarray:
    """Deep Nearest Neighbors OOD score of every row: distance to its k-th nearest reference.

    Parameters
    ----------
    embeddings : array or Tensor, shape (M, d)
        Embeddings to score.
    reference : array or Tensor, shape (R, d)
        In-distribution reference embeddings (e.g. training data).
    k : int
        Which neighbour; clipped to ``R``.
    block_bytes : int
        Working-memory budget of the blocked neighbour search.

    Returns
    -------
    ndarray of float64, shape (M,)
        ``1 - cos(x, z_(k))`` where ``z_(k)`` is the k-th most similar reference row; in
        [0, 2], larger means further from the in-distribution data. Scored rows are not
        excluded from the reference: pass disjoint splits.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> dknn_scores(np.array([[1.0, 0.0]]), ref, k=2).round(6).tolist()
    [1.0]
    """
    k = min(int(k), len(reference))
    sims, _ = knn_search(embeddings, reference, k, block_bytes=block_bytes)
    return 1.0 - sims[:, k - 1].astype(np.float64)


def ood_flags(
    evaluated: ArrayLike,
    reference: ArrayLike,
    heldout: ArrayLike,
    *,
    k: int = DEFAULT_K,
    percentile: float = DEFAULT_PERCENTILE,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> np.ndarray:
    """Flag the rows of ``evaluated`` that Deep Nearest Neighbors calls out of distribution.

    Parameters
    ----------
    evaluated : array or Tensor, shape (M, d)
        Embeddings of the instances to flag.
    reference : array or Tensor, shape (R, d)
        In-distribution reference embeddings.
    heldout : array or Tensor, shape (H, d)
        Held-out in-distribution embeddings (disjoint from ``reference``) that set the
        threshold.
    k : int
        Neighbour rank of the score, clipped to ``R``.
    percentile : float
        Percentile of the held-out scores used as threshold (numpy's linear interpolation).
    block_bytes : int
        Working-memory budget of the blocked neighbour search.

    Returns
    -------
    ndarray of bool, shape (M,)
        True where ``score > threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(200, 3)) + [5.0, 0.0, 0.0]
    >>> held = rng.normal(size=(100, 3)) + [5.0, 0.0, 0.0]
    >>> ood_flags(np.array([[5.0, 0.0, 0.0], [-5.0, 0.0, 0.0]]), ref, held, k=10).tolist()
    [False, True]
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    if len(heldout) == 0:
        raise ValueError("heldout must hold at least one in-distribution embedding")
    threshold = np.percentile(
        dknn_scores(heldout, reference, k, block_bytes=block_bytes), percentile
    )
    return dknn_scores(evaluated, reference, k, block_bytes=block_bytes) > threshold


def ood_split(
    n: int,
    *,
    reference_fraction: float = 0.5,
    heldout_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Default random split of N instances into reference, held-out and evaluated rows.

    Parameters
    ----------
    n : int
        Number of instances.
    reference_fraction, heldout_fraction : float
        Shares of the reference and held-out splits; the rest is evaluated.
    seed : int
        Seed of the permutation, so both models (and reruns) use the same split.

    Returns
    -------
    reference, heldout, evaluated : ndarray of int64
        Disjoint sorted row indices covering ``0 .. n-1``.

    Examples
    --------
    >>> [len(part) for part in ood_split(8)]
    [4, 2, 2]
    """
    if (
        reference_fraction <= 0
        or heldout_fraction <= 0
        or (reference_fraction + heldout_fraction >= 1)
    ):
        raise ValueError("fractions must be positive and leave some rows to evaluate")
    order = np.random.default_rng(seed).permutation(n)
    n_ref = round(n * reference_fraction)
    n_held = round(n * heldout_fraction)
    parts = order[:n_ref], order[n_ref : n_ref + n_held], order[n_ref + n_held :]
    if any(len(part) == 0 for part in parts):
        raise ValueError(f"N={n} is too small to split into reference, held-out and evaluated")
    reference, heldout, evaluated = (np.sort(part) for part in parts)
    return reference, heldout, evaluated


def ood_agreement(
    h_a: ArrayLike,
    h_b: ArrayLike,
    *,
    reference: Any | None = None,
    heldout: Any | None = None,
    evaluated: Any | None = None,
    k: int = DEFAULT_K,
    percentile: float = DEFAULT_PERCENTILE,
    seed: int = 0,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> float:
    """Jaccard index of the instances that two models flag as out of distribution.

    Both models see the same splits of the same N instances; each flags with its own
    embeddings (:func:`ood_flags`), giving ``F_a`` and ``F_b`` over the evaluated rows.

    Parameters
    ----------
    h_a, h_b : array or Tensor, shapes (N, d_a) and (N, d_b)
        Embeddings of the same N instances under model a and model b.
    reference, heldout, evaluated : array-like of int, optional
        Row indices of the three splits. When ``reference`` and ``heldout`` are both None,
        :func:`ood_split` with ``seed`` gives 50% reference, 25% held-out, 25% evaluated.
        When ``evaluated`` is None it is every row in neither other split.
    k, percentile, block_bytes
        As in :func:`ood_flags`.
    seed : int
        Seed of the default split.

    Returns
    -------
    float
        ``|F_a & F_b| / |F_a | F_b|``; 1.0 when neither model flags anything.

    Examples
    --------
    >>> import numpy as np
    >>> h = np.random.default_rng(0).normal(size=(400, 8))
    >>> ood_agreement(h, 3 * h, k=10)
    1.0
    """
    n = len(h_a)
    if len(h_b) != n:
        raise ValueError(
            f"embeddings must describe the same instances: shapes {tuple(h_a.shape)} "
            f"and {tuple(h_b.shape)}"
        )
    if reference is None and heldout is None:
        reference, heldout, default_eval = ood_split(n, seed=seed)
        evaluated = default_eval if evaluated is None else evaluated
    elif reference is None or heldout is None:
        raise ValueError("give both reference and heldout, or neither for the default split")
    ref, held = np.asarray(reference, dtype=np.int64), np.asarray(heldout, dtype=np.int64)
    if evaluated is None:
        evaluated = np.setdiff1d(np.arange(n), np.union1d(ref, held))
    ev = np.asarray(evaluated, dtype=np.int64)
    if len(ev) == 0:
        raise ValueError("no rows left to evaluate: give `evaluated` explicitly")
    flags = [
        ood_flags(
            _rows(h, ev),
            _rows(h, ref),
            _rows(h, held),
            k=k,
            percentile=percentile,
            block_bytes=block_bytes,
        )
        for h in (h_a, h_b)
    ]
    return jaccard(flags[0], flags[1])
