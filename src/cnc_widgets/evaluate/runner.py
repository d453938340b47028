"""Evaluate one registered model on the registry's data: result arrays and metrics.

The registry caches what this returns under a key made of the weights' and the
data's fingerprints, so nothing here runs twice for the same content.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
from torch import nn

from .data import EvalData
from .efficiency import efficiency
from .inference import EvalResult, EvaluationError, evaluate_model

__all__ = ["EvaluationError", "evaluate_one"]

LATENCY_WARMUP, LATENCY_REPEATS = 2, 10


def evaluate_one(
    name: str, model: nn.Module, data: EvalData, *, progress: bool = True, latency: bool = True
) -> dict[str, Any]:
    """Logits, predictions, embeddings, activation statistics and metrics of ``model``.

    ``macs`` and ``effective_macs`` are per instance; ``latency_ms`` and
    ``peak_memory_bytes`` are for one batch of ``data.batch_size`` rows.
    """
    if data.inputs is None:
        raise ValueError(
            "the evaluation inputs are not loaded (reopened store); "
            "call reg.set_data(inputs, labels)"
        )
    result = evaluate_model(
        model,
        data.inputs,
        batch_size=data.batch_size,
        embedding=data.embedding,
        activations=True,
        progress=progress,
        name=name,
    )
    rows = min(len(data), data.batch_size)
    try:
        cost = efficiency(
            model,
            data.batch(0, rows),
            latency=latency,
            memory=True,
            warmup=LATENCY_WARMUP,
            repeats=LATENCY_REPEATS,
        )
    except Exception as exc:
        raise EvaluationError(f"model {name!r}: measuring efficiency failed: {exc}") from exc
    return finish_record(name, result, cost, data)


def finish_record(
    name: str, result: EvalResult, cost: dict[str, Any], data: EvalData
) -> dict[str, Any]:
    """The cacheable record of one evaluation: checks, accuracy, per-instance costs.

    Shared by the local run and the fan-out (:mod:`.fanout`), so both store the same.
    """
    rows = min(len(data), data.batch_size)
    cost = dict(cost)
    cost["macs"] = cost["macs"] / rows
    cost["effective_macs"] = cost["effective_macs"] / rows
    predictions = result.logits.argmax(1)
    n_classes = len(data.classes)
    if result.logits.shape[1] != n_classes:
        raise EvaluationError(
            f"model {name!r} outputs {result.logits.shape[1]} logits per instance but the data "
            f"has {n_classes} classes; pass classes= to set_data or fix the model's head"
        )
    metrics = {
        "accuracy": float(np.mean(predictions == data.labels)),
        **cost,
        "eval_batch_size": data.batch_size,
    }
    return to_record(result, metrics, predictions)


def to_record(
    result: EvalResult, metrics: dict[str, Any], predictions: np.ndarray
) -> dict[str, Any]:
    """A flat dict of arrays plus JSON facts, as the store keeps it."""
    record: dict[str, Any] = {"metrics": metrics, "predictions": predictions}
    for f in fields(result):
        value = getattr(result, f.name)
        record[f.name] = value
    return record
