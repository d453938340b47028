"""The generation task end to end: a tiny Llama trained in seconds to answer cloze questions,
its greedy answers scored through the registry against model.generate and the SQuAD scores
computed directly; comparison columns against direct computations; the store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnc_widgets as cnc
from cnc_widgets.evaluate.generation import generation_kl
from cnc_widgets.examples import cloze_questions
from cnc_widgets.metrics.squad import exact_match_scores, f1_scores, normalize_answer

from .attack_checks import (
    batches,
    check_attack_contract,
    crafted_on,
    embedded,
)
from .lm_builders import tiny_llama, word_tokenizer

PAD, EOS, MAX_NEW, BATCH = 0, 2, 8, 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Matrices this small gain nothing from intra-op threads, and on a shared machine their
    # synchronisation costs several times the work.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(one_thread):
    """(model, tokenizer, prompts, golds): a word-level tokenizer over the questions and a
    2-layer Llama that memorised most answers (40 steps: some answers stay wrong)."""
    qa = cloze_questions(limit=48, window=0)
    prompts = [f"{q} A:" for q in qa.question]
    words = sorted({w for p, a in zip(prompts, qa.answer, strict=True) for w in f"{p} {a}".split()})
    tok = word_tokenizer(words)
    full = tok(
        [f"{p} {a} [EOS]" for p, a in zip(prompts, qa.answer, strict=True)],
        padding=True,
        return_tensors="pt",
    )
    labels = full["input_ids"].masked_fill(full["attention_mask"] == 0, -100)
    for i, p in enumerate(prompts):
        labels[i, : len(tok(p)["input_ids"])] = -100  # learn the answers only
    model = tiny_llama(
        len(tok),
        hidden_size=64,
        intermediate_size=128,
        max_position_embeddings=128,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=None,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        idx = torch.randperm(len(prompts))[:16]
        loss = model(
            input_ids=full["input_ids"][idx],
            attention_mask=full["attention_mask"][idx],
            labels=labels[idx],
        ).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    tok.padding_side = "left"
    golds = [[a] for a in qa.answer]
    golds[3] = [qa.answer[3], "five hundred"]  # several golds: the max counts
    return model.eval(), tok, prompts, golds


def encode(tok, prompts):
    return dict(tok(prompts, padding=True, return_tensors="pt"))


def generate(model, enc, tok):
    """model.generate(do_sample=False) batch by batch, as evaluation batches: (tokens, texts)."""
    tokens, texts = [], []
    for s in range(0, len(enc["input_ids"]), BATCH):
        ids, mask = enc["input_ids"][s : s + BATCH], enc["attention_mask"][s : s + BATCH]
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=MAX_NEW,
                eos_token_id=EOS,
                pad_token_id=PAD,
            )
        for row in out[:, ids.shape[1] :].tolist():
            row = row[: next((t + 1 for t, x in enumerate(row) if x == EOS), len(row))]
            tokens.append(row)
            texts.append(tok.decode([x for x in row if x != EOS], skip_special_tokens=True))
    return tokens, texts


def registry(setup, store=None):
    _, tok, prompts, golds = setup
    reg = cnc.ModelRegistry(store=store)
    reg.set_data(
        encode(tok, prompts),
        task="generation",
        tokenizer=tok,
        references=golds,
        instances=prompts,
        max_new_tokens=MAX_NEW,
        batch_size=BATCH,
        prompt_format="{q} A:",
    )
    return reg


@pytest.fixture(scope="module")
def evaluated(setup):
    model = setup[0]
    reg = registry(setup)
    reg.add("base", model)
    reg.compress("base", "prune", name="pruned", amount=0.4)
    reg.evaluate(progress=False)
    return reg


def test_answers_and_scores_equal_generate_and_squad(setup, evaluated):
    model, tok, prompts, golds = setup
    tokens, texts = generate(model, encode(tok, prompts), tok)
    result = evaluated.result("base")
    lengths = result["gen_length"]
    assert [list(r[:n]) for r, n in zip(result["gen_tokens"], lengths, strict=True)] == tokens
    assert (result["gen_tokens"][np.arange(MAX_NEW) >= result["gen_length"][:, None]] == -1).all()
    assert list(result["answers"]) == texts
    row = evaluated.metrics().loc["base"]
    em, f1 = exact_match_scores(texts, golds), f1_scores(texts, golds)
    assert 0.2 < em.mean() < 1.0  # a mix of right and wrong answers: the test can tell
    assert row["exact_match"] == pytest.approx(em.mean())
    assert row["f1"] == pytest.approx(f1.mean())
    assert row["answered"] == pytest.approx(np.mean([bool(normalize_answer(t)) for t in texts]))
    assert row["answer_tokens"] == pytest.approx(np.mean([len(t) for t in tokens]))
    assert "accuracy" not in evaluated.metrics().columns
    assert evaluated.task.default_axes()["y"] == "f1"
    assert evaluated.task.default_axes()["y_better"] == "higher"


def test_embedding_and_statistics_come_from_the_prompt_pass(setup, evaluated):
    model, tok, prompts, _ = setup
    enc = encode(tok, prompts)
    seen = []
    handle = model.lm_head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(**enc)
    finally:
        handle.remove()
    mask = enc["attention_mask"][..., None].float()
    pooled = (seen[0] * mask).sum(1) / mask.sum(1)
    result = evaluated.result("base")
    np.testing.assert_allclose(result["embeddings"], pooled.numpy(), rtol=1e-4, atol=1e-5)
    # One pass per prompt: the head's outputs counted once per prompt token, no decoding step.
    modules = list(result["modules"])
    n, width = enc["input_ids"].shape
    assert result["act_count"][modules.index("lm_head")] == n * width * model.config.vocab_size
    assert result["act_count"][modules.index("model.norm")] == n * width * 64


def test_only_evaluations_hooks_are_silenced(setup):
    model, prompts = setup[0], setup[2]
    calls = []
    handle = model.model.norm.register_forward_hook(lambda *_: calls.append(1))
    try:
        reg = registry(setup)
        reg.add("base", model)
        reg.evaluate(progress=False)
    finally:
        handle.remove()
    lengths = reg.result("base")["gen_length"]
    # the user's hook saw every decoding step of every batch (and the efficiency passes)
    steps = sum(int(lengths[s : s + BATCH].max()) for s in range(0, len(prompts), BATCH))
    assert len(calls) >= steps


def test_comparison_equals_direct_computations(setup, evaluated):
    model, tok, prompts, golds = setup
    enc = encode(tok, prompts)
    pruned = evaluated.model("pruned")
    tokens_a, out_a = generate(model, enc, tok)
    _, out_b = generate(pruned, enc, tok)
    cmp = evaluated.compare("base", "pruned")
    table = cmp.instances
    assert list(table["output_a"]) == out_a and list(table["output_b"]) == out_b
    np.testing.assert_array_equal(table["em_a"], exact_match_scores(out_a, golds))
    np.testing.assert_array_equal(table["f1_b"], f1_scores(out_b, golds))
    pairs = zip(out_a, out_b, strict=True)
    same = np.array([normalize_answer(a) == normalize_answer(b) for a, b in pairs])
    np.testing.assert_array_equal(table["same_output"], same)
    assert 0 < same.mean() < 1  # pruning changed some answers, not all
    assert cmp.agreement == pytest.approx(same.mean())
    ea, eb = exact_match_scores(out_a, golds) == 0, exact_match_scores(out_b, golds) == 0
    assert cmp.error_jaccard == pytest.approx((ea & eb).sum() / (ea | eb).sum())
    kl = generation_kl(
        model, pruned, enc["input_ids"], enc["attention_mask"], tokens_a, batch_size=BATCH
    )
    np.testing.assert_allclose(table["kl_mean"], [k.mean() for k in kl], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(table["kl_max"], [k.max() for k in kl], rtol=1e-6, atol=1e-9)
    assert list(table["instance"]) == prompts
    assert table["reference"].iloc[3] == " | ".join(golds[3])
    row = evaluated.compare_many("base", ["pruned"], adversarial=False, progress=False)
    row = row.loc["pruned"]
    assert row["agreement"] == pytest.approx(same.mean())
    assert row["f1_a"] == pytest.approx(f1_scores(out_a, golds).mean())
    assert row["f1_change"] == pytest.approx(
        f1_scores(out_b, golds).mean() - f1_scores(out_a, golds).mean()
    )
    assert row["mean_kl"] == pytest.approx(np.mean([k.mean() for k in kl]))
    assert 0 <= row["knn_agreement@10"] <= 1 and 0 <= row["ood_agreement"] <= 1


def test_store_gives_results_back(setup, tmp_path):
    model = setup[0]
    reg = registry(setup, store=tmp_path / "s")
    reg.add("base", model)
    reg.compress("base", "prune", name="pruned", amount=0.4)
    reg.evaluate(progress=False)
    before = reg.compare("base", "pruned").instances
    again = cnc.ModelRegistry(store=tmp_path / "s")  # no models, no tokenizer
    assert again.task.name == "generation"
    np.testing.assert_allclose(
        again.metrics().loc[["base", "pruned"], ["exact_match", "f1"]].to_numpy(dtype=float),
        reg.metrics().loc[["base", "pruned"], ["exact_match", "f1"]].to_numpy(dtype=float),
    )
    after = again.compare("base", "pruned").instances
    columns = ["output_a", "output_b", "em_a", "f1_b", "same_output"]
    assert after[columns].equals(before[columns])
    assert "kl_mean" not in after.columns  # the models are not in this session
    # the data's key holds max_new_tokens, the stop tokens and the prompt format
    other = registry(setup)
    key = other.data.fingerprint
    other.set_data(
        encode(setup[1], setup[2]),
        task="generation",
        tokenizer=setup[1],
        references=setup[3],
        max_new_tokens=MAX_NEW + 1,
        batch_size=BATCH,
        prompt_format="{q} A:",
    )
    assert other.data.fingerprint != key
    assert other.data.stored_options()["stop_token_ids"] == [EOS]


def test_wrong_inputs_get_clear_errors(setup):
    _, tok, prompts, golds = setup
    enc = encode(tok, prompts)
    reg = cnc.ModelRegistry()
    tok.padding_side = "right"
    try:
        right = encode(tok, prompts)
    finally:
        tok.padding_side = "left"
    with pytest.raises(ValueError, match=r"left-padded.*padding_side = 'left'"):
        reg.set_data(right, task="generation", tokenizer=tok, references=golds)
    with pytest.raises(ValueError, match="needs references="):
        reg.set_data(enc, task="generation", tokenizer=tok)
    with pytest.raises(ValueError, match="references has 3 entries but inputs has 48 rows"):
        reg.set_data(enc, task="generation", tokenizer=tok, references=golds[:3])
    with pytest.raises(ValueError, match="references\\[1\\] must be a string or a list"):
        reg.set_data(enc, task="generation", tokenizer=tok, references=[["a"], [1], *golds[2:]])
    with pytest.raises(ValueError, match="needs tokenizer="):
        reg.set_data(enc, task="generation", references=golds)
    with pytest.raises(ValueError, match="takes no labels"):
        reg.set_data(enc, np.zeros(48, int), task="generation", tokenizer=tok, references=golds)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        reg.set_data(enc, task="generation", tokenizer=tok, references=golds, max_new_tokens=0)
    with pytest.raises(ValueError, match="not \\['temperature'\\]"):
        reg.set_data(enc, task="generation", tokenizer=tok, references=golds, temperature=0.7)


def test_adversarial_overlap_flips_the_first_answer_token(setup):
    reg = registry(setup)
    reg.add("base", setup[0])
    reg.compress("base", "prune", name="pruned", amount=0.4)
    reg.compress("base", "quantize_dynamic", name="int8")
    reg.evaluate(progress=False)
    budget = {"steps": 3, "max_instances": 256}
    check_attack_contract(reg, "base", "pruned", "int8", **budget)
    # The success test, recomputed: the clean first token is evaluation's greedy answer's
    # (model.generate's); under attack, the prompt's word embeddings plus the crafted delta
    # (inputs_embeds) and the argmax at the prompt's last position.
    model, objective = reg.model("base"), reg.task.attack_objective()
    answers = reg.result("base")["gen_tokens"]
    result = crafted_on(reg, "base", **budget)
    flipped = []
    for s, ((chunk, _), (module, delta)) in zip(
        range(0, len(answers), BATCH), zip(batches(reg), result.crafted, strict=True), strict=True
    ):
        assert module == "model.embed_tokens"
        ids, mask = chunk["input_ids"], chunk["attention_mask"]
        # What the attack ascends is the loss of the crafter's greedy answer: evaluation's.
        with torch.no_grad():
            own = objective.targets(model, chunk, torch.zeros(len(ids)))
        np.testing.assert_array_equal(own.numpy(), answers[s : s + BATCH])
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        with torch.no_grad():
            adv = model(
                inputs_embeds=embedded(model, ids, delta),
                attention_mask=mask,
                position_ids=positions,
            ).logits[:, -1].argmax(-1)
        flipped += list(adv.numpy() != answers[s : s + BATCH, 0])
    np.testing.assert_array_equal(result.flipped, flipped)
    assert 0 < sum(flipped) < len(flipped)
    row = reg.compare_many("base", ["pruned"], progress=False).loc["pruned"]
    assert row["adversarial_overlap"] == reg.compare("base", "pruned").adversarial_overlap()
