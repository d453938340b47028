"""Extractive QA: a model points at the answer's start and end token in the context.

Rai et al.'s SQuAD2 comparisons of BERT models. The inputs are tokenized (question,
context) pairs; the model returns start and end logits (``*ForQuestionAnswering``: a
``QuestionAnsweringModelOutput``, a ``(start, end)`` tuple or a ``(B, L, 2)`` tensor).
Each batch is reduced at once to its best span by transformers' ``utils_qa`` rule
(:func:`cnc_widgets.evaluate.spans.decode_spans`: top-``n_best`` starts x top-``n_best``
ends inside the context, at most ``max_answer_length`` tokens, score = start + end logit),
so no logits are cached: ``span_tokens`` ``(N, 2)`` (start and end token, -1 when the
context holds no valid span), ``span_logits`` ``(N, 2)`` (their start and end logit) and
``null_logits`` ``(N, 2)`` (the ``[CLS]`` position's).

The answer is the context's characters under the span (``offsets``: the tokenizer's
``offset_mapping``, indexing ``contexts``). SQuAD2 "no answer": with
``no_answer_threshold`` set, the answer is empty when the null score (start + end logit at
``[CLS]``) beats the best span's score by more than the threshold (utils_qa's
``null_score_diff_threshold``; 0.0 there); ``None`` (the default) always answers, as SQuAD
v1.1 models do.

Which tokens are the context is read from each batch's ``input_ids``: the tokens between
the tokenizer's separators (``[CLS]``, ``[SEP]``, padding; ``<s>``, ``</s>`` for RoBERTa)
form segments, the question the first and the context the second (``context_sequence=1``;
0 when the context comes first). A fast tokenizer's ``BatchEncoding`` passed as the inputs
is checked against its own ``sequence_ids`` at ``set_data``, as is a ``context_mask=``.
Remove ``offset_mapping`` from the inputs (the model does not take it) and pass it as
``offsets=``.

``metrics()`` gives ``exact_match``, ``f1`` and ``answered`` (:mod:`.answers`).

Examples
--------
>>> enc = tok(questions, contexts, truncation="only_second", max_length=160,
...           padding="longest", return_offsets_mapping=True, return_tensors="pt")
... # doctest: +SKIP
>>> offsets = enc.pop("offset_mapping")  # doctest: +SKIP
>>> reg.set_data(enc, task="extractive_qa", tokenizer=tok, references=golds,
...              instances=questions, offsets=offsets, contexts=contexts)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..evaluate.model_io import call_model
from ..evaluate.spans import context_mask as encoding_context_mask
from ..evaluate.spans import decode_spans
from ..metrics.adversarial import Objective
from .answers import AnswerTask, check_references


def segment_context(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    separators: Sequence[int],
    context_sequence: int = 1,
) -> torch.Tensor:
    """``(B, L)`` bool: the tokens of pair member ``context_sequence`` (0 or 1).

    Runs of separator ids (and padding) split each row into segments; the first segment
    is pair member 0, the next pair member 1.

    Example
    -------
    >>> ids = torch.tensor([[101, 7, 8, 102, 9, 10, 102, 0]])
    >>> segment_context(ids, None, [101, 102, 0]).int().tolist()
    [[0, 0, 0, 0, 1, 1, 0, 0]]
    """
    sep = torch.isin(input_ids, torch.as_tensor(list(separators), dtype=input_ids.dtype))
    if attention_mask is not None:
        sep |= attention_mask.to(input_ids.device) == 0
    before = torch.ones_like(sep[:, :1])  # the row's start counts as a separator
    opens = ~sep & torch.cat([before, sep[:, :-1]], dim=1)
    segment = opens.long().cumsum(1) - 1
    return ~sep & (segment == context_sequence)


def _separators(tokenizer: Any) -> list[int]:
    ids = {
        getattr(tokenizer, f"{role}_token_id", None) for role in ("cls", "sep", "bos", "eos", "pad")
    }
    return sorted(int(i) for i in ids if i is not None)


def _qa_logits(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    start = getattr(output, "start_logits", None)
    end = getattr(output, "end_logits", None)
    if start is None and isinstance(output, Mapping):
        start, end = output.get("start_logits"), output.get("end_logits")
    if start is None and isinstance(output, (tuple, list)) and len(output) >= 2:
        start, end = output[0], output[1]
    if start is None and isinstance(output, torch.Tensor) and output.dim() == 3:
        start, end = output[..., 0], output[..., 1]
    if not isinstance(start, torch.Tensor) or not isinstance(end, torch.Tensor):
        raise ValueError(
            "an extractive QA model must return start and end logits (B, L): a "
            f"*ForQuestionAnswering model's output, a (start, end) tuple or a (B, L, 2) "
            f"tensor; got {type(output).__name__}"
        )
    return start, end


class SpanObjective(Objective):
    """The extractive_qa attack: PGD on the word embeddings ascends the start + end
    cross-entropy of the crafter's own clean best span (its start and end token); a
    question flips when the model's best span (:func:`decode_spans`, start and end token)
    changes. Every question counts; the no-answer threshold is not part of the test."""

    success = "the best span (start and end token) of the question changes"

    def __init__(self, task: ExtractiveQA) -> None:
        self.task = task

    def targets(self, model: Any, batch: Any, labels: torch.Tensor) -> Any:
        return self.predict(model, batch)

    def loss(self, model: Any, batch: Any, targets: Any) -> torch.Tensor:
        start, end = _qa_logits(call_model(model, batch))
        targets = targets.to(start.device)
        valid = targets[:, 0] >= 0
        if not bool(valid.any()):
            return start.sum() * 0.0
        pick = targets[valid]
        return nn.functional.cross_entropy(
            start[valid].float(), pick[:, 0]
        ) + nn.functional.cross_entropy(end[valid].float(), pick[:, 1])

    def predict(self, model: Any, batch: Any) -> torch.Tensor:
        out = call_model(model, batch)
        return self.task.batch_outputs(out, batch)["span_tokens"].cpu()

    def eligible(self, clean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(clean), dtype=torch.bool)


class ExtractiveQA(AnswerTask):
    """A model that returns start and end logits over (question, context) tokens."""

    name = "extractive_qa"
    outputs = ("span_tokens", "span_logits", "null_logits")

    def options(self, options: Mapping[str, Any], n: int) -> dict[str, Any]:
        options = dict(options)
        tokenizer = options.pop("tokenizer", None)
        references = check_references(options.pop("references", None), n, self.name)
        offsets = options.pop("offsets", None)
        contexts = options.pop("contexts", None)
        given_mask = options.pop("context_mask", None)
        separators = options.pop("separator_ids", None)
        spec = {
            "context_sequence": options.pop("context_sequence", 1),
            "no_answer_threshold": options.pop("no_answer_threshold", None),
            "n_best": options.pop("n_best", 20),
            "max_answer_length": options.pop("max_answer_length", 30),
        }
        if options:
            raise ValueError(
                "set_data(task='extractive_qa') takes tokenizer, references, offsets, contexts, "
                "context_mask, separator_ids, context_sequence, no_answer_threshold, n_best "
                f"and max_answer_length, not {sorted(options)}"
            )
        if separators is None:
            if tokenizer is None:
                raise ValueError(
                    "set_data(task='extractive_qa') needs tokenizer= (its [CLS]/[SEP]/padding "
                    "ids tell the context tokens apart) or separator_ids="
                )
            separators = _separators(tokenizer)
        if contexts is None or isinstance(contexts, str) or len(contexts) != n:
            got = "none" if contexts is None else 1 if isinstance(contexts, str) else len(contexts)
            raise ValueError(
                f"set_data(task='extractive_qa') needs contexts=: the {n} context strings the "
                f"offsets index, one per row (got {got})"
            )
        if offsets is None:
            raise ValueError(
                "set_data(task='extractive_qa') needs offsets=: the tokenizer's offset_mapping "
                "(tok(..., return_offsets_mapping=True); pop it from the inputs)"
            )
        offs = np.asarray(offsets.detach().cpu() if hasattr(offsets, "detach") else offsets)
        if offs.ndim != 3 or offs.shape[0] != n or offs.shape[2] != 2:
            raise ValueError(
                f"offsets must be ({n}, tokens, 2) like the tokenizer's offset_mapping, got "
                f"shape {offs.shape}"
            )
        if spec["context_sequence"] not in (0, 1):
            raise ValueError("context_sequence is the pair member holding the context: 0 or 1")
        threshold = spec["no_answer_threshold"]
        if threshold is not None:
            spec["no_answer_threshold"] = float(threshold)
        out = {
            "references": references,
            "contexts": [str(c) for c in contexts],
            "offsets": offs.astype(np.int64).tolist(),
            "separator_ids": [int(s) for s in separators],
            **spec,
        }
        if tokenizer is not None:
            out["_tokenizer"] = tokenizer
        if given_mask is not None:
            out["_context_mask"] = np.asarray(
                given_mask.detach().cpu() if hasattr(given_mask, "detach") else given_mask
            ).astype(bool)
        return out

    def check_inputs(self, inputs: Any, options: Mapping[str, Any]) -> None:
        if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
            raise ValueError(
                "task='extractive_qa' needs the tokenized (question, context) pairs as a dict "
                "with input_ids and attention_mask: tok(questions, contexts, "
                "return_tensors='pt', ...)"
            )
        if "offset_mapping" in inputs:
            raise ValueError(
                "the inputs hold offset_mapping, which the model does not take: pop it "
                "(offsets = enc.pop('offset_mapping')) and pass it as offsets="
            )
        ids = inputs["input_ids"]
        width = len(options["offsets"][0])
        if ids.ndim != 2 or ids.shape[1] != width:
            raise ValueError(
                f"offsets have {width} tokens per row but input_ids is {tuple(ids.shape)}; "
                "pass the offset_mapping of the same tokenization"
            )
        found = segment_context(
            ids, inputs.get("attention_mask"), options["separator_ids"], options["context_sequence"]
        ).numpy()
        truth, source = options.get("_context_mask"), "context_mask="
        if truth is None and hasattr(inputs, "sequence_ids"):
            truth = encoding_context_mask(inputs, options["context_sequence"])
            source = "the tokenizer's sequence_ids"
        if truth is not None:
            if truth.shape != found.shape:
                raise ValueError(f"context_mask is {truth.shape}, input_ids {tuple(ids.shape)}")
            bad = np.flatnonzero((truth != found).any(1))
            if len(bad):
                raise ValueError(
                    f"the context tokens found between separators {options['separator_ids']} "
                    f"differ from {source} in {len(bad)} rows (first: row {bad[0]}); pass "
                    "separator_ids= (the ids around the question and the context) or "
                    "context_sequence="
                )

    def _context(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return segment_context(ids, mask, self.opts["separator_ids"], self.opts["context_sequence"])

    # -- evaluation ---------------------------------------------------------------------

    def batch_outputs(self, output: Any, batch: Any) -> dict[str, torch.Tensor]:
        start, end = _qa_logits(output)
        ctx = self._context(batch["input_ids"], batch.get("attention_mask")).cpu().numpy()
        rows = len(start)
        spans = decode_spans(
            start.float(),
            end.float(),
            np.zeros((*start.shape, 2), dtype=np.int64),  # characters come at finish
            ctx,
            [""] * rows,
            n_best=self.opts["n_best"],
            max_answer_length=self.opts["max_answer_length"],
        )
        tokens = torch.from_numpy(np.stack([spans.start_token, spans.end_token], 1))
        at = tokens.clamp_min(0).to(start.device)
        picked = torch.stack(
            [start.gather(1, at[:, :1])[:, 0], end.gather(1, at[:, 1:])[:, 0]], 1
        ).float()
        picked[tokens[:, 0] < 0] = 0.0  # no valid span: keep the arrays finite
        null = torch.stack([start[:, 0], end[:, 0]], 1).float()
        return {"span_tokens": tokens, "span_logits": picked.cpu(), "null_logits": null.cpu()}

    def answers(self, result: Mapping[str, Any]) -> list[str]:
        tokens = np.asarray(result["span_tokens"])
        best = np.asarray(result["span_logits"], np.float64).sum(1)
        null = np.asarray(result["null_logits"], np.float64).sum(1)
        answer = tokens[:, 0] >= 0
        threshold = self.opts["no_answer_threshold"]
        if threshold is not None:
            answer &= ~(null - best > threshold)
        offsets, contexts = self.opts["offsets"], self.opts["contexts"]
        out = []
        for i, (s, e) in enumerate(tokens.tolist()):
            if not answer[i]:
                out.append("")
                continue
            out.append(contexts[i][offsets[i][s][0] : offsets[i][e][1]])
        return out

    # -- comparison ---------------------------------------------------------------------

    def attack_objective(self) -> SpanObjective:
        return SpanObjective(self)

    def extra_columns(self, ra: Mapping, rb: Mapping) -> dict[str, np.ndarray]:
        return {
            "start_a": ra["span_tokens"][:, 0],
            "end_a": ra["span_tokens"][:, 1],
            "start_b": rb["span_tokens"][:, 0],
            "end_b": rb["span_tokens"][:, 1],
        }
