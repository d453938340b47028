"""Benchmark the kNN and CKA metrics against scikit-learn, faiss and per-pair CKA.

Run from the repository root::

    PYTHONPATH=src python benchmarks/bench_metrics.py

Every measurement runs in its own subprocess so that its peak memory (the growth of the
process's resident high-water mark over what the generated data already used) is its own.
Takes a few minutes on two cores.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

KNN_N, KNN_D, KNN_K = 20_000, 384, 10
BIG_N = 50_000
CKA_N = 10_000
CKA_WIDTHS = [384, 384, 1536, 384, 1536, 384, 384, 384]  # MiniLM-like: hidden and FFN widths
CKA_BATCH = 500
GRAM_PAIRS = 1  # Gram-based per-pair CKA is slow: time one pair and extrapolate to 64


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _embeddings(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    h_a = rng.standard_normal((n, KNN_D), dtype=np.float32)
    h_b = h_a + 0.5 * rng.standard_normal((n, KNN_D), dtype=np.float32)
    return h_a, h_b


def _layers(n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(1)
    base = rng.standard_normal((n, 64), dtype=np.float32)

    def model(seed: int) -> list[np.ndarray]:
        r = np.random.default_rng(seed)
        out = []
        for w in CKA_WIDTHS:
            mix = r.standard_normal((64, w), dtype=np.float32)
            out.append(np.tanh(base @ mix) + 0.5 * r.standard_normal((n, w), dtype=np.float32))
        return out

    return model(2), model(3)


def _without_self(idx: np.ndarray, k: int) -> np.ndarray:
    """Drop each row's own index from a (N, k + 1) neighbour list (or its last entry)."""
    rows = np.arange(len(idx))[:, None]
    keep = idx != rows
    keep[keep.sum(axis=1) > k, -1] = False  # self not returned (ties): drop the farthest
    return idx[keep].reshape(len(idx), k)


def knn_ours(n: int) -> Callable[[], float]:
    from cnc_widgets.metrics import knn_agreement

    h_a, h_b = _embeddings(n)
    return lambda: knn_agreement(h_a, h_b, KNN_K)


def knn_sklearn(n: int) -> Callable[[], float]:
    from sklearn.neighbors import NearestNeighbors

    from cnc_widgets.metrics import neighbour_jaccard

    h_a, h_b = _embeddings(n)

    def run() -> float:
        lists = []
        for h in (h_a, h_b):
            nn = NearestNeighbors(n_neighbors=KNN_K + 1, metric="cosine", algorithm="brute")
            lists.append(_without_self(nn.fit(h).kneighbors(h, return_distance=False), KNN_K))
        return float(neighbour_jaccard(*lists).mean())

    return run


def knn_faiss(n: int) -> Callable[[], float]:
    import faiss

    from cnc_widgets.metrics import neighbour_jaccard

    h_a, h_b = _embeddings(n)

    def run() -> float:
        lists = []
        for h in (h_a, h_b):
            x = np.ascontiguousarray(h.copy())
            faiss.normalize_L2(x)
            index = faiss.IndexFlatIP(x.shape[1])
            index.add(x)
            lists.append(_without_self(index.search(x, KNN_K + 1)[1], KNN_K))
        return float(neighbour_jaccard(*lists).mean())

    return run


def knn_big(n: int) -> Callable[[], float]:
    from cnc_widgets.metrics import knn_indices

    h_a, _ = _embeddings(n)
    return lambda: float(knn_indices(h_a, KNN_K).shape[0])


def cka_ours(n: int) -> Callable[[], list[float]]:
    from cnc_widgets.metrics import CKAMatrix

    acts_a, acts_b = _layers(n)
    names = [f"l{i}" for i in range(len(CKA_WIDTHS))]

    def run() -> list[float]:
        acc = CKAMatrix(names, names, n=n)
        for start in range(0, n, CKA_BATCH):
            stop = start + CKA_BATCH
            acc.update([x[start:stop] for x in acts_a], [y[start:stop] for y in acts_b])
        return acc.result().to_numpy().ravel().tolist()

    return run


def _naive_pair(x: np.ndarray, y: np.ndarray) -> float:
    xc = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    yc = y.astype(np.float64) - y.mean(axis=0, dtype=np.float64)
    cross = np.linalg.norm(yc.T @ xc) ** 2
    return float(cross / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def cka_naive(n: int) -> Callable[[], list[float]]:
    acts_a, acts_b = _layers(n)
    return lambda: [_naive_pair(x, y) for x in acts_a for y in acts_b]


def cka_ckatorch(n: int) -> Callable[[], list[float]]:
    import ckatorch
    import torch

    acts_a, acts_b = _layers(n)
    pairs = [(i, j) for i in range(len(acts_a)) for j in range(len(acts_b))][:GRAM_PAIRS]

    def run() -> list[float]:
        return [
            ckatorch.cka_base(torch.from_numpy(acts_a[i]), torch.from_numpy(acts_b[j])).item()
            for i, j in pairs
        ]

    return run


WORKERS = {
    "knn_ours": (knn_ours, KNN_N),
    "knn_sklearn": (knn_sklearn, KNN_N),
    "knn_faiss": (knn_faiss, KNN_N),
    "knn_big": (knn_big, BIG_N),
    "cka_ours": (cka_ours, CKA_N),
    "cka_naive": (cka_naive, CKA_N),
    "cka_ckatorch": (cka_ckatorch, CKA_N),
}


def _worker(name: str) -> None:
    factory, n = WORKERS[name]
    run = factory(n)
    before = _peak_mib()
    start = time.perf_counter()
    value = run()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mib": _peak_mib() - before, "value": value}))


def _measure(name: str) -> dict | None:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", name], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  {name}: unavailable ({last})")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(label: str, res: dict | None, ref: dict | None, extra: str = "") -> None:
    if res is None:
        return
    ratio = f"{res['seconds'] / ref['seconds']:6.2f}x ours" if ref else ""
    print(
        f"  {label:<34} {res['seconds']:8.2f} s  {ratio:>12}  peak +{res['peak_mib']:7.0f} MiB"
        f"  {extra}"
    )


def main() -> None:
    import torch

    print(f"torch threads: {torch.get_num_threads()}")
    print(f"\nkNN agreement, N={KNN_N:,}, d={KNN_D}, k={KNN_K} (two searches + overlap)")
    ours = _measure("knn_ours")
    _row("cnc_widgets (torch, blocked)", ours, None, f"value {ours['value']:.6f}")
    for name, label in (
        ("knn_sklearn", "scikit-learn brute cosine"),
        ("knn_faiss", "faiss IndexFlatIP"),
    ):
        res = _measure(name)
        if res is not None:
            _row(label, res, ours, f"value {res['value']:.6f}")
    big = _measure("knn_big")
    print(f"\nknn_indices alone, N={BIG_N:,}, d={KNN_D}, k={KNN_K}, block_bytes=256 MiB")
    _row("cnc_widgets (torch, blocked)", big, None)

    pairs = len(CKA_WIDTHS) ** 2
    print(
        f"\nAll-layer linear CKA, {len(CKA_WIDTHS)} x {len(CKA_WIDTHS)} layers, N={CKA_N:,}, "
        f"widths {CKA_WIDTHS}"
    )
    ours = _measure("cka_ours")
    _row(f"CKAMatrix (streamed, batch {CKA_BATCH})", ours, None)
    naive = _measure("cka_naive")
    if naive is not None:
        err = np.max(np.abs(np.array(ours["value"]) - np.array(naive["value"])))
        _row("naive per-pair, feature space", naive, ours, f"max |diff| {err:.1e}")
    gram = _measure("cka_ckatorch")
    if gram is not None:
        err = np.max(np.abs(np.array(ours["value"][:GRAM_PAIRS]) - np.array(gram["value"])))
        per_pair = gram["seconds"] / GRAM_PAIRS
        gram_all = dict(gram, seconds=per_pair * pairs)
        _row(
            f"ckatorch.cka_base, {pairs} pairs (est.)",
            gram_all,
            ours,
            f"from {GRAM_PAIRS} pairs, {per_pair:.1f} s each; max |diff| {err:.1e}",
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(sys.argv[2])
    else:
        main()
