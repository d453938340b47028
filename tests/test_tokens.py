"""Token-level metrics of causal LMs (metrics/tokens.py) against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.special
import scipy.stats
import torch

from cnc_widgets import examples
from cnc_widgets.compress import apply_operation
from cnc_widgets.metrics.tokens import (
    TOKEN_STATS,
    TOKEN_STATS_SEM,
    lm_metrics,
    paired_token_stats,
    score_tokens,
    scored_positions,
    sequence_table,
    token_stats,
)

# Eight pieces of unseen news of different lengths, so a batch needs padding.
WORDS = (4, 31, 9, 50, 17, 2, 40, 23)


@pytest.fixture(scope="module")
def sequences(lm_tokenizer):
    texts = examples.lee_texts()
    pieces = [" ".join(texts[i].split()[:n]) for i, n in enumerate(WORDS)]
    return [lm_tokenizer(p, add_special_tokens=False)["input_ids"] for p in pieces]


def pad(seqs: list[list[int]], side: str, pad_id: int) -> dict[str, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        cols = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, cols] = torch.tensor(s)
        mask[i, cols] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def pruned(tiny_lm):
    return apply_operation(tiny_lm, "prune", amount=0.4, scope="tensor")


def direct(model_a, model_b, seqs):
    """Each sequence alone, unpadded: float64 log-softmax over the full vocabulary (SciPy)."""
    rows = []
    with torch.no_grad():
        for i, s in enumerate(seqs):
            x = torch.tensor([s])
            la = model_a(input_ids=x).logits[0, :-1].double().numpy()
            lb = model_b(input_ids=x).logits[0, :-1].double().numpy()
            lpa, lpb = scipy.special.log_softmax(la, -1), scipy.special.log_softmax(lb, -1)
            nxt = np.asarray(s[1:])
            at = np.arange(len(nxt))
            rows.append(
                pd.DataFrame(
                    {
                        "instance": i,
                        "token": nxt,
                        "nll_a": -lpa[at, nxt],
                        "nll_b": -lpb[at, nxt],
                        "kl": scipy.special.rel_entr(np.exp(lpa), np.exp(lpb)).sum(-1),
                        "dp": np.exp(lpb[at, nxt]) - np.exp(lpa[at, nxt]),
                        "top_a": la.argmax(-1),
                        "top_b": lb.argmax(-1),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_scored_positions_rule():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 0, 1, 0]])
    expected = [[mask[i, t] == 1 and mask[i, t + 1] == 1 for t in range(4)] for i in range(4)]
    assert scored_positions(mask).tolist() == expected
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        scored_positions(torch.ones(5))


@pytest.mark.parametrize("side", ["right", "left"])
def test_nll_and_perplexity_equal_the_models_own_loss(tiny_lm, lm_tokenizer, sequences, side):
    enc = pad(sequences, side, lm_tokenizer.pad_token_id)
    scores = score_tokens(tiny_lm, enc, batch_size=3)
    # The model's own loss (HF labels=), with -100 where a position is not scored.
    labels = torch.full_like(enc["input_ids"], -100)
    labels[:, 1:] = torch.where(
        scored_positions(enc["attention_mask"]), enc["input_ids"][:, 1:], -100
    )
    position_ids = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        loss = tiny_lm(**enc, labels=labels, position_ids=position_ids).loss.item()
    metrics = lm_metrics(scores.table)
    assert metrics["tokens"] == sum(len(s) - 1 for s in sequences) == int((labels != -100).sum())
    assert metrics["nll"] == pytest.approx(loss, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert 20 < metrics["perplexity"] < 300  # trained: far below the 512 of a uniform guess
    with torch.no_grad():
        logits = tiny_lm(**enc, position_ids=position_ids).logits
    top = logits[:, :-1].argmax(-1)[scored_positions(enc["attention_mask"])]
    target = enc["input_ids"][:, 1:][scored_positions(enc["attention_mask"])]
    assert metrics["token_accuracy"] == pytest.approx(float((top == target).float().mean()))
    assert (scores.table.top.to_numpy() == top.numpy()).all()


@pytest.mark.parametrize("side", ["right", "left"])
def test_paired_table_equals_each_sequence_alone_in_float64(
    tiny_lm, pruned, lm_tokenizer, sequences, side
):
    enc = pad(sequences, side, lm_tokenizer.pad_token_id)
    table = paired_token_stats(tiny_lm, pruned, enc, batch_size=3, tokenizer=lm_tokenizer)
    want = direct(tiny_lm, pruned, sequences)
    assert len(table) == len(want)
    assert (table.instance.to_numpy() == want.instance.to_numpy()).all()
    assert (table.token.to_numpy() == want.token.to_numpy()).all()
    for col in ("nll_a", "nll_b", "kl", "dp"):
        np.testing.assert_allclose(table[col], want[col], rtol=1e-4, atol=1e-6, err_msg=col)
    # Ties aside, the top-1 token is the same as alone.
    assert (table.top_a.to_numpy() == want.top_a.to_numpy()).mean() > 0.99
    assert table.kl.min() >= -1e-12 and table.kl.mean() > 1e-3  # pruning changed the model
    # The predicted token is where the table says, and its text is its decoding.
    row = table.iloc[7]
    assert enc["input_ids"][row.instance, row.position] == row.token
    assert row.text == lm_tokenizer.decode([row.token])


def test_kl_equals_float64_full_vocabulary_on_the_same_logits(
    tiny_lm, pruned, lm_tokenizer, sequences
):
    enc = pad(sequences, "right", lm_tokenizer.pad_token_id)
    table = paired_token_stats(tiny_lm, pruned, enc, batch_size=len(sequences))
    with torch.no_grad():
        la = tiny_lm(**enc).logits[:, :-1].double()
        lb = pruned(**enc).logits[:, :-1].double()
    scored = scored_positions(enc["attention_mask"])
    pa = torch.softmax(la[scored], -1).numpy()
    pb = torch.softmax(lb[scored], -1).numpy()
    assert pa.shape[1] == len(lm_tokenizer)  # every vocabulary entry counts
    kl = (pa * (np.log(pa) - np.log(pb))).sum(-1)
    np.testing.assert_allclose(table.kl, kl, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(table.kl, scipy.stats.entropy(pa, pb, axis=-1), rtol=1e-9)


def test_batch_size_does_not_change_results(tiny_lm, pruned, lm_tokenizer, sequences):
    enc = pad(sequences, "right", lm_tokenizer.pad_token_id)
    tables = [paired_token_stats(tiny_lm, pruned, enc, batch_size=b) for b in (1, 3, 8)]
    for other in tables[1:]:
        assert (
            (
                other[["instance", "position", "token"]]
                == tables[0][["instance", "position", "token"]]
            )
            .all()
            .all()
        )
        for col in ("nll_a", "nll_b", "kl", "dp"):
            np.testing.assert_allclose(other[col], tables[0][col], rtol=1e-4, atol=1e-6)


def test_left_padding_scores_like_unpadded_with_absolute_positions(
    tiny_gpt2, lm_tokenizer, sequences
):
    # GPT-2 adds absolute position embeddings: positions must count from the first real token.
    enc = pad(sequences, "left", lm_tokenizer.pad_token_id)
    table = score_tokens(tiny_gpt2, enc, batch_size=4).table
    alone = pd.concat(
        [
            score_tokens(tiny_gpt2, {"input_ids": torch.tensor([s])}).table.assign(instance=i)
            for i, s in enumerate(sequences)
        ],
        ignore_index=True,
    )
    np.testing.assert_allclose(table.nll, alone.nll, rtol=1e-4, atol=1e-6)


def test_token_stats_equal_numpy_and_scipy(tiny_lm, pruned, lm_tokenizer, sequences):
    enc = pad(sequences, "left", lm_tokenizer.pad_token_id)
    table = paired_token_stats(tiny_lm, pruned, enc, batch_size=4)
    stats = token_stats(table)
    assert list(stats.index) == list(TOKEN_STATS) + list(TOKEN_STATS_SEM)
    kl, dp = table.kl.to_numpy(), table.dp.to_numpy()
    a, b = table.nll_a.to_numpy(), table.nll_b.to_numpy()
    n = len(table)
    same = np.mean(table.top_a.to_numpy() == table.top_b.to_numpy())
    want = {
        "kl_mean": kl.mean(),
        "kl_sem": scipy.stats.sem(kl),
        "kl_median": np.median(kl),
        "kl_max": kl.max(),
        **{
            key: np.quantile(kl, q, method="linear")
            for key, q in zip(
                TOKEN_STATS[4:12], [0.999, 0.99, 0.95, 0.9, 0.1, 0.05, 0.01, 0.001], strict=True
            )
        },
        "same_top": same,
        "dp_mean": dp.mean(),
        "dp_median": np.median(dp),
        "dp_rms": np.sqrt(np.mean(dp**2)),
        "dp_p99": np.quantile(dp, 0.99),
        "dp_p1": np.quantile(dp, 0.01),
        "ppl_a": np.exp(a.mean()),
        "ppl_b": np.exp(b.mean()),
        "ppl_ratio": np.exp(b.mean()) / np.exp(a.mean()),
        "ln_ppl_ratio": np.log(np.exp(b.mean()) / np.exp(a.mean())),
        "logloss_corr": scipy.stats.pearsonr(a, b).statistic,
        "same_top_sem": np.sqrt(same * (1 - same) / (n - 1)),
        "dp_mean_sem": scipy.stats.sem(dp),
        "dp_rms_sem": scipy.stats.sem(dp**2) / (2 * np.sqrt(np.mean(dp**2))),
        "ppl_a_sem": np.exp(a.mean()) * scipy.stats.sem(a),
        "ppl_b_sem": np.exp(b.mean()) * scipy.stats.sem(b),
        # llama.cpp's form: sqrt(sem_a^2 + sem_b^2 - 2 cov / (n - 1)).
        "ln_ppl_ratio_sem": np.sqrt(
            scipy.stats.sem(a) ** 2
            + scipy.stats.sem(b) ** 2
            - 2 * np.cov(a, b, ddof=0)[0, 1] / (n - 1)
        ),
        "ppl_ratio_sem": np.exp(b.mean() - a.mean())
        * np.sqrt(
            scipy.stats.sem(a) ** 2
            + scipy.stats.sem(b) ** 2
            - 2 * np.cov(a, b, ddof=0)[0, 1] / (n - 1)
        ),
        "tokens": n,
    }
    assert set(want) == set(stats.index)
    for key, value in want.items():
        assert stats[key] == pytest.approx(value, rel=1e-9, abs=1e-15), key
    assert 0 < stats.same_top < 1 and stats.ppl_b > stats.ppl_a and stats.logloss_corr > 0.5


def test_sequence_table_and_embeddings(tiny_lm, pruned, lm_tokenizer, sequences):
    seqs = [*sequences, sequences[5][:1]]  # one token: nothing to score
    enc = pad(seqs, "right", lm_tokenizer.pad_token_id)
    table = paired_token_stats(tiny_lm, pruned, enc, batch_size=4)
    per = sequence_table(table, len(seqs))
    assert list(per.index) == list(range(len(seqs)))
    assert per.tokens.tolist() == [len(s) - 1 for s in seqs]
    assert per.iloc[-1][["nll_a", "kl_mean", "same_top"]].isna().all()
    for i in range(len(sequences)):
        rows = table[table.instance == i]
        assert per.nll_a[i] == pytest.approx(rows.nll_a.mean())
        assert per.ppl_b[i] == pytest.approx(math.exp(rows.nll_b.mean()))
        assert per.kl_max[i] == rows.kl.max()
        assert per.same_top[i] == pytest.approx((rows.top_a == rows.top_b).mean())

    emb = score_tokens(tiny_lm, enc, batch_size=3, embeddings=True).embeddings
    assert emb.shape == (len(seqs), tiny_lm.config.hidden_size)
    assert np.isnan(emb[-1]).all() and np.isfinite(emb[:-1]).all()
    with torch.no_grad():
        for i, s in enumerate(sequences):
            hidden = tiny_lm(input_ids=torch.tensor([s]), output_hidden_states=True).hidden_states[
                -1
            ]
            np.testing.assert_allclose(emb[i], hidden[0, :-1].mean(0).numpy(), rtol=1e-4, atol=1e-5)


class Classifier(torch.nn.Module):
    """One row of logits per sequence: not a causal LM."""

    def forward(self, input_ids, attention_mask=None):
        return input_ids.float()


def test_bad_inputs_say_what_to_do(tiny_lm):
    with pytest.raises(ValueError, match="input_ids"):
        score_tokens(tiny_lm, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size"):
        score_tokens(tiny_lm, {"input_ids": torch.zeros(2, 3, dtype=torch.long)}, batch_size=0)
    with pytest.raises(ValueError, match="no scored tokens"):
        lm_metrics(score_tokens(tiny_lm, {"input_ids": torch.zeros(2, 1, dtype=torch.long)}).table)
    with pytest.raises(ValueError, match="paired_token_stats"):
        token_stats(pd.DataFrame({"kl": [0.1]}))
    with pytest.raises(ValueError, match="no scored tokens"):
        token_stats(pd.DataFrame({c: [] for c in ("nll_a", "nll_b", "kl", "dp", "top_a", "top_b")}))
    ids = {"input_ids": torch.zeros(2, 3, dtype=torch.long)}
    with pytest.raises(ValueError, match="logits"):
        score_tokens(Classifier(), ids)
    other, _ = examples.train_tiny_lm(tokenizer=examples.train_tokenizer(vocab_size=300), steps=1)
    with pytest.raises(ValueError, match="vocabularies differ"):
        paired_token_stats(tiny_lm, other, ids)
