"""Evaluate one registered model on the registry's data: result arrays and metrics.

The registry caches what this returns under a key made of the weights' and the
data's fingerprints, so nothing here runs twice for the same content.
"""

from __future__ import annotations

import contextlib
from dataclasses import fields
from typing import Any

import numpy as np
from torch import nn

from ..tasks import Task, get_task
from .data import EvalData
from .efficiency import efficiency
from .inference import EvalResult, EvaluationError, evaluate_model
from .latency import time_models
from .model_io import eval_mode

__all__ = ["EvaluationError", "evaluate_one", "measure_cost", "measure_latency"]

LATENCY_WARMUP, LATENCY_REPEATS = 2, 15


def measure_cost(model: nn.Module, example: Any, *, latency: bool = True) -> dict[str, Any]:
    """Efficiency of ``model`` on one batch ``example``, as every evaluation records it
    (here, and on the workers of :mod:`.fanout`): peak memory, MACs, sizes and, with
    ``latency``, the timed passes of :func:`measure_latency` (median and spread)."""
    cost = efficiency(model, example, latency=False, memory=True)
    if latency:
        cost.update(measure_latency({"model": model}, example)["model"])
    return cost


def measure_latency(models: dict[str, nn.Module], example: Any) -> dict[str, dict[str, Any]]:
    """Latency columns of each model on ``example``, timed together (interleaved rounds, one
    thread; see :mod:`.latency`), every model in eval mode for the passes."""
    with contextlib.ExitStack() as stack:
        for model in models.values():
            stack.enter_context(eval_mode(model))
        return time_models(models, example, warmup=LATENCY_WARMUP, repeats=LATENCY_REPEATS)


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
        task=data_task(data),
    )
    rows = min(len(data), data.batch_size)
    try:
        cost = measure_cost(model, data.batch(0, rows), latency=latency)
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
    task = data_task(data)
    metrics = {
        **task.finish(name, result.outputs, data),
        **cost,
        "eval_batch_size": data.batch_size,
    }
    record = to_record(result, metrics, task.predictions(result.outputs))
    record.update(task.record_arrays(result.outputs))
    return record


def data_task(data: EvalData) -> Task:
    """The task ``data`` was set for (classification for data made before tasks existed)."""
    return get_task(getattr(data, "task", "classification"), getattr(data, "task_options", None))


def to_record(
    result: EvalResult, metrics: dict[str, Any], predictions: np.ndarray
) -> dict[str, Any]:
    """A flat dict of arrays plus JSON facts, as the store keeps it: the task's outputs
    under their own names (``logits`` for a classifier), beside the other fields."""
    record: dict[str, Any] = {"metrics": metrics, "predictions": predictions}
    for f in fields(result):
        value = getattr(result, f.name)
        if f.name == "outputs":
            record.update(value)
        else:
            record[f.name] = value
    return record
