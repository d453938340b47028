"""Latency measured so that it holds on a shared machine: interleaved, one thread, spread."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.evaluate.latency import NOISY, latency_columns, time_models


class Sleeper(nn.Module):
    """A forward pass of a known duration (sleep does not depend on the machine's load)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.linear = nn.Linear(3, 2)
        self.calls = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(time.perf_counter())
        time.sleep(self.seconds)
        return self.linear(x)


def test_columns_are_the_percentiles_of_the_passes():
    times = [5.0, 1.0, 3.0, 2.0, 4.0, 100.0]
    cols = latency_columns(times, threads=1)
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    assert cols["latency_ms"] == med and cols["latency_iqr_ms"] == q3 - q1
    assert cols["latency_min_ms"] == 1.0 and cols["latency_max_ms"] == 100.0
    assert cols["latency_repeats"] == 6 and cols["latency_threads"] == 1
    assert cols["latency_noisy"] == ((q3 - q1) > NOISY * med)
    assert not latency_columns([10.0] * 5, 1)["latency_noisy"]


def test_models_are_timed_in_interleaved_rounds_on_one_thread():
    a, b = Sleeper(0.004), Sleeper(0.012)
    before = torch.get_num_threads()
    stats = time_models({"a": a, "b": b}, torch.zeros(2, 3), warmup=1, repeats=6)
    assert torch.get_num_threads() == before  # restored
    assert stats["a"]["latency_threads"] == 1
    assert stats["a"]["latency_repeats"] == stats["b"]["latency_repeats"] == 6
    # Interleaved: b's timed calls sit between a's, not after all of them.
    timed_a, timed_b = a.calls[1:], b.calls[1:]
    assert min(timed_b) < max(timed_a)
    assert stats["a"]["latency_ms"] == pytest.approx(4.0, abs=3.0)
    assert stats["b"]["latency_ms"] > stats["a"]["latency_ms"]


def test_a_slow_model_stops_at_its_budget_while_others_go_on():
    slow, fast = Sleeper(0.2), Sleeper(0.001)
    stats = time_models({"s": slow, "f": fast}, torch.zeros(1, 3), repeats=12, budget_s=0.5)
    assert stats["s"]["latency_repeats"] == 3  # at least 3, then the 0.5 s budget is spent
    assert stats["f"]["latency_repeats"] == 12


def test_registry_records_median_and_spread_for_every_model():
    torch.manual_seed(0)
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    reg = cnc.ModelRegistry()
    reg.set_data(x, y, batch_size=16)
    reg.add("base", nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)))
    reg.compress("base", "prune", amount=0.5, name="p")
    reg.evaluate(progress=False)
    table = reg.metrics()
    for column in ("latency_ms", "latency_iqr_ms", "latency_min_ms", "latency_max_ms"):
        assert (table[column] > 0).all() or column == "latency_iqr_ms", column
    assert (table["latency_min_ms"] <= table["latency_ms"]).all()
    assert (table["latency_ms"] <= table["latency_max_ms"]).all()
    assert (table["latency_threads"] == 1).all()
