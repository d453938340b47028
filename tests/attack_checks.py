"""What every task's adversarial overlap must satisfy, shared by the task tests.

The direct recomputations (a model run on its crafted embeddings through ``inputs_embeds``,
not through the library's hook) stay in each task's test: they differ per task.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from cnc_widgets.metrics.adversarial import AttackResult, attack_model, plan_attack, row_batches


def check_overlap_defined(reg: Any, base: str, other: str, **budget: Any) -> dict:
    """A model with itself overlaps 1.0; with another the overlap is in [0, 1] and its
    details name the task's success test; compare_many's row carries it."""
    assert reg.compare(base, base).adversarial_overlap(**budget) == 1.0
    details = reg.compare(base, other).adversarial_details(**budget)
    assert 0.0 <= details["value"] <= 1.0
    assert details["instances"] == len(reg.data)  # budget["max_instances"] covers every row
    assert details["success"] == reg.task.attack_objective().success
    assert details["source_a"] == details["source_b"] == "direct"
    # The Jaccard of the two flipped sets, from each model's attack run here directly.
    a, b = crafted_on(reg, base, **budget), crafted_on(reg, other, **budget)
    assert details["flipped_a"] == int(a.flipped.sum())
    assert details["flipped_b"] == int(b.flipped.sum())
    union = (a.flipped | b.flipped).sum()
    expected = 1.0 if union == 0 else (a.flipped & b.flipped).sum() / union
    assert details["value"] == pytest.approx(expected)
    return details


def check_budget(reg: Any, base: str, other: str, small: float, large: float, **budget) -> None:
    """eps = 0 flips nothing; a larger eps flips at least as many as a smaller one, and some."""
    cmp = reg.compare(base, other)
    none = cmp.adversarial_details(eps=0.0, **budget)
    assert none["flipped_a"] == none["flipped_b"] == 0 and none["value"] == 1.0
    lo = cmp.adversarial_details(eps=small, **budget)
    hi = cmp.adversarial_details(eps=large, **budget)
    assert hi["flipped_a"] >= lo["flipped_a"] and hi["flipped_b"] >= lo["flipped_b"]
    assert hi["flipped_a"] > 0


def check_transfer(reg: Any, base: str, quantized: str, **budget: Any) -> None:
    """A model without float gradients is attacked with what was crafted on its ancestor."""
    details = reg.compare(base, quantized).adversarial_details(**budget)
    assert details["source_a"] == "direct"
    assert details["source_b"] == f"transfer from {base}"
    assert 0.0 <= details["value"] <= 1.0
    made = crafted_on(reg, base, **budget).crafted
    again = crafted_on(reg, quantized, crafted=made, surrogate=reg.model(base), **budget)
    assert details["flipped_b"] == int(again.flipped.sum())


def check_attack_contract(
    reg: Any, base: str, other: str, quantized: str, *, small: float = 0.05,
    large: float = 2.0, **budget: Any,
) -> None:
    """What every task's attack keeps: :func:`check_overlap_defined` and
    :func:`check_budget` on (base, other), :func:`check_transfer` on (base, quantized)."""
    check_overlap_defined(reg, base, other, **budget)
    check_budget(reg, base, other, small=small, large=large, **budget)
    check_transfer(reg, base, quantized, **budget)


def crafted_on(
    reg: Any,
    name: str,
    *,
    eps: float | None = None,
    steps: int = 10,
    max_instances: int = 256,
    crafted: list | None = None,
    surrogate: torch.nn.Module | None = None,
) -> AttackResult:
    """The attack the comparison runs on ``name`` (every row: ``max_instances`` >= N), run
    here directly; ``result.crafted`` holds each batch's ``(module, delta)``."""
    assert max_instances >= len(reg.data)
    attack = plan_attack(reg.data.inputs, eps=eps, steps=steps, seed=0)
    return attack_model(
        reg.model(name),
        batches(reg),
        attack,
        surrogate=surrogate,
        surrogate_name=None,
        crafted=crafted,
        objective=reg.task.attack_objective(),
    )


def batches(reg: Any) -> list:
    rows = np.arange(len(reg.data))
    return row_batches(reg.data.inputs, reg.data.labels, rows, reg.data.batch_size)


def embedded(model: torch.nn.Module, ids: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The model's word embeddings of ``ids`` plus the crafted ``delta`` (for inputs_embeds)."""
    with torch.no_grad():
        return model.get_input_embeddings()(ids) + delta
