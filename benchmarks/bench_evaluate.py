"""Overhead of :func:`cnc_widgets.evaluate.inference.evaluate_model` over a bare inference loop.

For the digits CNN and the MiniLM tweet classifier, times on the same batches:

- ``plain``: ``for batch: model(batch)`` under ``torch.inference_mode``;
- ``fast``: ``evaluate_model(..., activations=False)`` (logits and embeddings);
- ``stats``: ``evaluate_model(...)`` with activation statistics of every leaf module (the
  default: one compiled pass per output on the calling thread, ``evaluate/kernels.py``);
- ``torch``: the same statistics from torch operations, as on an accelerator or without
  numba (the code before the compiled pass);
- ``thread``: compiled, on a worker thread (``stats_thread=True``).

Runs are interleaved (plain, fast, stats, torch, thread, plain, ...) so a noisy neighbour on
a shared machine hits all of them alike; the ratios of the medians and of the fastest runs
are printed (the fastest run is the least disturbed one).

Usage::

    .venv/bin/python benchmarks/bench_evaluate.py [--repeats 9]
    .venv/bin/python benchmarks/bench_evaluate.py --rows 21500   # issue 28's setting

It also prints the ratio of a cached ``reg.evaluate()`` to the first one. ``--rows N``
measures only the digits CNN, on N rows: every digit (train and test split) and copies of
them shifted by a pixel, as one augments digits (issue 28 saw 2.0x at 21.5k rows with
every statistic on, where the 1.6k-row default showed 1.4x).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from cnc_widgets import examples
from cnc_widgets.evaluate import stats
from cnc_widgets.evaluate.inference import evaluate_model
from cnc_widgets.evaluate.model_io import call_model, n_rows, slice_rows


def augmented_digits(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` digit images: all 1,797 digits, then copies shifted by one pixel."""
    data = examples.digits(test_fraction=0.3)
    x = torch.cat([data.train_inputs, data.test_inputs])
    y = torch.cat([data.train_labels, data.test_labels])
    shifts = [(0, 0), (0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)]
    # Nine shifts, then the same again: enough copies for 32k rows.
    copies = [torch.roll(x, shifts=s, dims=(2, 3)) for s in shifts] * 2
    reps = -(-rows // len(x))
    if reps > len(copies):
        raise ValueError(f"--rows goes up to {len(copies) * len(x)}, got {rows}")
    return torch.cat(copies[:reps])[:rows], y.repeat(reps)[:rows]


def plain_loop(model: torch.nn.Module, inputs, batch_size: int) -> None:
    """The baseline: slice, call, nothing kept."""
    n = n_rows(inputs)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            call_model(model, slice_rows(inputs, start, start + batch_size, None))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def torch_reductions(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with RunningStats on torch operations (as without numba)."""

    def run() -> object:
        saved, stats._KERNELS = stats._KERNELS, None
        try:
            return fn()
        finally:
            stats._KERNELS = saved

    return run


def compare(label: str, model: torch.nn.Module, inputs, batch_size: int, repeats: int) -> None:
    def evaluate(**kw) -> Callable[[], object]:
        return lambda: evaluate_model(model, inputs, batch_size=batch_size, progress=False, **kw)

    runs = {
        "plain": lambda: plain_loop(model, inputs, batch_size),
        "fast": evaluate(activations=False),
        "stats": evaluate(),
        "torch": torch_reductions(evaluate(stats_thread=False)),
        "thread": evaluate(stats_thread=True),
    }
    for fn in runs.values():  # warm-up: allocator, oneDNN kernels, lazy imports, numba cache
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            times[key].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    n = n_rows(inputs)
    print(
        f"{label}: N={n}, batch_size={batch_size}, threads={torch.get_num_threads()}, "
        f"repeats={repeats}"
    )
    print(f"  {'':28s} {'median':>9s} {'ratio':>6s} {'fastest':>9s} {'ratio':>6s}")
    rows = [
        ("plain", "plain loop", ""),
        ("fast", "logits + embeddings", "(goal <= 1.05)"),
        ("stats", "+ activation stats", "(goal <= 1.5)"),
        ("torch", "  torch reductions", "(accelerators, no numba)"),
        ("thread", "  on a worker thread", "(stats_thread=True)"),
    ]
    for key, text, note in rows:
        print(
            f"  {text:28s} {med[key] * 1e3:7.1f}ms {med[key] / med['plain']:6.3f} "
            f"{best[key] * 1e3:7.1f}ms {best[key] / best['plain']:6.3f}  {note}"
        )


def cached(label: str, model: torch.nn.Module, inputs, labels, batch_size: int) -> None:
    """``reg.evaluate()`` first run vs a cached re-run, in memory and on a reopened store."""
    import copy
    import tempfile

    import cnc_widgets as cnc

    with tempfile.TemporaryDirectory() as folder:
        reg = cnc.ModelRegistry(store=folder)
        reg.set_data(inputs, labels, batch_size=batch_size)
        reg.add("m", model)
        first = timed(lambda: reg.evaluate(progress=False))
        again = timed(lambda: reg.evaluate(progress=False))
        reopened = cnc.ModelRegistry(store=folder)
        reopened.set_data(inputs, labels, batch_size=batch_size)
        reopened.add("m", copy.deepcopy(model))
        store = timed(lambda: reopened.evaluate(progress=False))
    print(f"{label}: reg.evaluate() first run {first * 1e3:.1f} ms (with efficiency metrics)")
    print(
        f"  cached re-run         {again * 1e3:8.2f} ms   ratio {again / first:.4f}  (goal < 0.01)"
    )
    print(
        f"  reopened store        {store * 1e3:8.2f} ms   ratio {store / first:.4f}  "
        "(checksums verified)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--tweets", type=int, default=256)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; on a busy shared machine more than one makes "
        "OpenMP stall and the ratios meaningless",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=0,
        help="only the digits CNN, on this many rows (augmented digits, see above)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.rows:
        data = examples.digits(test_fraction=0.3)
        cnn = examples.train_digits_cnn(data, epochs=1)
        x, y = augmented_digits(args.rows)
        label = f"digits CNN, {args.rows} rows"
        compare(label, cnn, x, 64, args.repeats)
        compare(label, cnn, x, 256, args.repeats)
        cached(label, cnn, x, y, 64)
        return

    data = examples.digits(test_fraction=0.9)
    cnn = examples.train_digits_cnn(data, epochs=1)
    compare("digits CNN", cnn, data.test_inputs, 64, args.repeats)
    compare("digits CNN", cnn, data.test_inputs, 256, args.repeats)
    cached("digits CNN", cnn, data.test_inputs, data.test_labels, 64)

    encoder, tokenizer = examples.load_minilm()
    tweets = examples.tweets(8, args.tweets, max_length=48, tokenizer=tokenizer)
    torch.manual_seed(0)
    clf = examples.TextClassifier(encoder, 3).eval()
    compare("MiniLM classifier", clf, tweets.test_inputs, 64, max(3, args.repeats // 2))
    cached("MiniLM classifier", clf, tweets.test_inputs, tweets.test_labels, 64)


if __name__ == "__main__":
    main()
