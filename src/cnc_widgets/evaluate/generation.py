"""Greedy generation with a KV cache, and the teacher-forced token KL between two models.

:func:`greedy_generate` reproduces ``model.generate(do_sample=False)`` of transformers token
for token (the same position ids from the attention mask, the same cache, the mask dropped
when a batch has no padding, finished rows kept in the batch), without its machinery: one
prefill over the left-padded prompts, then one forward per new token, so its cost and its
answers are those of the model alone. :func:`generation_kl` scores model b along model a's
answers (teacher forcing): per generated token, KL(p_a || p_b) over the full vocabulary in
nats, no floor and no top-k (docs/definitions.md), the generation task's ``kl_mean``.

Example
-------
>>> tok.padding_side = "left"  # doctest: +SKIP
>>> enc = tok(prompts, padding=True, return_tensors="pt")  # doctest: +SKIP
>>> out = greedy_generate(model, enc["input_ids"], enc["attention_mask"],
...                       max_new_tokens=16, tokenizer=tok)  # doctest: +SKIP
>>> out.texts[0], out.tokens[0]  # doctest: +SKIP
>>> kl = generation_kl(model, pruned, enc["input_ids"], enc["attention_mask"],
...                    out.tokens)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "Generated",
    "generation_kl",
    "greedy_batch",
    "greedy_generate",
    "stop_tokens",
    "teacher_forced_logits",
]


@dataclass
class Generated:
    """Greedy answers, one per prompt.

    ``tokens[i]`` are the new token ids of prompt i, ending with the stop token when one was
    produced (``stopped[i]``) and otherwise ``max_new_tokens`` long. ``texts`` are the decoded
    answers without special tokens (``None`` without a tokenizer).
    """

    tokens: list[list[int]]
    texts: list[str] | None
    stopped: np.ndarray
    max_new_tokens: int
    stop_token_ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.tokens)


def stop_tokens(model: nn.Module, tokenizer=None) -> tuple[int, ...]:
    """The end-of-sequence ids that ``generate`` stops on: the model's, else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    if eos is None and tokenizer is not None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return ()
    return tuple(int(e) for e in (eos if isinstance(eos, Iterable) else [eos]))


def _cache_kwarg(model: nn.Module) -> str:
    # transformers 5.x renamed the forward's ``past_key_values`` to ``cache``.
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _returned_cache(out):
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def _check_prompts(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (N, L) token ids, got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        return torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} and input_ids "
            f"{tuple(input_ids.shape)} must have one shape"
        )
    mask = attention_mask.long()
    # Left padding: once a row's mask is 1 it stays 1 up to the end.
    if (mask[:, 1:] < mask[:, :-1]).any() or (mask[:, -1] == 0).any():
        raise ValueError(
            "generation needs left-padded prompts (real tokens at the end of each row): "
            "set tokenizer.padding_side = 'left' before tokenizing"
        )
    return mask


def _positions(mask: torch.Tensor) -> torch.Tensor:
    # generate's rule: positions count the real tokens; padding sits at position 0.
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _greedy_batch(
    model: nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    max_new_tokens: int,
    stops: torch.Tensor,
    step: Callable[[int, dict[str, Any]], Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T) new tokens (rows that stopped are padded with their stop token) and lengths.

    ``step(t, kwargs)`` runs forward pass t (0: the prompt) instead of ``model(**kwargs)``:
    the generation task runs the prompt through evaluation's hooks and the decoding steps
    without them.
    """
    if step is None:
        step = _plain_step(model)
    cache_key = _cache_kwarg(model)
    keep = (
        {"logits_to_keep": 1}
        if "logits_to_keep" in inspect.signature(model.forward).parameters
        else {}
    )
    n = ids.shape[0]
    positions = _positions(mask)
    # generate drops an all-ones mask so attention takes its causal fast path; do the same.
    run_mask = None if bool(mask.all()) else mask
    # On the prompts' device: the loop mixes them with the model's next tokens (a GPU).
    lengths = torch.full((n,), max_new_tokens, dtype=torch.long, device=ids.device)
    done = torch.zeros(n, dtype=torch.bool, device=ids.device)
    out_tokens = torch.zeros((n, max_new_tokens), dtype=torch.long, device=ids.device)
    step_ids, step_pos, cache = ids, positions, None
    for t in range(max_new_tokens):
        kwargs = {cache_key: cache} if cache is not None else {}
        out = step(
            t,
            {
                "input_ids": step_ids,
                "attention_mask": run_mask,
                "position_ids": step_pos,
                "use_cache": True,
                **kwargs,
                **keep,
            },
        )
        cache = _returned_cache(out)
        nxt = out.logits[:, -1, :].argmax(-1)
        # A finished row keeps running (as in generate) but repeats its stop token.
        nxt = torch.where(done, out_tokens[:, max(t - 1, 0)], nxt)
        out_tokens[:, t] = nxt
        newly = ~done & torch.isin(nxt, stops)
        lengths[newly] = t + 1
        done |= newly
        if bool(done.all()):
            return out_tokens[:, : t + 1], lengths
        step_ids = nxt[:, None]
        step_pos = step_pos[:, -1:] + 1
        if run_mask is not None:
            run_mask = torch.cat([run_mask, run_mask.new_ones((n, 1))], dim=1)
    return out_tokens, lengths


def _plain_step(model: nn.Module) -> Callable[[int, dict[str, Any]], Any]:
    def forward(_t: int, kwargs: dict[str, Any]) -> Any:
        return model(**kwargs)

    return forward


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def greedy_generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int = 16,
    stop_token_ids: Sequence[int] | int | None = None,
    tokenizer=None,
    batch_size: int = 16,
) -> Generated:
    """Greedy answers of a causal LM to left-padded prompts, batched, with a KV cache.

    Parameters
    ----------
    model
        A transformers causal LM (its forward takes ``input_ids``, ``attention_mask``,
        ``position_ids``, a cache and ``use_cache``).
    input_ids, attention_mask
        (N, L) prompts, left-padded (``tokenizer.padding_side = "left"``).
    max_new_tokens
        The most tokens generated per prompt.
    stop_token_ids
        Generation of a prompt ends at the first of these (included in its tokens); default
        :func:`stop_tokens` (the model's eos ids).
    tokenizer
        Decodes the answers into ``texts`` (special tokens skipped) when given.
    batch_size
        Prompts per forward pass; columns of padding shared by a whole batch are cut first.

    Example
    -------
    >>> out = greedy_generate(model, enc["input_ids"], enc["attention_mask"],
    ...                       max_new_tokens=8)  # doctest: +SKIP
    """
    mask = _check_prompts(input_ids, attention_mask)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if stop_token_ids is None:
        stop_token_ids = stop_tokens(model, tokenizer)
    elif isinstance(stop_token_ids, int):
        stop_token_ids = (stop_token_ids,)
    stops_t = tuple(int(s) for s in stop_token_ids)
    device = _device(model)
    stops = torch.tensor(stops_t, dtype=torch.long, device=device)
    tokens: list[list[int]] = []
    stopped: list[bool] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for s in range(0, len(input_ids), batch_size):
                ids, m = input_ids[s : s + batch_size], mask[s : s + batch_size]
                first = int((m.sum(0) > 0).long().argmax())  # padding every row shares
                ids, m = ids[:, first:].to(device), m[:, first:].to(device)
                new, lengths = _greedy_batch(model, ids, m, max_new_tokens, stops.to(device))
                new, lengths = new.cpu(), lengths.cpu()
                for row, n_tok in zip(new.tolist(), lengths.tolist(), strict=True):
                    tokens.append(row[:n_tok])
                    stopped.append(bool(n_tok and row[n_tok - 1] in stops_t))
    finally:
        model.train(was_training)
    texts = None
    if tokenizer is not None:
        texts = [tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
    return Generated(tokens, texts, np.array(stopped, dtype=bool), max_new_tokens, stops_t)


def greedy_batch(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    max_new_tokens: int,
    stop_token_ids: Sequence[int],
    step: Callable[[int, dict[str, Any]], Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy answers of one batch of left-padded prompts, as fixed-width tensors.

    Returns ``(tokens, lengths)``: ``(N, max_new_tokens)`` int64 token ids, -1 after each
    answer's end (its stop token included in the answer), and ``(N,)`` answer lengths. The
    batch runs as it is (columns of padding are not cut), on the model's device, with
    ``step(t, kwargs)`` for forward pass t when given (see :func:`_greedy_batch`); the
    caller sets eval and inference mode.

    Example
    -------
    >>> tokens, lengths = greedy_batch(model, ids, mask, max_new_tokens=8,
    ...                                stop_token_ids=[2])  # doctest: +SKIP
    """
    mask = _check_prompts(input_ids, attention_mask)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    device = _device(model)
    stops = torch.tensor([int(s) for s in stop_token_ids], dtype=torch.long, device=device)
    new, lengths = _greedy_batch(
        model, input_ids.to(device), mask.to(device), max_new_tokens, stops, step
    )
    new, lengths = new.cpu(), lengths.cpu()
    out = torch.full((len(new), max_new_tokens), -1, dtype=torch.long)
    keep = torch.arange(new.shape[1])[None, :] < lengths[:, None]
    out[:, : new.shape[1]] = torch.where(keep, new, torch.full_like(new, -1))
    return out, lengths


def teacher_forced_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    generated: Sequence[Sequence[int]],
) -> list[torch.Tensor]:
    """Logits (T_i, V) that ``model`` gives each token of ``generated[i]`` after prompt i.

    Row t predicts ``generated[i][t]`` from the prompt and ``generated[i][:t]``; one forward
    over prompt + answer, positions as in generation. Run it on one batch of prompts at a
    time (every answer of the batch is padded to the longest).
    """
    mask = _check_prompts(input_ids, attention_mask)
    if len(generated) != len(input_ids):
        raise ValueError(f"{len(input_ids)} prompts but {len(generated)} generated answers")
    n = input_ids.shape[0]
    longest = max((len(g) for g in generated), default=0)
    if longest == 0:
        return [torch.zeros((0, 0)) for _ in generated]
    device = _device(model)
    gen = torch.zeros((n, longest), dtype=torch.long)
    gen_mask = torch.zeros((n, longest), dtype=torch.long)
    for i, g in enumerate(generated):
        gen[i, : len(g)] = torch.as_tensor(list(g), dtype=torch.long)
        gen_mask[i, : len(g)] = 1
    ids = torch.cat([input_ids.long(), gen], 1).to(device)
    full = torch.cat([mask, gen_mask], 1).to(device)
    params = inspect.signature(model.forward).parameters
    # Only the positions that predict answer tokens need the (vocabulary-wide) head.
    keep = {"logits_to_keep": longest + 1} if "logits_to_keep" in params else {}
    with torch.inference_mode():
        logits = model(
            input_ids=ids,
            attention_mask=full,
            position_ids=_positions(full),
            use_cache=False,
            **keep,
        ).logits
    logits = logits[:, -(longest + 1) : -1].float()
    return [logits[i, : len(g)] for i, g in enumerate(generated)]


def generation_kl(
    model_a: nn.Module,
    model_b: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    generated: Sequence[Sequence[int]],
    *,
    batch_size: int = 16,
) -> list[np.ndarray]:
    """Per-token KL(p_a || p_b) in nats along a's answers, both models teacher-forced.

    ``generated`` are model a's answers (:attr:`Generated.tokens`); position t of prompt i
    compares the two next-token distributions over the full vocabulary before
    ``generated[i][t]``. Returns one float64 array per prompt (empty for an empty answer);
    its mean is the prompt's ``kl_mean``.

    Example
    -------
    >>> kl = generation_kl(base, pruned, ids, mask, greedy_generate(base, ids, mask).tokens)
    ... # doctest: +SKIP
    >>> kl_mean = [k.mean() for k in kl]  # doctest: +SKIP
    """
    mask = _check_prompts(input_ids, attention_mask)
    if len(generated) != len(input_ids):
        raise ValueError(f"{len(input_ids)} prompts but {len(generated)} generated answers")
    out: list[np.ndarray] = []
    for s in range(0, len(input_ids), batch_size):
        ids, m, g = (
            input_ids[s : s + batch_size],
            mask[s : s + batch_size],
            generated[s : s + batch_size],
        )
        first = int((m.sum(0) > 0).long().argmax())
        ids, m = ids[:, first:], m[:, first:]
        la = teacher_forced_logits(model_a, ids, m, g)
        lb = teacher_forced_logits(model_b, ids, m, g)
        for a, b in zip(la, lb, strict=True):
            if a.numel() == 0:
                out.append(np.zeros(0))
                continue
            if a.shape != b.shape:
                raise ValueError(
                    f"the models' vocabularies differ ({a.shape[-1]} vs {b.shape[-1]} logits): "
                    "token KL needs one tokenizer"
                )
            lpa = torch.log_softmax(a.double(), -1)
            lpb = torch.log_softmax(b.double().to(a.device), -1)
            out.append((lpa.exp() * (lpa - lpb)).sum(-1).cpu().numpy())
    return out
