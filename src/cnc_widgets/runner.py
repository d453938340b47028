"""Evaluate one registered model on the registry's data: results and metrics."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import EvalData


class EvaluationError(RuntimeError):
    """A model failed on the evaluation data; the message names model and batch."""


def evaluate_one(name: str, model: nn.Module, data: EvalData, *, progress: bool = True) -> dict[str, Any]:
    """Logits, predictions and metrics of ``model`` on ``data``."""
    model.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(data), data.batch_size):
            batch = data.batch(start, start + data.batch_size)
            try:
                out = model(**batch) if isinstance(batch, dict) else model(batch)
            except Exception as exc:
                raise EvaluationError(
                    f"model {name!r} raised on batch {start // data.batch_size} "
                    f"(rows {start}..{start + data.batch_size - 1}): {exc}"
                ) from exc
            chunks.append(out.float().cpu())
    logits = torch.cat(chunks).numpy()
    preds = logits.argmax(1)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    metrics = {
        "accuracy": float(np.mean(preds == data.labels)),
        "params": int(sum(p.numel() for p in model.parameters())),
        "size_bytes": buffer.tell(),
    }
    return {"logits": logits, "predictions": preds, "metrics": metrics}
