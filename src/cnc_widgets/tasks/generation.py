"""Generated answers: a causal LM answers each prompt greedily; answers scored by SQuAD.

Compress and Compare's T5 case study, on a decoder model: the inputs are tokenized prompts
(left padding), ``references`` the gold answers. Evaluation generates greedily with a KV
cache (:func:`cnc_widgets.evaluate.generation.greedy_batch`, equal to
``model.generate(do_sample=False)``) instead of one forward pass, and keeps the new token
ids: ``gen_tokens`` ``(N, max_new_tokens)`` int64, -1 after each answer's end (the stop
token belongs to the answer), and ``gen_length``. The answers decoded with the tokenizer
(stop token and special tokens left out) are kept beside them as ``answers``, so a reopened
store gives them back without the tokenizer.

What is read on the way: the prompt's forward pass runs with evaluation's hooks, so the
embedding (default: the input of ``lm_head``, mean-pooled over the prompt's real tokens)
and the activation statistics describe the prompts, one pass per instance as for every
task; the decoding steps run with those hooks silenced. Latency and MACs in ``metrics()``
are those of one prompt forward pass, not of generating.

``max_new_tokens``, the stop tokens and ``prompt_format`` (a free description of how the
prompts were made: "chat template", a format string) are part of the data's key, as are
the references: changing one evaluates again. The stop tokens are the data's, not each
model's (default: the tokenizer's eos), so every model of a study stops alike.

``metrics()`` gives ``exact_match``, ``f1`` (:mod:`.answers`), ``answered`` (non-empty
answers) and ``answer_tokens`` (mean generated tokens, stop token included). A comparison's
``instances`` add ``tokens_a``, ``tokens_b`` and, with both models in the session,
``kl_mean`` and ``kl_max``: per question the token KL(p_a || p_b) in nats of b
teacher-forced along a's answer (:func:`cnc_widgets.evaluate.generation.generation_kl`).

Examples
--------
>>> tok.padding_side = "left"  # doctest: +SKIP
>>> enc = tok(prompts, padding=True, return_tensors="pt")  # doctest: +SKIP
>>> reg.set_data(enc, task="generation", tokenizer=tok, references=golds,
...              instances=prompts, max_new_tokens=16)  # doctest: +SKIP
>>> reg.evaluate(); reg.metrics()[["exact_match", "f1"]]  # doctest: +SKIP
>>> reg.compare("base", "pruned").instances[["output_a", "output_b", "kl_mean"]]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..evaluate.generation import generation_kl, greedy_batch
from ..metrics.adversarial import Objective
from .answers import AnswerTask, check_references

DEFAULT_MAX_NEW_TOKENS = 16


class AnswerObjective(Objective):
    """The generation attack: PGD on the prompt's word embeddings ascends the
    teacher-forced loss (mean nats per token) of the crafter's own clean greedy answer,
    its stop token included; a question flips when the first token of the model's greedy
    answer changes. The first token is the cheapest honest test: one forward pass over
    the prompt, no decoding under attack; a changed first token changes the answer, so
    the flipped set is a lower bound of the questions whose answer an attack changes.
    Every question counts."""

    success = "the first token of the greedy answer changes"

    def __init__(self, task: Generation) -> None:
        self.task = task

    def targets(self, model: Any, batch: Any, labels: torch.Tensor) -> Any:
        ids, mask = _prompts(batch)
        tokens, _ = greedy_batch(
            model,
            ids,
            mask,
            max_new_tokens=self.task.opts["max_new_tokens"],
            stop_token_ids=self.task.opts["stop_token_ids"],
        )
        return tokens  # (B, max_new_tokens), -1 after each answer

    def loss(self, model: Any, batch: Any, targets: Any) -> torch.Tensor:
        ids, mask = _prompts(batch)
        answer = targets.to(ids.device)
        given = answer >= 0
        full = torch.cat([mask, given.long()], 1)
        # Answers appended after the prompt (the embedding perturbation covers the prompt
        # only); positions as generation counts them, so this is the greedy pass forced.
        logits = model(
            input_ids=torch.cat([ids, answer.clamp_min(0)], 1),
            attention_mask=full,
            position_ids=_positions(full),
            use_cache=False,
        ).logits
        z = logits[:, ids.shape[1] - 1 : ids.shape[1] - 1 + answer.shape[1]].float()
        if not bool(given.any()):
            return z.sum() * 0.0
        return nn.functional.cross_entropy(z[given], answer[given])

    def predict(self, model: Any, batch: Any) -> torch.Tensor:
        ids, mask = _prompts(batch)
        logits = model(
            input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=False
        ).logits
        return logits[:, -1].argmax(-1).cpu()

    def eligible(self, clean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(clean), dtype=torch.bool)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    # greedy generation's rule: positions count the real tokens; padding sits at 0.
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


class Generation(AnswerTask):
    """A causal LM (``*ForCausalLM``) answering left-padded prompts greedily."""

    name = "generation"
    better: ClassVar[dict[str, str]] = {**AnswerTask.better, "answer_tokens": "lower"}
    outputs = ("gen_tokens", "gen_length")
    paired_measure = "generation_kl"

    def options(self, options: Mapping[str, Any], n: int) -> dict[str, Any]:
        options = dict(options)
        tokenizer = options.pop("tokenizer", None)
        references = check_references(options.pop("references", None), n, self.name)
        max_new = options.pop("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        stops = options.pop("stop_token_ids", None)
        prompt_format = options.pop("prompt_format", None)
        if options:
            raise ValueError(
                f"set_data(task='generation') takes tokenizer, references, max_new_tokens, "
                f"stop_token_ids and prompt_format, not {sorted(options)}"
            )
        if tokenizer is None or not hasattr(tokenizer, "decode"):
            raise ValueError(
                "set_data(task='generation') needs tokenizer=: the tokenizer of the prompts, "
                "which decodes the answers"
            )
        if isinstance(max_new, bool) or not isinstance(max_new, (int, np.integer)) or max_new < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new!r}")
        if stops is None:
            eos = getattr(tokenizer, "eos_token_id", None)
            stops = [] if eos is None else [eos]
        stops = [stops] if isinstance(stops, (int, np.integer)) else list(stops)
        if not all(isinstance(s, (int, np.integer)) and s >= 0 for s in stops):
            raise ValueError(f"stop_token_ids must be token ids (integers), got {stops!r}")
        if prompt_format is not None and not isinstance(prompt_format, str):
            raise ValueError("prompt_format must be a string describing how prompts were made")
        return {
            "references": references,
            "max_new_tokens": int(max_new),
            "stop_token_ids": [int(s) for s in stops],
            "prompt_format": prompt_format,
            "_tokenizer": tokenizer,
        }

    def check_inputs(self, inputs: Any, options: Mapping[str, Any]) -> None:
        _prompts(inputs)

    # -- evaluation ---------------------------------------------------------------------

    def run(self, model: Any, batch: Any, call: Any) -> dict[str, torch.Tensor]:
        """Greedy answers of one batch: the prompt's forward pass through ``call`` (with
        evaluation's hooks), the decoding steps with them silenced (``call.quiet()``)."""
        ids, mask = _prompts(batch)
        quiet = getattr(call, "quiet", contextlib.nullcontext)

        def step(t: int, kwargs: dict[str, Any]) -> Any:
            if t == 0:
                # The whole prompt's logits: the head's input is then every prompt token,
                # which the default embedding mean-pools (as for causal_lm).
                kwargs = {k: v for k, v in kwargs.items() if k != "logits_to_keep"}
                return call(model, kwargs)
            with quiet():
                return model(**kwargs)

        tokens, lengths = greedy_batch(
            model,
            ids,
            mask,
            max_new_tokens=self.opts["max_new_tokens"],
            stop_token_ids=self.opts["stop_token_ids"],
            step=step,
        )
        return {"gen_tokens": tokens, "gen_length": lengths}

    def batch_outputs(self, output: Any, batch: Any) -> dict[str, torch.Tensor]:
        return {"gen_tokens": output["gen_tokens"], "gen_length": output["gen_length"]}

    def answers(self, result: Mapping[str, Any]) -> list[str]:
        if "answers" in result:
            return [str(a) for a in result["answers"]]
        tokenizer = self.opts.get("_tokenizer")
        if tokenizer is None:
            raise ValueError(
                "decoding generated answers needs the tokenizer: call reg.set_data(..., "
                "task='generation', tokenizer=tok) again"
            )
        stops = set(self.opts["stop_token_ids"])
        texts = []
        for row in _answer_tokens(result):
            if row and row[-1] in stops:
                row = row[:-1]  # the stop token ends the answer; it is not part of its text
            texts.append(tokenizer.decode(row, skip_special_tokens=True))
        return texts

    def record_arrays(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"answers": np.array(self.answers(outputs), dtype=str)}

    def finish(self, name: str, arrays: Mapping[str, np.ndarray], data: Any) -> dict:
        return {
            **super().finish(name, arrays, data),
            "answer_tokens": float(arrays["gen_length"].mean()),
        }

    # -- comparison ---------------------------------------------------------------------

    def check_pair(self, a: str, b: str, ra: Mapping, rb: Mapping) -> None:
        if ra["gen_tokens"].shape != rb["gen_tokens"].shape:
            raise ValueError(
                f"{a!r} and {b!r} were evaluated with different max_new_tokens; evaluate both "
                "on the same data"
            )

    def extra_columns(self, ra: Mapping, rb: Mapping) -> dict[str, np.ndarray]:
        return {"tokens_a": ra["gen_length"], "tokens_b": rb["gen_length"]}

    def attack_objective(self) -> AnswerObjective:
        return AnswerObjective(self)

    def paired(
        self, model_a: Any, model_b: Any, ra: Mapping, inputs: Any, data: Any
    ) -> pd.DataFrame:
        """Per question: ``kl_mean`` and ``kl_max`` of KL(p_a || p_b) over a's answer."""
        ids, mask = _prompts(inputs)
        kl = generation_kl(
            model_a, model_b, ids, mask, _answer_tokens(ra), batch_size=data.batch_size
        )
        return pd.DataFrame(
            {
                "kl_mean": [float(k.mean()) if len(k) else np.nan for k in kl],
                "kl_max": [float(k.max()) if len(k) else np.nan for k in kl],
            }
        )


def _answer_tokens(result: Mapping[str, Any]) -> list[list[int]]:
    """Each answer's token ids, its stop token included."""
    lengths = np.asarray(result["gen_length"]).tolist()
    return [row[:n] for row, n in zip(result["gen_tokens"].tolist(), lengths, strict=True)]


def _prompts(inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of left-padded prompts, or a clear error."""
    if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
        raise ValueError(
            "task='generation' needs the tokenized prompts as a dict with input_ids and "
            "attention_mask: tok(prompts, padding=True, return_tensors='pt') with "
            "tok.padding_side = 'left'"
        )
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask.long()
    if ids.ndim != 2 or mask.shape != ids.shape:
        raise ValueError(
            f"input_ids {tuple(ids.shape)} and attention_mask {tuple(mask.shape)} must both be "
            "(prompts, tokens)"
        )
    if (mask[:, 1:] < mask[:, :-1]).any() or (mask[:, -1] == 0).any():
        raise ValueError(
            "task='generation' needs left-padded prompts (real tokens at the end of each row, "
            "so every answer starts right after its prompt); set tokenizer.padding_side = "
            "'left' before tokenizing"
        )
    return ids, mask
