"""The causal_lm task: scored positions, perplexity and token agreement against direct
computations with the model's own loss (a tiny random Llama; SmolLM2 is in the slow tests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

import cnc_widgets as cnc
from cnc_widgets.tasks.causal_lm import scored_mask

from . import lm_builders
from .attack_checks import (
    batches,
    check_attack_contract,
    crafted_on,
    embedded,
)


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    return lm_builders.tiny_llama(97, seed=seed)


def batch(n: int = 10, t: int = 12, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 97, (n, t), generator=g)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()  # right padding
    return {"input_ids": ids * mask, "attention_mask": mask}


def test_scored_positions_follow_the_mask():
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 0, 0]])
    assert scored_mask(mask).tolist() == [
        [True, True, False],
        [False, True, True],
        [False, False, False],
    ]


def test_perplexity_equals_the_models_own_loss():
    model, enc = tiny_llama(), batch()
    reg = cnc.ModelRegistry()
    reg.set_data(enc, task="causal_lm", batch_size=4)
    reg.add("base", model)
    reg.evaluate(progress=False)
    row = reg.metrics().loc["base"]
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    with torch.no_grad():
        logits = model(**enc).logits
    # The model's loss is a mean over all scored tokens of the batch: the same definition.
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 97).double(), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert row["nll"] == pytest.approx(float(loss), rel=1e-5)
    assert row["perplexity"] == pytest.approx(float(torch.exp(loss)), rel=1e-5)
    scored = labels[:, 1:] != -100
    assert row["tokens"] == int(scored.sum())
    top = logits[:, :-1].argmax(-1)
    accuracy = ((top == enc["input_ids"][:, 1:]) & scored).sum() / scored.sum()
    assert row["token_accuracy"] == pytest.approx(float(accuracy))
    assert "accuracy" not in reg.metrics().columns
    assert reg.task.default_axes()["y"] == "perplexity"


def test_token_agreement_and_error_jaccard_count_scored_tokens():
    enc = batch()
    reg = cnc.ModelRegistry()
    reg.set_data(enc, task="causal_lm", batch_size=5)
    a, b = tiny_llama(0), tiny_llama(3)
    reg.add("a", a)
    reg.add("b", b)
    reg.evaluate(progress=False)
    cmp = reg.compare("a", "b")
    with torch.no_grad():
        ta = a(**enc).logits[:, :-1].argmax(-1)
        tb = b(**enc).logits[:, :-1].argmax(-1)
    scored = scored_mask(enc["attention_mask"])
    target = enc["input_ids"][:, 1:]
    assert cmp.agreement == pytest.approx(float((ta == tb)[scored].double().mean()))
    ea, eb = (ta != target)[scored], (tb != target)[scored]
    jac = float((ea & eb).sum() / (ea | eb).sum())
    assert cmp.error_jaccard == pytest.approx(jac)


def test_causal_lm_refuses_labels_and_non_token_inputs():
    reg = cnc.ModelRegistry()
    with pytest.raises(ValueError, match="takes no labels"):
        reg.set_data(batch(), np.zeros(10), task="causal_lm")
    with pytest.raises(ValueError, match="unknown task"):
        reg.set_data(batch(), task="translation")


def test_views_take_the_quality_axis_from_the_task():
    reg = cnc.ModelRegistry()
    reg.set_data(batch(), task="causal_lm", batch_size=5)
    reg.add("a", tiny_llama(0))
    reg.evaluate(progress=False)
    scatter = cnc.EfficiencyScatter(reg)
    assert (scatter.x, scatter.y, scatter.y_better) == ("size_bytes", "perplexity", "lower")
    graph = cnc.show_provenance(reg)
    assert graph.color_by == "perplexity" and graph.pareto["y_better"] == "lower"
    plain = cnc.ModelRegistry()
    assert cnc.EfficiencyScatter(plain).y == "accuracy"


def test_token_table_agrees_with_each_models_evaluation_also_left_padded():
    enc = batch(n=8, t=10, seed=5)
    # Left padding: move every row's real tokens to the right end.
    ids, mask = enc["input_ids"].clone(), enc["attention_mask"].clone()
    for i in range(len(ids)):
        k = int(mask[i].sum())
        ids[i] = torch.cat([torch.zeros(10 - k, dtype=ids.dtype), enc["input_ids"][i, :k]])
        mask[i] = (torch.arange(10) >= 10 - k).to(mask.dtype)
    reg = cnc.ModelRegistry()
    reg.set_data({"input_ids": ids, "attention_mask": mask}, task="causal_lm", batch_size=3)
    reg.add("a", tiny_llama(0))
    reg.add("b", tiny_llama(4))
    reg.evaluate(progress=False)
    cmp = reg.compare("a", "b")
    tokens = cmp.tokens
    assert len(tokens) == reg.metrics().loc["a", "tokens"]
    # The paired run and each model's own evaluation score the same tokens alike.
    for name, column in (("a", "nll_a"), ("b", "nll_b")):
        assert tokens[column].mean() == pytest.approx(reg.metrics().loc[name, "nll"], rel=1e-5)
    stats = cmp.token_stats
    assert stats["kl_mean"] == pytest.approx(tokens["kl"].mean())
    assert stats["same_top"] == pytest.approx(cmp.agreement)
    assert stats["ppl_ratio"] == pytest.approx(
        reg.metrics().loc["b", "perplexity"] / reg.metrics().loc["a", "perplexity"], rel=1e-5
    )
    inst = cmp.instances
    assert {"nll_a", "nll_b", "kl_mean", "kl_max", "same_top"} <= set(inst.columns)
    row = tokens[tokens["instance"] == 2]
    assert inst["kl_mean"].iloc[2] == pytest.approx(row["kl"].mean())
    # Unpadded, row 2 scores the same: positions count from its first real token.
    k = int(mask[2].sum())
    single = {"input_ids": ids[2:3, 10 - k :], "attention_mask": mask[2:3, 10 - k :]}
    with torch.no_grad():
        z = reg.model("a")(**single).logits[0, :-1].double()
    nll = torch.nn.functional.cross_entropy(z, single["input_ids"][0, 1:], reduction="mean")
    assert row["nll_a"].mean() == pytest.approx(float(nll), rel=1e-5)
    summary = reg.compare_many("a", adversarial=False, progress=False)
    assert summary.loc["b", "mean_kl"] == pytest.approx(tokens["kl"].mean(), rel=1e-6)


def test_store_reopen_and_an_executor_give_the_local_results(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    enc = batch(n=12, t=10, seed=7)
    local = cnc.ModelRegistry(store=tmp_path / "s")
    local.set_data(enc, task="causal_lm", batch_size=4)
    local.add("a", tiny_llama(0))
    local.evaluate(progress=False)
    # Reopened: the metrics and the token arrays come back without the model.
    again = cnc.ModelRegistry(store=tmp_path / "s")
    assert again.task.name == "causal_lm"
    for column in ("perplexity", "nll", "token_accuracy", "tokens"):
        assert again.metrics().loc["a", column] == local.metrics().loc["a", column]
    np.testing.assert_array_equal(again.result("a")["token_nll"], local.result("a")["token_nll"])
    # Shards on an executor merge into the same arrays as the local run.
    fanned = cnc.ModelRegistry()
    fanned.set_data(enc, task="causal_lm", batch_size=4)
    fanned.add("a", tiny_llama(0))
    with ThreadPoolExecutor(2) as pool:
        fanned.evaluate(executor=pool, shard_rows=4, progress=False)
    for key in ("token_nll", "token_top", "token_correct", "token_scored", "embeddings"):
        np.testing.assert_allclose(
            fanned.result("a")[key], local.result("a")[key], rtol=1e-5, atol=1e-6
        )
    assert fanned.metrics().loc["a", "perplexity"] == pytest.approx(
        local.metrics().loc["a", "perplexity"], rel=1e-6
    )


def test_adversarial_overlap_flips_the_top_token_at_the_last_scored_position():
    reg = cnc.ModelRegistry()
    reg.set_data(batch(), task="causal_lm", batch_size=4)
    reg.add("a", tiny_llama(0))
    reg.add("b", tiny_llama(3))
    reg.compress("a", "quantize_dynamic", name="int8")
    reg.evaluate(progress=False)
    budget = {"steps": 3, "max_instances": 64}
    check_attack_contract(reg, "a", "b", "int8", **budget)
    # The success test, recomputed: the model run on its word embeddings plus the crafted
    # delta (inputs_embeds), top-1 at each sequence's last scored position against clean.
    model = reg.model("a")
    result = crafted_on(reg, "a", **budget)
    flipped = []
    for (chunk, _), (module, delta) in zip(batches(reg), result.crafted, strict=True):
        assert module == "model.embed_tokens"
        ids, mask = chunk["input_ids"], chunk["attention_mask"]
        emb = model.get_input_embeddings()(ids)
        assert delta.abs().max() <= 0.5 * emb.abs().mean() + 1e-7  # eps 0.5, relative
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            clean = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            adv = model(
                inputs_embeds=embedded(model, ids, delta),
                attention_mask=mask,
                position_ids=positions,
            ).logits
        for i, row in enumerate(scored_mask(mask)):
            scored = torch.nonzero(row).flatten()
            if len(scored) == 0:  # a one-token text predicts nothing: never flipped
                flipped.append(False)
                continue
            t = int(scored[-1])
            flipped.append(bool(clean[i, t].argmax() != adv[i, t].argmax()))
    np.testing.assert_array_equal(result.flipped, flipped)
    assert 0 < sum(flipped) < len(flipped)
    row = reg.compare_many("a", ["b"], progress=False).loc["b"]
    assert row["adversarial_overlap"] == reg.compare("a", "b").adversarial_overlap()
    assert row["adversarial_attack"] == "pgd-linf" and row["adversarial_source_b"] == "direct"
