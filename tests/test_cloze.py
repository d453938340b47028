"""Cloze questions from the Lee news articles, and the tiny QA model trained on them."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from cnc_widgets.evaluate.spans import decode_spans
from cnc_widgets.examples import cloze_questions, train_tiny_qa
from cnc_widgets.examples.cloze import BLANK, encode_qa, lee_corpus_path
from cnc_widgets.metrics.squad import exact_match_scores, f1_scores

NAME = re.compile(r"[A-Z][A-Za-z]+(?:[ -][A-Z][A-Za-z]+)+")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@pytest.fixture(scope="module")
def qa():
    return cloze_questions()


@pytest.fixture(scope="module")
def articles():
    return [line.strip() for line in lee_corpus_path().read_text(encoding="utf-8").splitlines()]


def test_answers_sit_at_their_offsets(qa, articles):
    assert 1000 < len(qa) < 3000 and len(set(qa.article)) > 250
    assert qa.article == sorted(qa.article)
    for q, c, a, s, art in zip(
        qa.question, qa.context, qa.answer, qa.answer_start, qa.article, strict=True
    ):
        assert c[s : s + len(a)] == a
        assert q.count(BLANK) == 1
        filled = q.replace(BLANK, a)
        # the question is the context's sentence with the answer blanked, at that place
        at = c.index(filled)
        assert at + q.index(BLANK) == s
        assert c in articles[art]
        assert NAME.fullmatch(a) or NUMBER.fullmatch(a)
        if NAME.fullmatch(a):  # a name never opens its sentence
            assert q[: q.index(BLANK)].strip(" \"'")
        # no word is cut: the answer is bounded by non-word characters
        assert not (s > 0 and c[s - 1].isalnum()) and not c[s + len(a) :][:1].isalnum()
    names = sum(bool(NAME.fullmatch(a)) for a in qa.answer)
    assert 0.3 < names / len(qa) < 0.9  # both kinds occur


def test_windows_and_limit(qa, articles):
    first = cloze_questions(limit=25)
    assert len(first) == 25 and first.question == qa.question[:25]
    assert cloze_questions(limit=25).to_frame().equals(first.to_frame())
    assert list(first.to_frame().columns) == [
        "question",
        "context",
        "answer",
        "answer_start",
        "article",
    ]
    whole = cloze_questions(limit=25, window=None)
    assert all(c == articles[a] for c, a in zip(whole.context, whole.article, strict=True))
    alone = cloze_questions(limit=25, window=0)
    assert [q.replace(BLANK, a) for q, a in zip(alone.question, alone.answer, strict=True)] == (
        alone.context
    )
    wider = cloze_questions(limit=25, window=3)
    assert all(
        len(w) >= len(c) and c in w for w, c in zip(wider.context, first.context, strict=True)
    )
    assert first.answer[:3] == ["Southern Highlands", "Hume Highway", "Blue Mountains"]
    with pytest.raises(ValueError, match="window"):
        cloze_questions(window=-1)


def test_split_by_article(qa):
    train, test = qa.split(test_fraction=0.25, seed=0)
    assert len(train) + len(test) == len(qa)
    assert not set(train.article) & set(test.article)
    assert 0.15 < len(test) / len(qa) < 0.35
    again = qa.split(test_fraction=0.25, seed=0)[1]
    assert again.question == test.question
    with pytest.raises(ValueError, match="test_fraction"):
        qa.split(test_fraction=1.0)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from cnc_widgets.examples import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


def test_encoded_answer_tokens_cover_the_answer(qa, tokenizer):
    part = qa.subset(range(0, len(qa), 7))
    enc = encode_qa(part, tokenizer, max_length=160)
    s, e = enc["start_positions"], enc["end_positions"]
    assert (s >= 0).float().mean() > 0.95  # window=1 contexts almost always fit
    offs = enc["offset_mapping"]
    for i in torch.nonzero(s >= 0).flatten().tolist():
        a0, a1 = int(offs[i, s[i], 0]), int(offs[i, e[i], 1])
        assert part.context[i][a0:a1] == part.answer[i]
        assert enc["context_mask"][i, s[i] : e[i] + 1].all()


def _scores(model, data, tokenizer):
    enc = encode_qa(data, tokenizer)
    with torch.no_grad():
        out = model(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            token_type_ids=enc["token_type_ids"],
        )
    spans = decode_spans(
        out.start_logits, out.end_logits, enc["offset_mapping"], enc["context_mask"], data.context
    )
    refs = [[a] for a in data.answer]
    return exact_match_scores(spans.text, refs).mean(), f1_scores(spans.text, refs).mean()


def test_tiny_qa_beats_chance(qa, tokenizer):
    train, test = qa.split(test_fraction=0.25, seed=0)
    untrained, _ = train_tiny_qa(train.subset([0]), tokenizer=tokenizer, epochs=0)
    model, tok = train_tiny_qa(train, tokenizer=tokenizer, epochs=3)
    em0, f10 = _scores(untrained, test, tok)
    em, f1 = _scores(model, test, tok)
    assert f1 > max(0.1, 3 * f10) and em > max(0.05, 3 * em0)


def test_tiny_qa_is_deterministic(qa, tokenizer):
    small = qa.subset(range(64))
    a, _ = train_tiny_qa(small, tokenizer=tokenizer, epochs=1, seed=3)
    b, _ = train_tiny_qa(small, tokenizer=tokenizer, epochs=1, seed=3)
    c, _ = train_tiny_qa(small, tokenizer=tokenizer, epochs=1, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not a.training
    with pytest.raises(ValueError, match="max_length"):
        train_tiny_qa(small, tokenizer=tokenizer, max_length=8)
    assert np.isfinite(_scores(a, small, tokenizer)).all()
    _, default_tok = train_tiny_qa(small, epochs=0)  # MiniLM's tokenizer by default
    assert default_tok.get_vocab() == tokenizer.get_vocab()


def test_docstring_examples():
    import doctest

    from cnc_widgets.examples import cloze

    result = doctest.testmod(cloze)
    assert result.attempted >= 2 and result.failed == 0


@pytest.mark.slow
def test_minilm_qa_starts_from_minilm_and_learns(qa):
    """MiniLM's pretrained encoder with a new QA head: epochs=0 keeps MiniLM's weights
    exactly; a few steps move the head and lower the loss; deterministic for a seed."""
    from transformers import AutoModel

    from cnc_widgets.examples import minilm_path, train_minilm_qa

    small = qa.subset(range(32))
    start, tok = train_minilm_qa(small, epochs=0)
    pretrained = AutoModel.from_pretrained(minilm_path()).state_dict()
    encoder = start.bert.state_dict()
    shared = [k for k in pretrained if k in encoder]
    assert len(shared) > 90 and all(torch.equal(pretrained[k], encoder[k]) for k in shared)
    assert not start.training and 22e6 < sum(p.numel() for p in start.parameters()) < 23e6

    def loss(model):
        enc = encode_qa(small, tok)
        keep = enc["start_positions"] >= 0
        cols = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")
        with torch.no_grad():
            return float(model(**{k: enc[k][keep] for k in cols}).loss)

    trained, _ = train_minilm_qa(small, epochs=1, lr=3e-4)
    again, _ = train_minilm_qa(small, epochs=1, lr=3e-4)
    assert loss(trained) < loss(start)
    assert torch.equal(trained.qa_outputs.weight, again.qa_outputs.weight)
    assert not torch.equal(trained.qa_outputs.weight, start.qa_outputs.weight)
