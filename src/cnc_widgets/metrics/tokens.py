"""Causal language models compared token by token, as llama.cpp's ``perplexity --kl-divergence``.

Which positions count: in a batch of token ids ``x`` with attention mask ``m`` (N x T),
position ``t`` is *scored* when ``m[t] == 1`` and ``m[t+1] == 1``; it predicts the next token
``x[t+1]`` from the tokens up to ``t``. Left and right padding, and several separate spans
in one row, all follow from that one rule. Per scored token and model ``m``:

- ``nll_m = -ln p_m(x[t+1])`` in nats, ``top_m = argmax p_m`` (first index among ties),
  ``correct_m = [top_m == x[t+1]]``; perplexity ``= exp(mean nll)``;
- ``kl = sum over the FULL vocabulary of p_a ln(p_a / p_b)`` in nats (a is the reference),
  from a float64 log-softmax of both models' logits, with no floor and no top-k;
- ``dp = p_b(x[t+1]) - p_a(x[t+1])``.

Full distributions are never stored: :func:`paired_token_stats` runs both models over the
same batch and reduces their logits at once, ``O(batch x T x vocabulary)`` memory at most
(the logits the models return) and never ``N x T x vocabulary``.

Models are called with ``position_ids`` counted from each row's first attended token when
their ``forward`` takes them, so a left-padded row is scored as the same row unpadded
(transformers counts positions from the first column otherwise, which changes absolute
position embeddings such as GPT-2's).

Example
-------
>>> scores = score_tokens(model, enc, batch_size=8)  # doctest: +SKIP
>>> lm_metrics(scores.table)["perplexity"]  # doctest: +SKIP
>>> table = paired_token_stats(base, int8, enc, batch_size=8)  # doctest: +SKIP
>>> token_stats(table)[["kl_mean", "same_top", "ppl_ratio"]]  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..compress.tensor_subclass import is_tensor_subclass
from ..evaluate.heap import release_freed_memory
from ..evaluate.model_io import call_model, prepare_inputs
from ..evaluate.model_io import eval_mode as evaluating

__all__ = [
    "TOKEN_STATS",
    "TOKEN_STATS_SEM",
    "TokenScores",
    "lm_metrics",
    "paired_token_stats",
    "score_tokens",
    "scored_positions",
    "sequence_table",
    "token_stats",
    "token_texts",
]

Inputs = Mapping[str, torch.Tensor]

# The keys of token_stats, in the order llama.cpp prints them (issue 29's contract).
TOKEN_STATS = (
    "kl_mean", "kl_sem", "kl_median", "kl_max", "kl_p99_9", "kl_p99", "kl_p95", "kl_p90",
    "kl_p10", "kl_p5", "kl_p1", "kl_p0_1", "same_top", "dp_mean", "dp_median", "dp_rms",
    "dp_p99", "dp_p1", "ppl_a", "ppl_b", "ppl_ratio", "ln_ppl_ratio", "logloss_corr",
)  # fmt: skip
# The uncertainties llama.cpp prints as "value ± sem", and the count.
TOKEN_STATS_SEM = (
    "same_top_sem", "dp_mean_sem", "dp_rms_sem", "ppl_a_sem", "ppl_b_sem", "ppl_ratio_sem",
    "ln_ppl_ratio_sem", "tokens",
)  # fmt: skip
# Rows of float64 log-probabilities reduced at once: ~16 MiB per array whatever the vocabulary.
_CHUNK_ELEMENTS = 2**21


def scored_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(N, T-1)`` bool: position ``t`` is scored when the mask is 1 at ``t`` and ``t+1``.

    Examples
    --------
    >>> import torch
    >>> scored_positions(torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]])).int().tolist()
    [[0, 1, 1], [1, 0, 0]]
    """
    if attention_mask.ndim != 2:
        raise ValueError(f"attention_mask must be (N, T), got shape {tuple(attention_mask.shape)}")
    m = attention_mask.bool()
    return m[:, :-1] & m[:, 1:]


def _check_inputs(inputs: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
        raise ValueError(
            "causal LM inputs must be a dict with 'input_ids' (and 'attention_mask'), "
            "e.g. tokenizer(texts, return_tensors='pt', padding=True)"
        )
    ids = inputs["input_ids"]
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
        raise ValueError("input_ids must be an (N, T) tensor of token ids")
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask
    if mask.shape != ids.shape:
        raise ValueError(
            f"attention_mask {tuple(mask.shape)} and input_ids {tuple(ids.shape)} differ in shape"
        )
    return ids, mask


def _takes_position_ids(model: nn.Module) -> bool:
    try:
        return "position_ids" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _batches(inputs: Inputs, batch_size: int) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    ids, mask = _check_inputs(inputs)
    for start in range(0, len(ids), batch_size):
        stop = start + batch_size
        batch = {
            k: v[start:stop] if isinstance(v, torch.Tensor) and len(v) == len(ids) else v
            for k, v in inputs.items()
        }
        batch["attention_mask"] = mask[start:stop]
        yield start, batch


def with_position_ids(model: nn.Module, batch: Any) -> Any:
    """``batch`` with ``position_ids`` counted from the first attended token, for a model
    that takes them: a left-padded row then scores like the same row unpadded (GPT-2 and
    Llama otherwise count positions from the padding)."""
    if (
        isinstance(batch, Mapping)
        and "position_ids" not in batch
        and batch.get("attention_mask") is not None
        and _takes_position_ids(model)
    ):
        batch = dict(batch)
        batch["position_ids"] = (batch["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    return batch


def _call(model: nn.Module, batch: dict[str, torch.Tensor], hidden: list) -> torch.Tensor:
    """The model's ``(B, T, V)`` logits as float32; the last hidden state appended to
    ``hidden`` (the input of the output embedding) when ``hidden`` is a list."""
    batch = with_position_ids(model, batch)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    handle = None
    if hidden is not None:
        if head is None:
            raise ValueError(
                f"{type(model).__name__} has no get_output_embeddings(): cannot take the last "
                "hidden state (the input of the output head) as the sequence representation"
            )
        handle = head.register_forward_pre_hook(lambda _m, args: hidden.append(args[0]))
    try:
        output = call_model(model, prepare_inputs(model, batch))
    finally:
        if handle is not None:
            handle.remove()
    logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
    if logits is None and isinstance(output, tuple | list) and output:
        logits = output[0]
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
        raise ValueError(
            f"{type(model).__name__} did not return (batch, tokens, vocabulary) logits; a causal "
            "LM (AutoModelForCausalLM) returns them in .logits"
        )
    return logits.float()


def _no_inference_mode(model: nn.Module) -> bool:
    # torchao's tensor-subclass weights cannot be read under inference_mode.
    return any(is_tensor_subclass(p) for p in model.parameters())


def _log_softmax_rows(logits: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    rows = max(1, _CHUNK_ELEMENTS // max(1, logits.shape[-1]))
    for start in range(0, len(logits), rows):
        part = slice(start, start + rows)
        yield part, torch.log_softmax(logits[part].double(), dim=-1)


@dataclass
class TokenScores:
    """One model's pass over a batch of sequences (see :func:`score_tokens`).

    ``table``: one row per scored token: ``instance``, ``position`` (column of the
    predicted token in ``input_ids``), ``token`` (its id), ``nll``, ``top``, ``correct``.
    ``embeddings``: ``(N, d)`` float32, the mean of the last hidden state over each
    sequence's scored positions (NaN rows for sequences with none), or ``None``.
    """

    table: pd.DataFrame
    embeddings: np.ndarray | None = None


def score_tokens(
    model: nn.Module, inputs: Inputs, *, batch_size: int = 16, embeddings: bool = False
) -> TokenScores:
    """Per-token NLL and top-1 of one causal LM, and optionally the sequence representation.

    Parameters
    ----------
    model
        A causal LM returning ``(B, T, V)`` logits (``.logits`` of a transformers model).
    inputs
        ``input_ids`` (N, T) and ``attention_mask`` (N, T; all ones when absent).
    batch_size
        Rows per forward pass. Results do not depend on it beyond float round-off for
        float models (int8 dynamic quantization scales activations over the whole batch,
        padding included, so its numbers do).
    embeddings
        Also return the sequence representation used for kNN and OOD: the mean, over the
        sequence's scored positions, of the input to the output head (the last hidden
        state, after the final norm).

    Examples
    --------
    >>> scores = score_tokens(model, enc, embeddings=True)  # doctest: +SKIP
    >>> scores.table.nll.mean(), scores.embeddings.shape  # doctest: +SKIP
    """
    parts: list[dict[str, np.ndarray]] = []
    pooled: list[torch.Tensor] = []
    with evaluating(model, inference=not _no_inference_mode(model)):
        for start, batch in _batches(inputs, batch_size):
            release_freed_memory()  # the last batch's temporaries (see heap.py)
            hidden: list | None = [] if embeddings else None
            logits = _call(model, batch, hidden)
            scored = scored_positions(batch["attention_mask"])
            target = batch["input_ids"][:, 1:][scored]
            rows = logits[:, :-1][scored]
            nll = torch.empty(len(rows), dtype=torch.float64)
            for part, logp in _log_softmax_rows(rows):
                nll[part] = -logp.gather(1, target[part, None]).squeeze(1)
            top = rows.argmax(-1)
            where = scored.nonzero()
            parts.append(
                {
                    "instance": (where[:, 0] + start).numpy(),
                    "position": (where[:, 1] + 1).numpy(),
                    "token": target.numpy(),
                    "nll": nll.numpy(),
                    "top": top.numpy(),
                    "correct": (top == target).numpy(),
                }
            )
            if hidden is not None:
                pooled.append(_pool(hidden[-1], scored))
    table = _frame(parts, ["instance", "position", "token", "nll", "top", "correct"])
    emb = torch.cat(pooled).numpy() if embeddings else None
    return TokenScores(table, emb)


def _pool(hidden: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    # Select rather than multiply by the mask: padded positions may hold NaN.
    h = hidden[:, :-1].float()
    w = scored.to(h.dtype)
    total = torch.where(scored[..., None], h, torch.zeros((), dtype=h.dtype)).sum(1)
    return total / w.sum(1, keepdim=True)  # 0/0 = NaN for a row with nothing scored


def _frame(parts: list[dict[str, np.ndarray]], columns: list[str]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({c: [] for c in columns})
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in columns})


def lm_metrics(table: pd.DataFrame) -> dict[str, float]:
    """``perplexity``, ``nll`` (mean nats per scored token), ``token_accuracy`` and
    ``tokens`` (the scored count) of a :func:`score_tokens` table.

    Examples
    --------
    >>> import pandas as pd
    >>> lm_metrics(pd.DataFrame({"nll": [1.0, 3.0], "correct": [True, False]}))["perplexity"]
    7.38905609893065
    """
    if len(table) == 0:
        raise ValueError(
            "no scored tokens: every sequence has fewer than two attended tokens "
            "(attention_mask 1 at t and t+1)"
        )
    nll = float(np.mean(table["nll"].to_numpy(np.float64)))
    return {
        "perplexity": float(np.exp(nll)),
        "nll": nll,
        "token_accuracy": float(np.mean(table["correct"].to_numpy(bool))),
        "tokens": len(table),
    }


def paired_token_stats(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: Inputs,
    *,
    batch_size: int = 16,
    tokenizer: Any = None,
) -> pd.DataFrame:
    """Both models over the same batches, one row per scored token.

    Columns: ``instance``, ``position`` (column of the predicted token), ``token`` (its id),
    ``text`` (its text, only with ``tokenizer``), ``nll_a``, ``nll_b``, ``kl`` (KL(p_a ||
    p_b) over the full vocabulary, nats), ``dp`` (``p_b - p_a`` of the next token),
    ``top_a``, ``top_b``. Each batch's logits are reduced while both are in memory and then
    dropped: at most the two models' ``(batch, T, V)`` logits and ~16 MiB float64 chunks.

    Unlike llama.cpp, no vocabulary entry is skipped (it drops entries with ln p_a <= -16
    and stores the reference log-probabilities as 16-bit integers) and every scored position
    counts (it scores only the second half of each context window).

    Examples
    --------
    >>> table = paired_token_stats(base, pruned, enc, batch_size=8)  # doctest: +SKIP
    >>> table.kl.mean()  # doctest: +SKIP
    """
    parts: list[dict[str, np.ndarray]] = []
    inference = not (_no_inference_mode(model_a) or _no_inference_mode(model_b))
    with evaluating(model_a, inference=inference), evaluating(model_b, inference=inference):
        for start, batch in _batches(inputs, batch_size):
            release_freed_memory()  # the last batch's temporaries (see heap.py)
            scored = scored_positions(batch["attention_mask"])
            target = batch["input_ids"][:, 1:][scored]
            rows_a = _call(model_a, batch, None)[:, :-1][scored]
            rows_b = _call(model_b, batch, None)[:, :-1][scored]
            if rows_a.shape != rows_b.shape:
                raise ValueError(
                    f"the two models' vocabularies differ ({rows_a.shape[-1]} vs "
                    f"{rows_b.shape[-1]}): a token comparison needs the same tokenizer"
                )
            n = len(target)
            kl, nll_a, nll_b = (torch.empty(n, dtype=torch.float64) for _ in range(3))
            for (part, lpa), (_, lpb) in zip(
                _log_softmax_rows(rows_a), _log_softmax_rows(rows_b), strict=True
            ):
                pa = lpa.exp()
                # p_a = 0 contributes 0 even where ln p_b = -inf (0 * inf would be NaN).
                terms = torch.where(pa > 0, pa * (lpa - lpb), torch.zeros((), dtype=pa.dtype))
                kl[part] = terms.sum(-1)
                nll_a[part] = -lpa.gather(1, target[part, None]).squeeze(1)
                nll_b[part] = -lpb.gather(1, target[part, None]).squeeze(1)
            where = scored.nonzero()
            parts.append(
                {
                    "instance": (where[:, 0] + start).numpy(),
                    "position": (where[:, 1] + 1).numpy(),
                    "token": target.numpy(),
                    "nll_a": nll_a.numpy(),
                    "nll_b": nll_b.numpy(),
                    "kl": kl.numpy(),
                    "dp": (torch.exp(-nll_b) - torch.exp(-nll_a)).numpy(),
                    "top_a": rows_a.argmax(-1).numpy(),
                    "top_b": rows_b.argmax(-1).numpy(),
                }
            )
    columns = ["instance", "position", "token", "nll_a", "nll_b", "kl", "dp", "top_a", "top_b"]
    table = _frame(parts, columns)
    if tokenizer is not None:
        table.insert(3, "text", token_texts(tokenizer, table["token"].to_numpy()))
    return table


def token_texts(tokenizer: Any, tokens: np.ndarray) -> list[str]:
    """The text of each token id, each distinct id decoded once."""
    ids = np.asarray(tokens, dtype=np.int64)
    unique, inverse = np.unique(ids, return_inverse=True)
    texts = [tokenizer.decode([int(i)]) for i in unique]
    return [texts[i] for i in inverse.ravel()]


def _sem(x: np.ndarray) -> float:
    # llama.cpp's uncertainty of a mean: sqrt(population variance / (n - 1)).
    return float(np.sqrt(np.var(x) / (len(x) - 1))) if len(x) > 1 else float("nan")


def token_stats(table: pd.DataFrame) -> pd.Series:
    """llama.cpp's ``perplexity --kl-divergence`` statistics of a :func:`paired_token_stats` table.

    Keys (:data:`TOKEN_STATS`, then :data:`TOKEN_STATS_SEM`):

    - ``kl_mean``, ``kl_sem`` (``sqrt(var / (n - 1))``, var the population variance),
      ``kl_median``, ``kl_max`` and the percentiles ``kl_p99_9`` ... ``kl_p0_1`` (99.9, 99,
      95, 90, 10, 5, 1, 0.1), by linear interpolation between order statistics
      (``numpy.percentile``'s default, llama.cpp's ``percentile``);
    - ``same_top``: fraction of tokens whose top-1 is the same in both models;
    - ``dp_mean``, ``dp_median``, ``dp_rms = sqrt(mean(dp**2))``, ``dp_p99``, ``dp_p1``;
    - ``ppl_a``, ``ppl_b`` (``exp`` of the mean nll), ``ln_ppl_ratio = mean(nll_b) -
      mean(nll_a)``, ``ppl_ratio = exp(ln_ppl_ratio)``;
    - ``logloss_corr``: Pearson correlation of ``nll_a`` and ``nll_b`` (llama.cpp's
      ``Cor(ln(PPL(Q)), ln(PPL(base)))``);
    - the ``±`` that llama.cpp prints: ``same_top_sem = sqrt(p (1 - p) / (n - 1))``,
      ``dp_mean_sem``, ``dp_rms_sem = sem(dp**2) / (2 dp_rms)``, ``ppl_m_sem = ppl_m *
      sem(nll_m)``, ``ln_ppl_ratio_sem = sem(nll_b - nll_a)`` (llama.cpp's
      ``sqrt(sem_a**2 + sem_b**2 - 2 cov)``, the same number), ``ppl_ratio_sem =
      ppl_ratio * ln_ppl_ratio_sem``; and ``tokens``, the count n.

    Unlike llama.cpp, uncertainties are given from n = 2 on (it prints 0 below 11 tokens)
    and the KL values are exact (see :func:`paired_token_stats`).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"nll_a": [1.0, 2.0, 3.0], "nll_b": [1.5, 2.0, 3.5],
    ...                   "kl": [0.1, 0.0, 0.2], "dp": [-0.1, 0.0, -0.05],
    ...                   "top_a": [1, 2, 3], "top_b": [1, 2, 4]})
    >>> stats = token_stats(t)
    >>> round(float(stats["ln_ppl_ratio"]), 4), round(float(stats["same_top"]), 4)
    (0.3333, 0.6667)
    """
    missing = sorted({"nll_a", "nll_b", "kl", "dp", "top_a", "top_b"} - set(table.columns))
    if missing:
        raise ValueError(f"token_stats needs a paired_token_stats table; missing {missing}")
    n = len(table)
    if n == 0:
        raise ValueError("token_stats: no scored tokens (each needs attention_mask 1 at t and t+1)")
    kl = table["kl"].to_numpy(np.float64)
    dp = table["dp"].to_numpy(np.float64)
    a = table["nll_a"].to_numpy(np.float64)
    b = table["nll_b"].to_numpy(np.float64)
    same = float(np.mean(table["top_a"].to_numpy() == table["top_b"].to_numpy()))
    kl_q = np.percentile(kl, [50, 99.9, 99, 95, 90, 10, 5, 1, 0.1])
    dp_q = np.percentile(dp, [50, 99, 1])
    ln_ratio = float(b.mean() - a.mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.mean((a - a.mean()) * (b - b.mean()))
        corr = float(cov / (a.std() * b.std()))
    ppl_a, ppl_b = float(np.exp(a.mean())), float(np.exp(b.mean()))
    rms = float(np.sqrt(np.mean(dp**2)))
    values = {
        "kl_mean": float(kl.mean()),
        "kl_sem": _sem(kl),
        "kl_median": kl_q[0],
        "kl_max": float(kl.max()),
        **dict(zip(TOKEN_STATS[4:12], kl_q[1:], strict=True)),
        "same_top": same,
        "dp_mean": float(dp.mean()),
        "dp_median": dp_q[0],
        "dp_rms": rms,
        "dp_p99": dp_q[1],
        "dp_p1": dp_q[2],
        "ppl_a": ppl_a,
        "ppl_b": ppl_b,
        "ppl_ratio": float(np.exp(ln_ratio)),
        "ln_ppl_ratio": ln_ratio,
        "logloss_corr": corr,
        "same_top_sem": float(np.sqrt(same * (1 - same) / (n - 1))) if n > 1 else float("nan"),
        "dp_mean_sem": _sem(dp),
        "dp_rms_sem": _sem(dp**2) / (2 * rms) if rms > 0 else float("nan"),
        "ppl_a_sem": ppl_a * _sem(a),
        "ppl_b_sem": ppl_b * _sem(b),
        "ppl_ratio_sem": float(np.exp(ln_ratio)) * _sem(b - a),
        "ln_ppl_ratio_sem": _sem(b - a),
        "tokens": n,
    }
    return pd.Series({k: float(values[k]) for k in TOKEN_STATS + TOKEN_STATS_SEM}, name="value")


def sequence_table(table: pd.DataFrame, n_instances: int | None = None) -> pd.DataFrame:
    """One row per sequence of a :func:`paired_token_stats` table.

    Columns: ``tokens`` (scored count), ``nll_a``, ``nll_b`` (mean nats per scored token),
    ``ppl_a``, ``ppl_b``, ``kl_mean``, ``kl_max``, ``same_top`` (fraction), ``dp_mean``.
    Indexed by instance, ``0 .. n_instances - 1`` when given (sequences with no scored
    token get ``tokens`` 0 and NaN elsewhere).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"instance": [0, 0, 2], "nll_a": [1.0, 3.0, 2.0], "nll_b": [1.0, 1.0, 2.0],
    ...                   "kl": [0.1, 0.3, 0.0], "dp": [0.0, 0.2, 0.0],
    ...                   "top_a": [1, 2, 3], "top_b": [1, 5, 3]})
    >>> sequence_table(t, 3)[["tokens", "kl_max", "same_top"]].to_dict("list")
    {'tokens': [2, 0, 1], 'kl_max': [0.3, nan, 0.0], 'same_top': [0.5, nan, 1.0]}
    """
    grouped = table.assign(same=table["top_a"] == table["top_b"]).groupby("instance")
    out = pd.DataFrame(
        {
            "tokens": grouped.size(),
            "nll_a": grouped["nll_a"].mean(),
            "nll_b": grouped["nll_b"].mean(),
            "kl_mean": grouped["kl"].mean(),
            "kl_max": grouped["kl"].max(),
            "same_top": grouped["same"].mean(),
            "dp_mean": grouped["dp"].mean(),
        }
    )
    out.insert(3, "ppl_a", np.exp(out["nll_a"]))
    out.insert(4, "ppl_b", np.exp(out["nll_b"]))
    if n_instances is not None:
        out = out.reindex(range(n_instances))
        out["tokens"] = out["tokens"].fillna(0)
    out["tokens"] = out["tokens"].astype(np.int64)
    out.index.name = "instance"
    return out
