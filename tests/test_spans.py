"""Span decoding equals a brute-force search over (start, end) pairs; the no-answer rule."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest

from cnc_widgets.evaluate import spans as spans_mod
from cnc_widgets.evaluate.spans import context_mask, decode_spans


def _case(rng, n_question: int, words: list[str]):
    """[CLS] question [SEP] context [SEP] with one token per context word."""
    context = " ".join(words)
    offs, pos = [], 0
    for w in words:
        offs.append((pos, pos + len(w)))
        pos += len(w) + 1
    length = 1 + n_question + 1 + len(words) + 1
    offsets = np.zeros((length, 2), np.int64)
    mask = np.zeros(length, bool)
    first = n_question + 2
    offsets[first : first + len(words)] = offs
    mask[first : first + len(words)] = True
    start = rng.normal(size=length) * 3
    end = rng.normal(size=length) * 3
    return start, end, offsets, mask, context


def _brute(start, end, mask, max_len, candidates_s=None, candidates_e=None):
    best, pair = -np.inf, None
    for s, e in itertools.product(range(len(start)), repeat=2):
        if not (mask[s] and mask[e] and s <= e < s + max_len):
            continue
        if candidates_s is not None and (s not in candidates_s or e not in candidates_e):
            continue
        if start[s] + end[e] > best:
            best, pair = start[s] + end[e], (s, e)
    return best, pair


@pytest.mark.parametrize("seed", range(30))
def test_equals_brute_force_on_small_contexts(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(4):
        words = [f"w{j}" + "x" * int(rng.integers(0, 3)) for j in range(int(rng.integers(1, 19)))]
        rows.append(_case(rng, int(rng.integers(1, 5)), words))
    length = max(len(r[0]) for r in rows)

    def pad(a, fill):  # right-pad each row to one length, as a padded batch is
        out = np.full((len(rows), length, *a[0].shape[1:]), fill, dtype=a[0].dtype)
        for i, x in enumerate(a):
            out[i, : len(x)] = x
        return out

    start = pad([r[0] for r in rows], -1e4)
    end = pad([r[1] for r in rows], -1e4)
    offsets, mask = pad([r[2] for r in rows], 0), pad([r[3] for r in rows], False)
    contexts = [r[4] for r in rows]
    max_len = int(rng.integers(1, 6))
    got = decode_spans(start, end, offsets, mask, contexts, max_answer_length=max_len)
    for i in range(len(rows)):
        best, (s, e) = _brute(start[i], end[i], mask[i], max_len)
        assert (got.start_token[i], got.end_token[i]) == (s, e)
        assert got.score[i] == pytest.approx(best)
        assert got.null_score[i] == pytest.approx(start[i, 0] + end[i, 0])
        a, b = offsets[i, s, 0], offsets[i, e, 1]
        assert (got.start_char[i], got.end_char[i]) == (a, b)
        assert got.text[i] == contexts[i][a:b] and got.text[i].startswith("w")


@pytest.mark.parametrize("seed", range(10))
def test_top_k_candidates_only(seed):
    """With more context tokens than n_best, only the top-n_best starts and ends compete."""
    rng = np.random.default_rng(100 + seed)
    start, end, offsets, mask, context = _case(rng, 3, [f"t{j}" for j in range(40)])
    ctx = np.flatnonzero(mask)
    top_s = set(sorted(ctx, key=lambda j: -start[j])[:5])
    top_e = set(sorted(ctx, key=lambda j: -end[j])[:5])
    best, pair = _brute(start, end, mask, 8, top_s, top_e)
    got = decode_spans(
        start[None], end[None], offsets[None], mask[None], [context], n_best=5, max_answer_length=8
    )
    if pair is None:
        assert got.text == [""] and np.isnan(got.score[0]) and got.start_token[0] == -1
    else:
        assert (got.start_token[0], got.end_token[0]) == pair
        assert got.score[0] == pytest.approx(best)


def test_no_answer_rule():
    start, end, offsets, mask, context = _case(np.random.default_rng(0), 2, ["a", "b", "c"])
    start[:] = end[:] = 0.0
    start[5], end[6] = 2.0, 1.0  # best span "b c" scores 3.0
    batch = [np.stack([x, x]) for x in (start, end, offsets, mask)]
    for null, threshold, answered in [
        (2.9, 0.0, True),
        (3.1, 0.0, False),
        (3.1, 0.5, True),  # the null must win by more than the threshold
        (3.6, 0.5, False),
        (-5.0, -9.0, False),  # a negative threshold favours "no answer"
        (100.0, None, True),  # no threshold: SQuAD v1.1, always answer
    ]:
        s, e = batch[0].copy(), batch[1].copy()
        s[:, 0] = e[:, 0] = null / 2
        got = decode_spans(s, e, batch[2], batch[3], [context] * 2, no_answer_threshold=threshold)
        assert got.null_score.tolist() == [null, null]
        assert got.score.tolist() == [3.0, 3.0]
        if answered:
            assert got.text == ["b c"] * 2 and got.start_char.tolist() == [2, 2]
        else:
            assert got.text == [""] * 2 and got.start_char.tolist() == [-1, -1]
            assert got.end_token.tolist() == [-1, -1]


def test_empty_context_has_no_answer():
    start, end, offsets, mask, _context = _case(np.random.default_rng(1), 2, ["x"])
    mask[:] = False
    got = decode_spans(start[None], end[None], offsets[None], mask[None], [""])
    assert got.text == [""] and np.isnan(got.score[0]) and len(got) == 1


def test_real_tokenizer_offsets():
    from transformers import AutoTokenizer

    from cnc_widgets.examples import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    questions = ["Who fought the fire?", "Where?"]
    contexts = ["Crews from Hill Top fought the blaze.", "Near Goulburn, south-west of Sydney."]
    enc = tok(questions, contexts, padding=True, return_offsets_mapping=True)
    mask = context_mask(enc)
    ids = np.array(enc["input_ids"])
    # point the logits at the tokens of "Hill Top" and "Sydney"
    start = np.where(mask, 0.0, -1.0)
    end = start.copy()
    for i, word in enumerate(["Hill Top", "Sydney"]):
        a = contexts[i].index(word)
        b = a + len(word)
        toks = [j for j, (s, e) in enumerate(enc["offset_mapping"][i]) if mask[i, j] and a <= s < b]
        start[i, toks[0]], end[i, toks[-1]] = 5.0, 5.0
    got = decode_spans(start, end, enc["offset_mapping"], mask, contexts)
    assert got.text == ["Hill Top", "Sydney"]
    assert mask.sum(1).tolist() == [
        len(tok(c, add_special_tokens=False)["input_ids"]) for c in contexts
    ]
    assert not mask[ids == tok.sep_token_id].any() and not mask[:, 0].any()
    with pytest.raises(TypeError, match="fast tokenizer"):
        context_mask({"input_ids": [[1]]})


def test_bad_shapes_are_named():
    z = np.zeros((2, 5))
    with pytest.raises(ValueError, match=r"must all be \(N, L\)"):
        decode_spans(z, np.zeros((2, 4)), np.zeros((2, 5, 2)), z > 0, ["", ""])
    with pytest.raises(ValueError, match="offset_mapping"):
        decode_spans(z, z, np.zeros((2, 5)), z > 0, ["", ""])
    with pytest.raises(ValueError, match="contexts"):
        decode_spans(z, z, np.zeros((2, 5, 2)), z > 0, [""])


def test_docstring_example():
    result = doctest.testmod(spans_mod)
    assert result.attempted >= 1 and result.failed == 0
