"""The prediction diff of language models (task ``causal_lm``): what it sends to the browser.

One row per sequence (``cmp.instances``), llama.cpp's statistics (``cmp.token_stats``) and
the most frequent top-1 substitutions per compared model; the scored tokens of a sequence
(``cmp.tokens``) travel only for the sequences embedded (the first :data:`EMBED_SEQUENCES`)
and those the browser asks for, with the text of just the token ids they use, so a
49k-token vocabulary never crosses the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..registry import ModelRegistry
from ._wire import pack

EMBED_SEQUENCES = 50  # sequences whose tokens travel in the widget state (and exports)
TOP_SUBSTITUTIONS = 20
TOKEN_TEXT_LIMIT = 60  # characters of one token's text (a token is short; a hostile one is not)

# The per-sequence columns of cmp.instances the table shows, in order.
SEQUENCE_COLUMNS = (
    "tokens",
    "nll_a",
    "nll_b",
    "nll_change",
    "same_top",
    "kl_mean",
    "kl_max",
    "dp_mean",
)

# One line each, shown on hover beside the statistics (metrics/tokens.py, token_stats).
STATS_EXPLAIN = {
    "kl_mean": "mean over scored tokens of KL(p_ref || p_model), full vocabulary, nats; "
    "\u00b1 sem = sqrt(var / (n - 1))",
    "kl_median": "median of the per-token KL (nats)",
    "kl_percentiles": "percentiles 99.9 / 99 / 95 / 90 / 10 / 5 / 1 / 0.1 of the per-token KL "
    "(nats), linear interpolation (numpy.percentile, as llama.cpp)",
    "kl_max": "largest per-token KL (nats)",
    "same_top": "fraction of scored tokens whose top-1 token is the same under both models; "
    "\u00b1 sqrt(p (1 - p) / (n - 1))",
    "dp_mean": "mean of dp = p_model(next token) - p_ref(next token); \u00b1 its sem",
    "dp_rms": "sqrt(mean(dp\u00b2)); \u00b1 sem(dp\u00b2) / (2 rms)",
    "ppl_a": "perplexity of the reference: exp(mean nll) over the same scored tokens",
    "ppl_b": "perplexity of the compared model: exp(mean nll) over the same scored tokens",
    "ppl_ratio": "ppl_model / ppl_ref = exp(ln ratio)",
    "ln_ppl_ratio": "mean(nll_model) - mean(nll_ref), nats per token; \u00b1 sem(nll_model - "
    "nll_ref)",
    "logloss_corr": "Pearson correlation of the per-token nll of the two models (llama.cpp's "
    "Cor(ln(PPL(Q)), ln(PPL(base))))",
    "tokens": "scored tokens (attention mask 1 at t and t + 1)",
}


def token_text(tokenizer: Any, ids: Iterable[int]) -> list[str]:
    """The text of each token id (``"#id"`` without a tokenizer), cut to a few characters."""
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return [f"#{i}" for i in ids]
    return [str(tokenizer.decode([i]))[:TOKEN_TEXT_LIMIT] for i in ids]


def substitutions(tokens: pd.DataFrame, tokenizer: Any, top: int = TOP_SUBSTITUTIONS) -> list:
    """The most frequent (ref's top-1, model's top-1) pairs where they differ:
    ``[[text_a, text_b, count, id_a, id_b], ...]``, most frequent first (ties: by ids)."""
    a = tokens["top_a"].to_numpy(np.int64)
    b = tokens["top_b"].to_numpy(np.int64)
    moved = a != b
    if not moved.any():
        return []
    pairs, counts = np.unique(np.stack([a[moved], b[moved]], 1), axis=0, return_counts=True)
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -counts))[:top]
    texts = token_text(tokenizer, pairs[order].ravel())
    return [
        [texts[2 * k], texts[2 * k + 1], int(counts[i]), int(pairs[i, 0]), int(pairs[i, 1])]
        for k, i in enumerate(order)
    ]


def dynamic_note(registry: ModelRegistry, name: str) -> str | None:
    """A warning when ``name`` holds int8 dynamic Linears: their activation scales are taken
    over the whole batch, padding included, so its numbers depend on the batching."""
    try:
        model = registry.model(name)
    except KeyError:
        dynamic = registry.record(name).operation == "quantize_dynamic"
    else:
        dynamic = any(hasattr(mod, "_packed_params") for mod in model.modules())
    if not dynamic:
        return None
    data = registry.data
    unit = "windows" if registry.task.name == "causal_lm" else "questions"
    return (
        f"{name} is int8 dynamic-quantized (quantize_dynamic): its activations are scaled per "
        f"tensor over each whole batch, padding included, so its numbers depend on the "
        f"batching. These come from batches of {data.batch_size} {unit} "
        f"(reg.set_data(..., batch_size=)); another batch size gives other numbers."
    )


def _tokens(registry: ModelRegistry, a: str, b: str) -> tuple[pd.DataFrame | None, str]:
    """``cmp.tokens`` (computed once, then cached), or ``None`` and why not."""
    try:
        return registry.compare(a, b).tokens, ""
    except (KeyError, ValueError) as exc:
        return None, (
            f"no token comparison of {b} with {a} ({exc.args[0] if exc.args else exc}): the "
            "KL and dp need both models in this session (reg.add them) and the inputs"
        )


def lm_view(registry: ModelRegistry, names: Sequence[str]) -> dict[str, Any]:
    """Per compared model: its sequence columns, token statistics and substitutions."""
    data = registry.data
    tokenizer = data.task_options.get("_tokenizer")
    models = []
    for name in names[1:]:
        cmp = registry.compare(names[0], name)
        tokens, why = _tokens(registry, names[0], name)
        table = cmp.instances
        entry: dict[str, Any] = {
            "name": name,
            "columns": {
                c: pack(table[c].to_numpy(np.float64), "float32")
                for c in SEQUENCE_COLUMNS
                if c in table
            },
            "stats": None,
            "substitutions": [],
            "missing": why,
            "notes": [n for n in (dynamic_note(registry, x) for x in (names[0], name)) if n],
        }
        if tokens is not None and len(tokens):
            stats = cmp.token_stats
            entry["stats"] = {k: float(v) for k, v in stats.items()}
            entry["substitutions"] = substitutions(tokens, tokenizer)
        models.append(entry)
    default_ids = data.ids == [str(i) for i in range(len(data))]
    return {
        "task": "causal_lm",
        "n": len(data),
        "ids": None if default_ids else list(data.ids),
        "models": models,
        "explain": STATS_EXPLAIN,
        "embedded": min(len(data), EMBED_SEQUENCES),
    }


def token_rows(
    registry: ModelRegistry, names: Sequence[str], rows: Iterable[int]
) -> dict[str, Any]:
    """The scored tokens of ``rows`` under each compared model, for the tinted text.

    ``{"rows", "first": text of each row's first real token, "vocab_ids", "vocab_texts",
    "models": [{"offsets" (row k's tokens are offsets[k]:offsets[k+1]), "position",
    "token", "kl", "dp", "nll_a", "nll_b", "top_a", "top_b"} | None]}``; a model is
    ``None`` when its token comparison cannot be computed.
    """
    data = registry.data
    tokenizer = data.task_options.get("_tokenizer")
    picked = [r for r in dict.fromkeys(int(r) for r in rows) if 0 <= r < len(data)]
    ids = np.asarray(data.inputs["input_ids"])
    mask = np.asarray(data.inputs.get("attention_mask", np.ones_like(ids)))
    firsts = []
    for r in picked:
        real = np.flatnonzero(mask[r])
        firsts.append(int(ids[r, real[0]]) if len(real) else -1)
    used = {f for f in firsts if f >= 0}
    models: list[dict[str, Any] | None] = []
    for name in names[1:]:
        tokens, _ = _tokens(registry, names[0], name)
        if tokens is None:
            models.append(None)
            continue
        instance = tokens["instance"].to_numpy()
        order = np.argsort(instance, kind="stable")
        bounds = np.searchsorted(instance[order], [(r, r + 1) for r in picked])
        take = np.concatenate([order[s:e] for s, e in bounds]) if picked else np.zeros(0, np.int64)
        counts = [int(e - s) for s, e in bounds] if picked else []
        part = tokens.iloc[take]
        entry = {"offsets": pack(np.concatenate([[0], np.cumsum(counts)]), "int32")}
        for column in ("position", "token", "top_a", "top_b"):
            entry[column] = pack(part[column].to_numpy(), "int32")
            used.update(int(i) for i in part[column].to_numpy() if i >= 0)
        for column in ("kl", "dp", "nll_a", "nll_b"):
            entry[column] = pack(part[column].to_numpy(np.float64), "float32")
        models.append(entry)
    vocab = sorted(used)
    return {
        "rows": picked,
        "first": firsts,
        "vocab_ids": pack(np.asarray(vocab, np.int64), "int32"),
        "vocab_texts": token_text(tokenizer, vocab),
        "models": models,
    }
