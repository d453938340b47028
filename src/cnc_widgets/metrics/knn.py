"""k-nearest-neighbour search by cosine similarity and kNN agreement between two models.

Neighbours are found in row blocks so that no N x N similarity matrix is ever held: each block
of queries is multiplied against all reference rows (float32 matmul) and reduced with
``torch.topk`` before the next block starts. Memory is bounded by ``block_bytes`` plus the
inputs and the (N, k) result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import torch

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "knn_agreement",
    "knn_agreement_sweep",
    "knn_indices",
    "knn_search",
    "neighbour_jaccard",
]

#: Default working-memory budget for one block of similarities (256 MiB).
DEFAULT_BLOCK_BYTES = 256 * 2**20

ArrayLike = np.ndarray | torch.Tensor


def _normalized(h: ArrayLike, name: str) -> torch.Tensor:
    """Return ``h`` as a float32 tensor with unit-norm rows; zero rows stay zero."""
    t = torch.as_tensor(h).detach()
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, d), got shape {tuple(t.shape)}")
    t = t.to(device="cpu", dtype=torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    # eps keeps a zero row at zero (similarity 0 to everything) instead of 0/0 = NaN.
    return torch.nn.functional.normalize(t, p=2.0, dim=1, eps=1e-12)


def _rows_per_block(n_columns: int, block_bytes: int) -> int:
    # One float32 similarity row per query, doubled for topk's workspace; at least one row so
    # progress is always possible even when a single row exceeds the budget.
    return max(1, int(block_bytes) // (8 * max(n_columns, 1)))


@contextlib.contextmanager
def _ieee_float32() -> Iterator[None]:
    """Matmuls in full float32 while the search runs: the margin assumes IEEE float32
    products, and ``torch.set_float32_matmul_precision("high"/"medium")`` would let them
    run in TF32 or bfloat16 (the user's setting is restored afterwards)."""
    before = torch.get_float32_matmul_precision()
    if before == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _float32_margin(d: int) -> float:
    """A bound on |float32 cosine - exact cosine| for rows of width ``d``.

    With u = 2**-24 and Cauchy-Schwarz (sum |x_i y_i| <= |x| |y|): rounding float64 inputs
    to float32 (2u), normalising both rows in float32 (the norm's sum of squares d u, halved
    by the square root, plus the root and the division: (d + 4)u over both rows) and the
    float32 dot product in any summation order (d u / (1 - d u)) add up to
    (2d + 6)u / (1 - d u); four more u for the cross terms.
    """
    u = 2.0**-24
    return (2 * d + 10) * u / max(1e-3, 1.0 - d * u)


class _Exact:
    """Cosine similarities in float64, the same bits for the same pair whatever the batch.

    Rows are multiplied elementwise and summed along their contiguous last axis (numpy's
    pairwise sum runs per row), so two identical rows always score identically and ties
    are real ties, broken by index.
    """

    def __init__(self, h: ArrayLike) -> None:
        # The caller's values, converted to float64 only where gathered (no full copy).
        t = torch.as_tensor(h).detach().to("cpu")
        if t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float64)  # exact for half, bfloat16 and integers up to 2**53
        self.x = t.numpy()

    def scores(self, rows: np.ndarray, cands: np.ndarray, reference: _Exact) -> np.ndarray:
        """``(len(rows), c)`` similarities of query ``rows`` to reference rows ``cands``."""
        query = self.x[rows].astype(np.float64, copy=False)[:, None, :]
        gathered = reference.x[cands]
        # Products in float64 straight from the gathered rows (no astype copy); norms of
        # just these rows, by the same per-row pairwise sum wherever a row appears.
        dots = np.multiply(gathered, query, dtype=np.float64).sum(axis=-1)
        ref_norm = np.sqrt(np.square(gathered, dtype=np.float64).sum(axis=-1))
        query_norm = np.sqrt(np.square(query[:, 0, :]).sum(axis=-1))
        denom = ref_norm * query_norm[:, None]
        safe = np.where(denom > 0, denom, 1.0)
        return np.where(denom > 0, dots / safe, 0.0)


def _rescore_rows(
    rows: np.ndarray,
    cands: np.ndarray,
    k: int,
    queries: _Exact,
    reference: _Exact,
    out_sims: np.ndarray,
    out_idx: np.ndarray,
    budget: int,
) -> None:
    """Exact top-k of ``rows`` among their candidate lists ``cands`` (rows, c), in place."""
    c, d = cands.shape[1], queries.x.shape[1]
    step = max(1, budget // max(1, c * d * 8))
    for s in range(0, len(rows), step):
        r, cand = rows[s : s + step], cands[s : s + step]
        sims = queries.scores(r, cand, reference)
        order = np.lexsort((cand, -sims), axis=-1)[:, :k]
        out_idx[r] = np.take_along_axis(cand, order, axis=1)
        out_sims[r] = np.take_along_axis(sims, order, axis=1)


def knn_search(
    queries: ArrayLike,
    reference: ArrayLike,
    k: int,
    *,
    exclude_self: bool = False,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Find the ``k`` most cosine-similar reference rows for every query row, blockwise.

    Parameters
    ----------
    queries : array or Tensor, shape (M, d)
        Query embeddings; rows are L2-normalised here.
    reference : array or Tensor, shape (R, d)
        Reference embeddings; rows are L2-normalised here.
    k : int
        Number of neighbours, ``1 <= k <= R`` (``R - 1`` with ``exclude_self``).
    exclude_self : bool
        Queries are the reference itself (row i of ``queries`` is row i of ``reference``);
        exclude each row from its own neighbours by index, so duplicate rows elsewhere in
        the data still count as neighbours.
    block_bytes : int
        Working-memory budget for one block of similarities.

    Returns
    -------
    similarities : ndarray of float32, shape (M, k)
        Cosine similarities, sorted from most to least similar.
    indices : ndarray of int64, shape (M, k)
        Reference row indices in the same order: exactly the order of the float64
        similarities, equal similarities by ascending index.

    Notes
    -----
    The search runs in float32; a row whose float32 similarities come within rounding
    error of each other anywhere in its top k (or at the k-th place) is re-scored in
    float64 over every candidate that could belong there, so the neighbour lists are
    those of an exact computation even when similarities nearly tie. A zero-norm row
    has similarity 0 to every row (no NaN).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> sims, idx = knn_search(np.array([[1.0, 0.1]]), ref, k=2)
    >>> idx.tolist()
    [[0, 2]]
    """
    same = queries is reference
    q = _normalized(queries, "queries")
    r = q if same else _normalized(reference, "reference")
    if q.shape[1] != r.shape[1]:
        raise ValueError(
            f"queries have {q.shape[1]} features but reference has {r.shape[1]}; "
            "embeddings must come from the same representation"
        )
    n_ref = r.shape[0]
    available = n_ref - 1 if exclude_self else n_ref
    if exclude_self and q.shape[0] != n_ref:
        raise ValueError(
            f"exclude_self needs queries to be the reference: shapes {tuple(q.shape)} "
            f"and {tuple(r.shape)}"
        )
    if not 1 <= k <= available:
        what = "N - 1 (the instance itself is excluded)" if exclude_self else "the reference size"
        raise ValueError(f"k={k} must be between 1 and {what}; N={n_ref}")
    m = q.shape[0]
    sims = np.empty((m, k), dtype=np.float32)
    idx = np.empty((m, k), dtype=np.int64)
    # A few candidates past k show whether the k-th place is contested.
    kk = min(available, k + max(8, k // 4))
    # Two float32 values within twice the bound of each other may be in either order.
    margin = 2.0 * _float32_margin(q.shape[1])
    exact_q: _Exact | None = None
    exact_r: _Exact | None = None
    rows = max(1, min(_rows_per_block(n_ref, block_bytes), m))
    with torch.inference_mode(), _ieee_float32():
        # One buffer reused by every block: fresh large allocations would be page-faulted
        # and zeroed by the kernel on each block.
        buffer = torch.empty(rows, n_ref, dtype=torch.float32)
        r_t = r.T
        for start in range(0, m, rows):
            stop = min(start + rows, m)
            block = torch.mm(q[start:stop], r_t, out=buffer[: stop - start])
            if exclude_self:
                local = torch.arange(stop - start)
                block[local, local + start] = -torch.inf
            values, positions = torch.topk(block, kk, dim=1, largest=True, sorted=True)
            v = values.numpy()
            sims[start:stop] = v[:, :k]
            idx[start:stop] = positions.numpy()[:, :k]
            # Float32 order is the exact order when neighbouring values (down to the k+1-th)
            # are further apart than twice the rounding bound; otherwise re-score.
            upto = min(k + 1, kk)
            contested = (np.diff(v[:, :upto], axis=1) >= -margin).any(axis=1)
            if not contested.any():
                continue
            if exact_q is None:
                exact_q = _Exact(queries)
                exact_r = exact_q if same else _Exact(reference)
            local_rows = np.flatnonzero(contested)
            threshold = v[local_rows, k - 1] - margin
            # Rows whose window of possible k-th values runs past the kk candidates need
            # every reference row within it (large groups of near-identical embeddings).
            overflow = (v[local_rows, kk - 1] >= threshold) & (kk < available)
            listed = local_rows[~overflow]
            if len(listed):
                # Candidates below the window cannot reach the top k: re-score only as many
                # as the widest listed row needs (the others' extra ones rank below).
                needed = int((v[listed] >= threshold[~overflow][:, None]).sum(axis=1).max())
                _rescore_rows(
                    listed + start,
                    positions.numpy()[listed, : max(needed, k)],
                    k,
                    exact_q,
                    exact_r,
                    sims,
                    idx,
                    block_bytes,
                )
            for row, thr in zip(local_rows[overflow], threshold[overflow], strict=True):
                cand = torch.nonzero(block[row] >= float(thr)).flatten().numpy()
                _rescore_rows(
                    np.array([row + start]),
                    cand[None, :],
                    k,
                    exact_q,
                    exact_r,
                    sims,
                    idx,
                    block_bytes,
                )
    return sims, idx


def knn_indices(h: ArrayLike, k: int, *, block_bytes: int = DEFAULT_BLOCK_BYTES) -> np.ndarray:
    """Return the ``k`` nearest other instances of every row by cosine similarity.

    Parameters
    ----------
    h : array or Tensor, shape (N, d)
        Embeddings of N instances.
    k : int
        Neighbours per instance, ``1 <= k <= N - 1``.
    block_bytes : int
        Working-memory budget for one block of similarities.

    Returns
    -------
    ndarray of int64, shape (N, k)
        Row i lists the neighbours of instance i, most similar first; i itself never appears.

    Raises
    ------
    ValueError
        If ``k >= N`` or ``k < 1``.

    Examples
    --------
    >>> import numpy as np
    >>> h = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> knn_indices(h, 1).ravel().tolist()
    [1, 0, 1]
    """
    return knn_search(h, h, k, exclude_self=True, block_bytes=block_bytes)[1]


def _match_ranks(idx_a: np.ndarray, idx_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every element shared by row i of both lists, the larger of its two ranks.

    Returns ``(shared, worst_rank)`` of shape (B, 2K - 1): ``worst_rank[i, t]`` is meaningful
    where ``shared[i, t]``. An element is in both top-k sets exactly when its worse rank is
    below k, which lets one sort serve every k of a sweep.
    """
    kmax = idx_a.shape[1]
    both = np.concatenate([idx_a, idx_b], axis=1)
    # Stable sort keeps an a-entry (positions < kmax) before the equal b-entry.
    order = np.argsort(both, axis=1, kind="stable")
    values = np.take_along_axis(both, order, axis=1)
    shared = values[:, 1:] == values[:, :-1]
    worst_rank = np.maximum(order[:, :-1], order[:, 1:] - kmax)
    return shared, worst_rank


def neighbour_jaccard(
    idx_a: np.ndarray,
    idx_b: np.ndarray,
    ks: Iterable[int] | None = None,
) -> np.ndarray:
    """Per-instance Jaccard index of two neighbour lists, for one or several k.

    Parameters
    ----------
    idx_a, idx_b : ndarray of int, shape (N, K)
        Neighbour lists sorted most similar first (as :func:`knn_indices` returns them);
        each row holds distinct indices.
    ks : iterable of int, optional
        Prefix lengths to evaluate, each ``<= K``; default ``[K]``.

    Returns
    -------
    ndarray of float64, shape (N, len(ks))
        ``|A_k(i) & B_k(i)| / |A_k(i) | B_k(i)|`` where ``A_k(i)`` is the first k of row i.

    Examples
    --------
    >>> import numpy as np
    >>> neighbour_jaccard(np.array([[1, 2]]), np.array([[2, 3]])).tolist()
    [[0.3333333333333333]]
    """
    idx_a = np.asarray(idx_a)
    idx_b = np.asarray(idx_b)
    if idx_a.shape != idx_b.shape or idx_a.ndim != 2:
        raise ValueError(
            f"neighbour lists must have the same 2-D shape, got {idx_a.shape} and {idx_b.shape}"
        )
    kmax = idx_a.shape[1]
    ks = [kmax] if ks is None else [int(k) for k in ks]
    if any(not 1 <= k <= kmax for k in ks):
        raise ValueError(f"every k must be between 1 and {kmax}, got {ks}")
    shared, worst_rank = _match_ranks(idx_a, idx_b)
    out = np.empty((idx_a.shape[0], len(ks)), dtype=np.float64)
    for col, k in enumerate(ks):
        inter = np.count_nonzero(shared & (worst_rank < k), axis=1)
        out[:, col] = inter / (2 * k - inter)
    return out


def _check_pair(h_a: ArrayLike, h_b: ArrayLike) -> int:
    n_a, n_b = len(h_a), len(h_b)
    if n_a != n_b:
        raise ValueError(
            f"embeddings must describe the same instances: shapes {tuple(h_a.shape)} "
            f"and {tuple(h_b.shape)}"
        )
    return n_a


def _sweep(h_a: ArrayLike, h_b: ArrayLike, ks: list[int], block_bytes: int) -> np.ndarray:
    kmax = max(ks)
    idx_a = knn_indices(h_a, kmax, block_bytes=block_bytes)
    idx_b = knn_indices(h_b, kmax, block_bytes=block_bytes)
    n = idx_a.shape[0]
    # The rank matching holds a few (rows, 2 kmax) int64 arrays; keep them within budget too.
    rows = max(1, int(block_bytes) // (2 * kmax * 8 * 6))
    totals = np.zeros(len(ks), dtype=np.float64)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        totals += neighbour_jaccard(idx_a[start:stop], idx_b[start:stop], ks).sum(axis=0)
    return totals / n


def effective_k(k: int, n: int) -> int:
    """The k a kNN measure over ``n`` instances uses for a requested ``k``: clipped to
    ``n - 1`` (the other instances), at least 1.

    Examples
    --------
    >>> effective_k(10, 8), effective_k(5, 100)
    (7, 5)
    """
    return min(int(k), max(int(n) - 1, 1))


def knn_agreement(
    h_a: ArrayLike,
    h_b: ArrayLike,
    k: int,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> float:
    """Mean Jaccard overlap of the k-nearest-neighbour sets of each instance under two models.

    ``N_m(i)`` is the k nearest other instances of i by cosine similarity of model m's
    L2-normalised embeddings (i itself excluded); the value is the mean over i of
    ``|N_a(i) & N_b(i)| / |N_a(i) | N_b(i)|``.

    Parameters
    ----------
    h_a, h_b : array or Tensor, shapes (N, d_a) and (N, d_b)
        Embeddings of the same N instances; the widths may differ.
    k : int
        Neighbours per instance, ``1 <= k <= N - 1``.
    block_bytes : int
        Working-memory budget for one block of similarities.

    Returns
    -------
    float
        In [0, 1]; 1 when both models give every instance the same neighbours.

    Examples
    --------
    >>> import numpy as np
    >>> h = np.random.default_rng(0).normal(size=(50, 8))
    >>> knn_agreement(h, 2 * h, k=5)
    1.0
    """
    _check_pair(h_a, h_b)
    return float(_sweep(h_a, h_b, [int(k)], block_bytes)[0])


def knn_agreement_sweep(
    h_a: ArrayLike,
    h_b: ArrayLike,
    ks: Iterable[int] = (10, 20, 50, 100, 200, 500),
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> pd.Series:
    """kNN agreement for several k from a single neighbour search per model.

    Neighbours are searched once at the largest k (clipped to N - 1); since the lists are
    sorted, the k nearest for every smaller k are their prefixes.

    Parameters
    ----------
    h_a, h_b : array or Tensor, shapes (N, d_a) and (N, d_b)
        Embeddings of the same N instances.
    ks : iterable of int
        Values of k; each is clipped to N - 1 and repeated values after clipping are dropped.
    block_bytes : int
        Working-memory budget for one block of similarities.

    Returns
    -------
    pandas.Series
        Index ``k`` (the effective, clipped values, ascending), values the kNN agreement.

    Examples
    --------
    >>> import numpy as np
    >>> h = np.random.default_rng(0).normal(size=(30, 4))
    >>> knn_agreement_sweep(h, h, ks=(5, 50)).to_dict()
    {5: 1.0, 29: 1.0}
    """
    n = _check_pair(h_a, h_b)
    if n < 2:
        raise ValueError(f"kNN needs at least 2 instances, got N={n}")
    requested = [int(k) for k in ks]
    if not requested or min(requested) < 1:
        raise ValueError(f"ks must be positive integers, got {requested}")
    effective = sorted({effective_k(k, n) for k in requested})
    values = _sweep(h_a, h_b, effective, block_bytes)
    return pd.Series(values, index=pd.Index(effective, name="k"), name="knn_agreement")
