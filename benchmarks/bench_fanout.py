"""Overhead of fanning evaluation out on a Dask LocalCluster, measured in one run.

Prints two ratios (lower is better; 1.0 = no overhead):

- eight digits-CNN variants evaluated on a two-worker LocalCluster (one thread each) against
  the same registry evaluated serially in this process with two torch threads; the cluster is
  started before the clock starts, as a user's existing cluster would be. Goal: <= 1.15.
- one model's evaluation split into shards on the cluster against its unsharded run there.

The digits test split is tiled to ``--rows`` rows so each task carries real work.
Usage: ``python benchmarks/bench_fanout.py [--rows 20000]``.
"""

from __future__ import annotations

import argparse
import time

import torch

import cnc_widgets as cnc
from cnc_widgets import examples


def build(data, model, x, y, n_models: int) -> cnc.ModelRegistry:
    reg = cnc.ModelRegistry()
    reg.set_data(x, y, classes=data.classes, batch_size=256)
    reg.add("base", model)
    for i in range(n_models - 1):
        reg.compress("base", "prune", amount=round(0.1 * (i + 1), 2), name=f"prune{i}")
    return reg


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--models", type=int, default=8)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    data = examples.digits()
    model = examples.train_digits_cnn(data, epochs=2)
    reps = -(-args.rows // len(data.test_labels))
    x = data.test_inputs.repeat(reps, 1, 1, 1)[: args.rows]
    y = data.test_labels.repeat(reps)[: args.rows]
    torch.set_num_threads(2)

    serial = timed(lambda: build(data, model, x, y, args.models).evaluate(progress=False))
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.run(torch.set_num_threads, 1)
        # Warm the workers (imports) the way a long-lived cluster already is.
        build(data, model, x[:256], y[:256], 1).evaluate(executor=client, progress=False)
        fanned = timed(
            lambda: build(data, model, x, y, args.models).evaluate(
                executor=client, progress=False, shard_rows=args.rows
            )
        )
        whole = timed(
            lambda: build(data, model, x, y, 1).evaluate(
                executor=client, progress=False, shard_rows=args.rows
            )
        )
        sharded = timed(
            lambda: build(data, model, x, y, 1).evaluate(
                executor=client, progress=False, shard_rows=args.rows // 4
            )
        )
    print(f"{args.models} models x {args.rows} rows")
    print(f"serial in process        {serial:8.2f} s")
    print(f"LocalCluster, 2 workers  {fanned:8.2f} s   ratio {fanned / serial:.2f} (goal <= 1.15)")
    print(f"one model, one shard     {whole:8.2f} s")
    print(f"one model, four shards   {sharded:8.2f} s   ratio {sharded / whole:.2f}")


if __name__ == "__main__":
    main()
