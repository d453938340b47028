"""A language model's evaluation and token comparison against its bare forward passes.

SmolLM2-135M-Instruct (``examples.smollm2()``, vocabulary 49,152) and an int8 weight-only
copy on fixed-size Wikipedia token windows (``examples.token_windows``):

- ``bare``: ``for batch: model(**batch)`` under ``torch.inference_mode``, the least any
  evaluation has to run (for the comparison: the same for both models);
- ``evaluate``: :func:`cnc_widgets.evaluate.inference.evaluate_model` as ``reg.evaluate()``
  runs it (``task="causal_lm"``: per-token nll and top-1, plus the activation statistics of
  every module, lm_head's ``(B, T, V)`` output included); ``logits only``: the same
  without activation statistics;
- ``compare``: :func:`cnc_widgets.metrics.tokens.paired_token_stats`, the table behind
  ``cmp.tokens`` (full-vocabulary float64 KL, both models over each batch).

Goals (issue 29): evaluate <= 1.2x bare, compare <= 1.2x the two bare passes. Runs are
interleaved (bare, evaluate, compare, bare, ...), medians and fastest runs reported.

Memory: the resident set is sampled every 2 ms while a comparison of ``--memory-windows``
windows (more than the timed runs, so that one batch is small beside all of them) runs; its
peak above the resident set before it is printed against ``N x T x V x 4`` bytes (all the
logits of one model at once), which a comparison must never approach: it holds one batch
of both models' logits and float64 chunks of ~16 MiB.

Usage::

    .venv/bin/python benchmarks/bench_lm.py [--windows 24] [--length 64] [--batch 4]
        [--repeats 3] [--threads 2] [--memory-windows 96]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import threading
import time
from collections.abc import Callable

import torch

from cnc_widgets import examples
from cnc_widgets.compress.torchao import quantize
from cnc_widgets.evaluate.inference import evaluate_model
from cnc_widgets.metrics.tokens import _no_inference_mode, paired_token_stats
from cnc_widgets.tasks import get_task

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def peak_rss_during(fn: Callable[[], object]) -> int:
    """Peak resident bytes above the level before ``fn``, sampled every 2 ms."""
    start, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        fn()
    finally:
        done.set()
        watcher.join()
    return max(peak[0], rss()) - start


def batches(enc: dict[str, torch.Tensor], size: int):
    n = len(enc["input_ids"])
    return [{k: v[i : i + size] for k, v in enc.items()} for i in range(0, n, size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-windows", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tok = examples.smollm2()
    small = quantize(copy.deepcopy(model), "int8_weight_only")
    enc = examples.token_windows(tok, examples.wikipedia_texts(), args.length, args.windows)
    parts = batches(enc, args.batch)
    task = get_task("causal_lm", {"tokenizer": tok})
    vocab = model.config.vocab_size

    def bare(m) -> None:
        # torchao's weights cannot be read under inference_mode: no_grad, as the library does.
        mode = torch.no_grad if _no_inference_mode(m) else torch.inference_mode
        with mode():
            for batch in parts:
                m(**batch)

    def bare_both() -> None:
        bare(model)
        bare(small)

    def evaluate(stats: bool) -> Callable[[], object]:
        return lambda: evaluate_model(
            model,
            enc,
            batch_size=args.batch,
            activations=stats,
            progress=False,
            task=task,
        )

    def compare() -> object:
        return paired_token_stats(model, small, enc, batch_size=args.batch)

    runs = {
        "bare (a)": lambda: bare(model),
        "evaluate": evaluate(True),
        "logits only": evaluate(False),
        "bare (a and b)": bare_both,
        "compare": compare,
    }
    for fn in runs.values():  # warm-up: allocators, numba, torchao kernels
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for key, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)

    n, t = enc["input_ids"].shape
    print(
        f"SmolLM2-135M vs int8 weight-only: {n} windows x {t} tokens, batch {args.batch}, "
        f"threads {args.threads}, repeats {args.repeats}, load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'':30s}{'median':>9s} {'ratio':>6s} {'fastest':>9s} {'ratio':>6s}")
    for key, base, goal in [
        ("bare (a)", "bare (a)", ""),
        ("evaluate", "bare (a)", "(goal <= 1.2)"),
        ("logits only", "bare (a)", ""),
        ("bare (a and b)", "bare (a and b)", ""),
        ("compare", "bare (a and b)", "(goal <= 1.2)"),
    ]:
        med, fast = statistics.median(times[key]), min(times[key])
        ratio = med / statistics.median(times[base])
        ratio_fast = fast / min(times[base])
        print(f"  {key:28s}{med:8.2f}s {ratio:6.3f} {fast:8.2f}s {ratio_fast:6.3f}  {goal}")

    many = examples.token_windows(
        tok, examples.wikipedia_texts(), args.length, args.memory_windows
    )
    peak = peak_rss_during(lambda: paired_token_stats(model, small, many, batch_size=args.batch))
    full = len(many["input_ids"]) * t * vocab * 4
    batch_logits = args.batch * t * vocab * 4
    print(
        f"compare of {len(many['input_ids'])} windows, peak memory above its start: "
        f"{peak / 2**20:.0f} MiB; N x T x V x 4 = {full / 2**20:.0f} MiB "
        f"(ratio {peak / full:.2f}); one batch of one model's logits = "
        f"{batch_logits / 2**20:.0f} MiB"
    )

if __name__ == "__main__":
    main()
