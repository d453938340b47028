"""Latency that holds on a shared machine: interleaved timed passes, one thread, the spread.

One median alone hides noise: on a machine where another process comes and goes, the same
model measured twice gave 12.9 and 39.3 ms, a pruned copy 443.9 and 170.3 ms. So models
evaluated together are timed together, round by round (each round times every model once,
in a rotated order), so a burst of load hits all of them alike; torch runs on one thread
unless asked (several threads on a two-core machine fight whatever else runs); and the
spread is reported beside the median: the interquartile range, min and max, the number of
timed passes and the threads. A spread above :data:`NOISY` of the median is flagged, and
the views say so.

Examples
--------
>>> import torch
>>> from torch import nn
>>> stats = time_models({"a": nn.Linear(4, 2), "b": nn.Linear(4, 8)}, torch.zeros(3, 4))
>>> sorted(stats["a"])[:3]
['latency_iqr_ms', 'latency_max_ms', 'latency_min_ms']
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .model_io import call_model, prepare_inputs

__all__ = ["NOISY", "latency_columns", "time_models"]

# Interquartile range above this fraction of the median: the number is noisy.
NOISY = 0.25


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """``torch.set_num_threads(n)`` inside (unchanged for ``None``), restored afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def latency_columns(times_ms: list[float], threads: int) -> dict[str, Any]:
    """The latency columns of ``metrics()`` from the timed passes of one model."""
    t = np.asarray(times_ms, dtype=np.float64)
    q1, median, q3 = np.percentile(t, [25, 50, 75])
    return {
        "latency_ms": float(median),
        "latency_iqr_ms": float(q3 - q1),
        "latency_min_ms": float(t.min()),
        "latency_max_ms": float(t.max()),
        "latency_repeats": len(t),
        "latency_threads": threads,
        "latency_noisy": bool(median > 0 and (q3 - q1) > NOISY * median),
    }


def time_models(
    models: Mapping[str, nn.Module],
    example_input: Any,
    *,
    warmup: int = 2,
    repeats: int = 15,
    threads: int | None = 1,
    budget_s: float = 2.0,
) -> dict[str, dict[str, Any]]:
    """Time one forward pass of every model on ``example_input``, interleaved.

    Each model gets ``warmup`` untimed passes (fewer when one pass took a quarter of
    ``budget_s``), then rounds of one timed pass per model in a rotated order, until each
    has ``repeats`` passes or has spent ``budget_s`` seconds on at least 3. Models must
    be in eval mode (the caller's job); passes run under ``torch.inference_mode``.

    Returns
    -------
    dict
        ``name -> latency_columns(...)``: ``latency_ms`` (median), ``latency_iqr_ms``,
        ``latency_min_ms``, ``latency_max_ms``, ``latency_repeats``, ``latency_threads``,
        ``latency_noisy``.
    """
    names = list(models)
    inputs = {n: prepare_inputs(models[n], example_input) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch_threads(threads) as used, torch.inference_mode():
        for n in names:
            for _ in range(warmup):
                start = time.perf_counter()
                call_model(models[n], inputs[n])
                if time.perf_counter() - start > budget_s / 4:
                    break
        active = list(names)
        round_ = 0
        while active:
            shift = round_ % len(active)
            for n in active[shift:] + active[:shift]:
                start = time.perf_counter()
                call_model(models[n], inputs[n])
                times[n].append((time.perf_counter() - start) * 1000.0)
            round_ += 1
            active = [
                n
                for n in active
                if len(times[n]) < repeats
                and not (len(times[n]) >= 3 and sum(times[n]) > budget_s * 1000.0)
            ]
    return {n: latency_columns(times[n], used) for n in names}
