"""Causal language models: every scored token is a prediction.

Position t of a sequence is scored when the attention mask is 1 at t and at t+1: the
model's distribution at t predicts token t+1 (docs/definitions.md). Evaluation keeps, per
sequence and position, the negative log-likelihood of the next token (nats), the model's
top-1 token and whether it is the next token; never the distributions. Token KL between
two models needs both distributions at once, so a comparison runs both models over the
same batches (:func:`cnc_widgets.metrics.tokens.paired_token_stats`) and caches the
per-token table, not the logits.

``metrics()`` gives ``perplexity`` = exp(mean nll), ``nll`` (mean nats per scored token),
``token_accuracy`` (top-1 == next token) and ``tokens`` (the scored count).

Examples
--------
>>> enc = tok(texts, return_tensors="pt", padding=True)      # doctest: +SKIP
>>> reg.set_data(enc, task="causal_lm", tokenizer=tok, instances=texts)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import metrics as m
from ..evaluate.model_io import call_model
from ..metrics.adversarial import Objective
from .base import Task


def _logits(output: Any) -> torch.Tensor:
    logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
    if logits is None and isinstance(output, Mapping):
        logits = output.get("logits")
    if logits is None and isinstance(output, (tuple, list)) and output:
        logits = output[0]
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(output).__name__
        raise ValueError(
            f"a causal language model must return logits (batch, tokens, vocabulary), got "
            f"{shape}; use a *ForCausalLM model or return its logits"
        )
    return logits


def scored_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, T-1)`` bool: position t is scored when the mask is 1 at t and t+1."""
    mask = attention_mask.bool()
    return mask[:, :-1] & mask[:, 1:]


def token_outputs(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per-position next-token nll (nats, float32), top-1 token and correctness.

    Unscored positions hold 0 / -1 / False so every array stays finite.
    """
    z = logits[:, :-1]
    target = input_ids[:, 1:].to(z.device)
    scored = scored_mask(mask).to(z.device)
    # nll = logsumexp(z) - z[target]: no second (B, T, V) tensor for log-softmax.
    picked = z.gather(-1, target.unsqueeze(-1)).squeeze(-1).float()
    nll = torch.logsumexp(z.float(), dim=-1) - picked
    top = z.argmax(-1)
    return {
        "token_nll": torch.where(scored, nll, torch.zeros_like(nll)).cpu(),
        "token_top": torch.where(scored, top, torch.full_like(top, -1)).to(torch.int64).cpu(),
        "token_correct": (scored & (top == target)).cpu(),
        "token_scored": scored.cpu(),
    }


class NextTokenObjective(Objective):
    """The causal_lm attack: PGD on the word embeddings ascends the mean next-token loss
    (nats) over the scored positions; a sequence flips when the model's top-1 token at its
    last scored position changes from the clean one. Every sequence with a scored position
    counts (a language model has no "correct" gate: the clean prediction is the reference).
    """

    success = "the top-1 next token at the last scored position of the sequence changes"

    def _run(self, model: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from ..metrics.tokens import with_position_ids

        z = _logits(call_model(model, with_position_ids(model, batch)))[:, :-1].float()
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask
        return z, ids[:, 1:].to(z.device), scored_mask(mask).to(z.device)

    def targets(self, model: Any, batch: Any, labels: torch.Tensor) -> Any:
        return None  # the next tokens of the batch itself

    def loss(self, model: Any, batch: Any, targets: Any) -> torch.Tensor:
        z, nxt, scored = self._run(model, batch)
        if not bool(scored.any()):
            return z.sum() * 0.0
        return nn.functional.cross_entropy(z[scored], nxt[scored])

    def predict(self, model: Any, batch: Any) -> torch.Tensor:
        z, _, scored = self._run(model, batch)
        return last_scored_top(z, scored).cpu()

    def eligible(self, clean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return clean >= 0


def last_scored_top(logits: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """``(B,)`` top-1 token of ``logits`` ``(B, T-1, V)`` at each row's last scored
    position; -1 for a row with none."""
    steps = torch.arange(scored.shape[1], device=scored.device).expand_as(scored)
    last = torch.where(scored, steps, torch.full_like(steps, -1)).max(1).values
    top = logits[torch.arange(len(logits), device=logits.device), last.clamp_min(0)].argmax(-1)
    return torch.where(last >= 0, top, torch.full_like(top, -1))


class CausalLM(Task):
    """A model that returns next-token logits ``(B, T, V)`` for ``input_ids`` and a mask."""

    name = "causal_lm"
    quality = "perplexity"
    better: ClassVar[dict[str, str]] = {
        "perplexity": "lower",
        "nll": "lower",
        "token_accuracy": "higher",
        "tokens": "higher",
    }
    outputs = ("token_nll", "token_top", "token_correct", "token_scored")
    token_level = True

    def labels(self, labels: Any, n: int, options: Mapping[str, Any]) -> Any:
        if labels is not None:
            raise ValueError(
                "task='causal_lm' takes no labels: the next token is the label; pass the "
                "tokenized text (input_ids, attention_mask) as inputs"
            )
        return np.zeros(n, dtype=np.int64)

    def options(self, options: Mapping[str, Any], n: int) -> dict[str, Any]:
        options = dict(options)
        tokenizer = options.pop("tokenizer", None)
        if options:
            raise ValueError(
                f"set_data(task='causal_lm') takes tokenizer= and no {sorted(options)}"
            )
        return {"_tokenizer": tokenizer} if tokenizer is not None else {}

    def run(self, model: Any, batch: Any, call: Any) -> Any:
        # Positions counted from the first real token, as the paired token comparison
        # does, so left padding scores like no padding and both agree.
        from ..metrics.tokens import with_position_ids

        return call(model, with_position_ids(model, batch))

    def batch_outputs(self, output: Any, batch: Any) -> dict[str, torch.Tensor]:
        if not isinstance(batch, Mapping) or "input_ids" not in batch:
            raise ValueError(
                "task='causal_lm' needs inputs as a dict with input_ids (and attention_mask): "
                "tokenize with return_tensors='pt'"
            )
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask
        return token_outputs(_logits(output), ids, mask)

    def finish(self, name: str, arrays: Mapping[str, np.ndarray], data: Any) -> dict:
        from ..evaluate.errors import EvaluationError

        scored = arrays["token_scored"]
        count = int(scored.sum())
        if count == 0:
            raise EvaluationError(
                f"model {name!r}: no position is scored (every sequence has fewer than two "
                "real tokens); pass longer texts"
            )
        nll = float(arrays["token_nll"][scored].astype(np.float64).mean())
        return {
            "perplexity": float(np.exp(nll)),
            "nll": nll,
            "token_accuracy": float(arrays["token_correct"][scored].mean()),
            "tokens": count,
        }

    # -- comparison ---------------------------------------------------------------------

    def check_pair(self, a: str, b: str, ra: Mapping, rb: Mapping) -> None:
        if ra["token_scored"].shape != rb["token_scored"].shape:
            raise ValueError(f"{a!r} and {b!r} were evaluated on different token windows")

    def predictions(self, result: Mapping[str, Any]) -> np.ndarray:
        return result["token_top"][result["token_scored"]]

    def errors(self, result: Mapping[str, Any], data: Any) -> np.ndarray:
        return ~result["token_correct"][result["token_scored"]]

    def agreement(self, ra: Mapping, rb: Mapping, data: Any) -> float:
        return m.agreement(self.predictions(ra), self.predictions(rb))

    def error_jaccard(self, ra: Mapping, rb: Mapping, data: Any) -> float:
        return m.jaccard(self.errors(ra, data), self.errors(rb, data))

    def instance_table(
        self, ra: Mapping, rb: Mapping, data: Any, tokens: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """One row per sequence: mean nll of a and b, same-top fraction, scored tokens;
        with the paired token table also mean and max KL and mean dp."""
        scored = ra["token_scored"]
        count = scored.sum(1)
        safe = np.maximum(count, 1)
        same = (ra["token_top"] == rb["token_top"]) & scored
        table = pd.DataFrame(
            {
                "tokens": count,
                "nll_a": ra["token_nll"].astype(np.float64).sum(1) / safe,
                "nll_b": rb["token_nll"].astype(np.float64).sum(1) / safe,
                "same_top": same.sum(1) / safe,
                "correct_a": ra["token_correct"].sum(1) / safe,
                "correct_b": rb["token_correct"].sum(1) / safe,
            },
            index=pd.Index(list(data.ids), name="id"),
        )
        table["nll_change"] = table["nll_b"] - table["nll_a"]
        if tokens is not None:
            by = tokens.groupby("instance")
            table["kl_mean"] = by["kl"].mean().reindex(range(len(table))).to_numpy()
            table["kl_max"] = by["kl"].max().reindex(range(len(table))).to_numpy()
            table["dp_mean"] = by["dp"].mean().reindex(range(len(table))).to_numpy()
        table.loc[count == 0, ["nll_a", "nll_b", "same_top", "correct_a", "correct_b"]] = np.nan
        if isinstance(data.instances, list):
            table.insert(0, "instance", data.instances)
        return table

    def attack_objective(self) -> NextTokenObjective:
        return NextTokenObjective()

    def summary(
        self, ra: Mapping, rb: Mapping, data: Any, instances: pd.DataFrame
    ) -> dict[str, Any]:
        scored = ra["token_scored"]
        nll_a = float(ra["token_nll"][scored].astype(np.float64).mean())
        nll_b = float(rb["token_nll"][scored].astype(np.float64).mean())
        row = {
            "perplexity_a": float(np.exp(nll_a)),
            "perplexity_b": float(np.exp(nll_b)),
            "ppl_ratio": float(np.exp(nll_b - nll_a)),
            "agreement": self.agreement(ra, rb, data),
            "error_jaccard": self.error_jaccard(ra, rb, data),
        }
        if "kl_mean" in instances.columns:
            weights = instances["tokens"].to_numpy(dtype=np.float64)
            kl = instances["kl_mean"].to_numpy(dtype=np.float64)
            ok = weights > 0
            row["mean_kl"] = float(np.sum(kl[ok] * weights[ok]) / weights[ok].sum())
        return row
