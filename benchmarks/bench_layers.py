"""The layer table (with per-module CKA) of one pair against the pair's bare forward passes.

On the MiniLM tweet classifier and a 50%-pruned copy, over the same tweets:

- ``bare``: ``for batch: model_a(batch)`` then the same for ``model_b``, under
  ``torch.inference_mode``: the least any per-module comparison has to run;
- ``layers``: :func:`cnc_widgets.metrics.layers.layer_table`: weight masks and change,
  activation change and exact linear CKA of every module with parameters (~50 modules);
- ``layers+matrix``: the same pass also filling the CKA matrix of the encoder blocks
  (``cka_modules=``), as the layers view asks for it;
- ``two-pass``: the activation columns computed as before issue 9 (one pass for the
  activation change, another for CKA), for comparison.

Runs are interleaved (bare, layers, layers+matrix, bare, ...) and the median of the repeats
is reported, so a noisy neighbour on a shared machine hits all of them alike. The goal of
issue 9 is ``layers / bare <= 1.5``.

Usage::

    .venv/bin/python benchmarks/bench_layers.py [--n 512] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from cnc_widgets import examples
from cnc_widgets.compress.pruning import prune
from cnc_widgets.evaluate.model_io import call_model, n_rows, slice_rows
from cnc_widgets.metrics.layers import (
    cka_between,
    default_cka_modules,
    layer_table,
    layers_and_cka,
    module_weights,
)

# The two-pass path survives only as the tests' reference.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.reference_activations import paired_activation_stats


def bare(models, inputs, batch_size: int) -> None:
    n = n_rows(inputs)
    with torch.inference_mode():
        for model in models:
            model.eval()
            for start in range(0, n, batch_size):
                call_model(model, slice_rows(inputs, start, start + batch_size, None))


def two_pass(model_a, model_b, inputs, batch_size: int, names: list[str]) -> None:
    """The activation columns as computed before issue 9: one pass per measure."""
    paired_activation_stats(model_a, model_b, inputs, pairs=names, batch_size=batch_size)
    cka_between(model_a, model_b, inputs, names, batch_size=batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="tweets (default 512)")
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    encoder, tokenizer = examples.load_minilm()
    data = examples.tweets(
        n_train=200, n_test=args.n, max_length=args.max_length, tokenizer=tokenizer
    )
    model_a = examples.train_text_classifier(data, encoder, epochs=20)
    model_b = prune(model_a, amount=0.5)
    inputs, bs = data.test_inputs, args.batch_size
    blocks = default_cka_modules(model_a)
    # The old path reads only modules called once per batch with one row per instance.
    notes = layer_table(model_a, model_b, inputs, batch_size=bs)["note"]
    wb = module_weights(model_b)
    readable = [n for n, note in notes.items() if not note and n in wb]

    runs = {
        "bare": lambda: bare([model_a, model_b], inputs, bs),
        "layers": lambda: layer_table(model_a, model_b, inputs, batch_size=bs),
        "layers+matrix": lambda: layers_and_cka(
            model_a, model_b, inputs, batch_size=bs, cka_modules=(blocks, blocks)
        ),
        "two-pass": lambda: two_pass(model_a, model_b, inputs, bs, readable),
    }
    for fn in runs.values():  # warm-up: allocator, oneDNN kernels, lazy imports
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    table = layer_table(model_a, model_b, inputs, batch_size=bs)
    print(
        f"MiniLM classifier vs 50% pruned, {args.n} tweets x {args.max_length} tokens, "
        f"batch {bs}, {torch.get_num_threads()} threads, {len(table)} modules, "
        f"median of {args.repeats}"
    )
    for key, value in med.items():
        print(f"  {key:14s} {value:7.3f} s   {value / med['bare']:5.2f}x bare")
    met = med["layers"] <= 1.5 * med["bare"]
    print(f"goal: layers <= 1.5x bare -> {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
