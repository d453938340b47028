"""Greedy generation equals transformers' generate token for token; teacher-forced token KL."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cnc_widgets.evaluate.generation import (
    generation_kl,
    greedy_generate,
    stop_tokens,
    teacher_forced_logits,
)

from .lm_builders import tiny_llama

PAD = 0


@pytest.fixture(scope="module")
def tiny_lm():
    model = tiny_llama(
        97, max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=PAD
    )
    # Random init is near uniform: sharpen the head so greedy picks are far from ties.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def _left_padded(lengths: list[int], seed: int, vocab: int = 97):
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, width - n :] = torch.randint(3, vocab, (n,), generator=g)
        mask[i, width - n :] = 1
    return ids, mask


def _reference(model, ids, mask, max_new_tokens, stops):
    """model.generate(do_sample=False), cut after each row's first stop token."""
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=list(stops),
            pad_token_id=PAD,
        )
    rows = []
    for row in out[:, ids.shape[1] :].tolist():
        cut = next((t + 1 for t, tok in enumerate(row) if tok in stops), len(row))
        rows.append(row[:cut])
    return rows


def test_equals_generate_batched_left_padded(tiny_lm):
    ids, mask = _left_padded([5, 9, 3, 9, 7, 1], seed=1)
    free = greedy_generate(tiny_lm, ids, mask, max_new_tokens=12, stop_token_ids=())
    assert [len(t) for t in free.tokens] == [12] * 6 and not free.stopped.any()
    assert free.tokens == _reference(tiny_lm, ids, mask, 12, ())
    # a stop token that some rows produce early and others later or never
    counts = np.bincount([row[3] for row in free.tokens], minlength=97)
    stop = int(counts.argmax())
    got = greedy_generate(tiny_lm, ids, mask, max_new_tokens=12, stop_token_ids=stop)
    want = _reference(tiny_lm, ids, mask, 12, (stop,))
    assert got.tokens == want
    assert got.stopped.tolist() == [r[-1] == stop for r in want]
    assert got.stopped.any() and 1 < len({len(t) for t in got.tokens})
    assert got.stop_token_ids == (stop,) and got.max_new_tokens == 12
    # batch size does not change the answers; nor does padding that a whole batch shares
    for bs in (1, 4):
        assert (
            greedy_generate(
                tiny_lm, ids, mask, max_new_tokens=12, stop_token_ids=stop, batch_size=bs
            ).tokens
            == want
        )
    wide_ids = torch.cat([torch.full((6, 3), PAD), ids], 1)
    wide_mask = torch.cat([torch.zeros((6, 3), dtype=torch.long), mask], 1)
    assert _reference(tiny_lm, wide_ids, wide_mask, 12, (stop,)) == want
    got_wide = greedy_generate(tiny_lm, wide_ids, wide_mask, max_new_tokens=12, stop_token_ids=stop)
    assert got_wide.tokens == want


def test_unpadded_batch_and_default_stop(tiny_lm):
    ids, mask = _left_padded([6, 6, 6], seed=2)
    assert stop_tokens(tiny_lm) == (2,)
    got = greedy_generate(tiny_lm, ids, None, max_new_tokens=5)
    assert got.tokens == _reference(tiny_lm, ids, mask, 5, (2,))
    assert got.texts is None and len(got) == 3


def test_teacher_forced_logits_reproduce_the_greedy_path(tiny_lm):
    ids, mask = _left_padded([4, 8, 2], seed=3)
    gen = greedy_generate(tiny_lm, ids, mask, max_new_tokens=6, stop_token_ids=())
    logits = teacher_forced_logits(tiny_lm, ids, mask, gen.tokens)
    for row, lg in zip(gen.tokens, logits, strict=True):
        assert lg.shape == (len(row), 97)
        assert lg.argmax(-1).tolist() == row
    # Row t of prompt i: the logits of one unbatched forward over prompt + answer[:t]
    i = 1
    real = ids[i, mask[i] == 1]
    with torch.no_grad():
        direct = tiny_lm(torch.cat([real, torch.tensor(gen.tokens[i])])[None]).logits[0]
    torch.testing.assert_close(logits[i], direct[len(real) - 1 : -1], atol=1e-5, rtol=1e-5)


def test_generation_kl_equals_direct_sum(tiny_lm):
    ids, mask = _left_padded([4, 8, 2, 6], seed=4)
    gen = greedy_generate(tiny_lm, ids, mask, max_new_tokens=5, stop_token_ids=())
    other = copy.deepcopy(tiny_lm)
    with torch.no_grad():
        other.model.layers[0].mlp.down_proj.weight.mul_(0.3)
    kl = generation_kl(tiny_lm, other, ids, mask, gen.tokens, batch_size=3)
    same = generation_kl(tiny_lm, tiny_lm, ids, mask, gen.tokens)
    assert [k.shape for k in kl] == [(5,)] * 4
    assert all(np.abs(k).max() < 1e-9 for k in same)
    for i in range(4):
        real = ids[i, mask[i] == 1]
        seq = torch.cat([real, torch.tensor(gen.tokens[i])])[None]
        with torch.no_grad():
            pa = torch.softmax(tiny_lm(seq).logits[0, len(real) - 1 : -1].double(), -1).numpy()
            pb = torch.softmax(other(seq).logits[0, len(real) - 1 : -1].double(), -1).numpy()
        direct = (pa * np.log(pa / pb)).sum(-1)
        np.testing.assert_allclose(kl[i], direct, rtol=1e-4, atol=1e-7)
        from scipy.special import rel_entr

        np.testing.assert_allclose(kl[i], rel_entr(pa, pb).sum(-1), rtol=1e-4, atol=1e-7)
    assert all((k > 0).all() for k in kl)
    empty = generation_kl(tiny_lm, other, ids[:2], mask[:2], [[], []])
    assert [e.shape for e in empty] == [(0,), (0,)]


def test_bad_input_is_named(tiny_lm):
    ids, mask = _left_padded([3, 5], seed=5)
    right = mask.flip(1)
    with pytest.raises(ValueError, match="padding_side = 'left'"):
        greedy_generate(tiny_lm, ids.flip(1), right, max_new_tokens=2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_generate(tiny_lm, ids, mask, max_new_tokens=0)
    with pytest.raises(ValueError, match="one shape"):
        greedy_generate(tiny_lm, ids, mask[:, 1:], max_new_tokens=2)
    with pytest.raises(ValueError, match="2 prompts but 1"):
        generation_kl(tiny_lm, tiny_lm, ids, mask, [[4]])


@pytest.mark.slow
def test_equals_generate_on_smollm2(smollm2):
    model, tok = smollm2
    tok = copy.deepcopy(tok)  # the session's tokenizer keeps its own padding side
    tok.padding_side = "left"
    questions = [
        "What is the capital of France?",
        "Name a colour.",
        "Who wrote Hamlet? Answer briefly.",
    ]
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]
    enc = tok(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
    assert (enc["attention_mask"] == 0).any()  # the batch really is left-padded
    stops = stop_tokens(model, tok)
    got = greedy_generate(
        model, enc["input_ids"], enc["attention_mask"], max_new_tokens=10, tokenizer=tok
    )
    want = _reference(model, enc["input_ids"], enc["attention_mask"], 10, stops)
    assert got.tokens == want
    assert got.texts == [tok.decode(w, skip_special_tokens=True) for w in want]
    assert "paris" in got.texts[0].lower()
