"""The extractive QA task end to end: the tiny BERT QA model trained on cloze questions, its
answers through the registry against decode_spans and the SQuAD scores computed directly; a
pruned child compared; the no-answer threshold; the store; errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import cnc_widgets as cnc
from cnc_widgets.evaluate.spans import context_mask, decode_spans
from cnc_widgets.examples import cloze_questions, train_tiny_qa
from cnc_widgets.metrics.squad import exact_match_scores, f1_scores, normalize_answer
from cnc_widgets.tasks.extractive_qa import segment_context

from .attack_checks import (
    batches,
    check_attack_contract,
    crafted_on,
    embedded,
)

BATCH = 16


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
    train, test = cloze_questions(limit=240).split(test_fraction=0.25, seed=0)
    model, tok = train_tiny_qa(train, epochs=3)
    enc = tok(
        test.question,
        test.context,
        truncation="only_second",
        max_length=160,
        padding="longest",
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    offsets = enc.pop("offset_mapping")
    golds = [[a] for a in test.answer]
    golds[0] = [test.answer[0], "somewhere else"]  # several golds: the max counts
    return model, tok, test, enc, offsets, golds


def registry(setup, store=None, **options):
    _, tok, test, enc, offsets, golds = setup
    reg = cnc.ModelRegistry(store=store)
    reg.set_data(
        enc,
        task="extractive_qa",
        tokenizer=tok,
        references=golds,
        instances=test.question,
        offsets=offsets,
        contexts=test.context,
        batch_size=BATCH,
        **options,
    )
    return reg


def direct(model, setup, **options):
    """decode_spans over the model's logits, batch by batch as evaluation runs it."""
    _, _, test, enc, offsets, _ = setup
    starts, ends = [], []
    for s in range(0, len(test), BATCH):
        with torch.no_grad():
            out = model(**{k: v[s : s + BATCH] for k, v in enc.items()})
        starts.append(out.start_logits)
        ends.append(out.end_logits)
    return decode_spans(
        torch.cat(starts), torch.cat(ends), offsets, context_mask(enc), test.context, **options
    )


@pytest.fixture(scope="module")
def evaluated(setup):
    reg = registry(setup)
    reg.add("base", setup[0])
    reg.compress("base", "prune", name="pruned", amount=0.5)
    reg.evaluate(progress=False)
    return reg


def test_answers_and_scores_equal_decode_spans_and_squad(setup, evaluated):
    golds = setup[5]
    spans = direct(setup[0], setup)
    result = evaluated.result("base")
    np.testing.assert_array_equal(result["span_tokens"][:, 0], spans.start_token)
    np.testing.assert_array_equal(result["span_tokens"][:, 1], spans.end_token)
    np.testing.assert_allclose(result["span_logits"].astype(np.float64).sum(1), spans.score)
    assert "start_logits" not in result and "logits" not in result  # reduced per batch
    em, f1 = exact_match_scores(spans.text, golds), f1_scores(spans.text, golds)
    assert 0.05 < em.mean() < 1.0 and f1.mean() > em.mean()
    row = evaluated.metrics().loc["base"]
    assert row["exact_match"] == pytest.approx(em.mean())
    assert row["f1"] == pytest.approx(f1.mean())
    assert row["answered"] == 1.0  # no threshold: every question gets its best span
    assert evaluated.task.default_axes()["y"] == "f1"


def test_no_answer_threshold_follows_decode_spans(setup, evaluated):
    golds = setup[5]
    null = evaluated.result("base")["null_logits"].astype(np.float64).sum(1)
    best = evaluated.result("base")["span_logits"].astype(np.float64).sum(1)
    threshold = float(np.median(null - best))  # about half the questions go unanswered
    reg = registry(setup, no_answer_threshold=threshold)
    assert reg.data.fingerprint != evaluated.data.fingerprint
    reg.add("base", setup[0])
    reg.evaluate(progress=False)
    spans = direct(setup[0], setup, no_answer_threshold=threshold)
    assert 0 < sum(t == "" for t in spans.text) < len(spans.text)
    row = reg.metrics().loc["base"]
    assert row["f1"] == pytest.approx(f1_scores(spans.text, golds).mean())
    assert row["answered"] == pytest.approx(np.mean([t != "" for t in spans.text]))


def test_comparison_equals_direct_computations(setup, evaluated):
    golds = setup[5]
    out_a = direct(setup[0], setup).text
    out_b = direct(evaluated.model("pruned"), setup).text
    cmp = evaluated.compare("base", "pruned")
    table = cmp.instances
    assert list(table["output_a"]) == out_a and list(table["output_b"]) == out_b
    np.testing.assert_array_equal(table["em_b"], exact_match_scores(out_b, golds))
    np.testing.assert_array_equal(table["f1_a"], f1_scores(out_a, golds))
    pairs = zip(out_a, out_b, strict=True)
    same = np.array([normalize_answer(a) == normalize_answer(b) for a, b in pairs])
    np.testing.assert_array_equal(table["same_output"], same)
    assert 0 < same.mean() < 1
    assert cmp.agreement == pytest.approx(same.mean())
    ea, eb = exact_match_scores(out_a, golds) == 0, exact_match_scores(out_b, golds) == 0
    assert cmp.error_jaccard == pytest.approx((ea & eb).sum() / (ea | eb).sum())
    assert "kl_mean" not in table.columns
    assert list(table["instance"]) == setup[2].question
    row = evaluated.compare_many("base", ["pruned"], adversarial=False, progress=False)
    row = row.loc["pruned"]
    assert row["exact_match_b"] == pytest.approx(exact_match_scores(out_b, golds).mean())
    assert row["error_jaccard"] == pytest.approx(cmp.error_jaccard)
    assert 0 <= row["knn_agreement@10"] <= 1 and 0 <= row["ood_agreement"] <= 1


def test_store_gives_results_back(setup, evaluated, tmp_path):
    reg = registry(setup, store=tmp_path / "s")
    reg.add("base", setup[0])
    reg.evaluate(progress=False)
    again = cnc.ModelRegistry(store=tmp_path / "s")
    assert again.task.name == "extractive_qa"
    assert again.metrics().loc["base", "f1"] == pytest.approx(evaluated.metrics().loc["base", "f1"])
    assert list(again.task.answers(again.result("base"))) == direct(setup[0], setup).text


def test_context_tokens_from_separators():
    ids = torch.tensor([[101, 7, 8, 102, 9, 10, 102, 0], [0, 5, 2, 2, 6, 2, 0, 0]])
    mask = torch.tensor([[1] * 7 + [0], [1] * 6 + [0, 0]])
    assert segment_context(ids, mask, [101, 102, 0]).int().tolist()[0] == [0, 0, 0, 0, 1, 1, 0, 0]
    # RoBERTa: <s> q </s></s> c </s>
    assert segment_context(ids, mask, [0, 2]).int().tolist()[1] == [0, 0, 0, 0, 1, 0, 0, 0]
    assert segment_context(ids, mask, [0, 2], 0).int().tolist()[1] == [0, 1, 0, 0, 0, 0, 0, 0]


def test_wrong_inputs_get_clear_errors(setup):
    _, tok, test, enc, offsets, golds = setup
    reg = cnc.ModelRegistry()
    base = {
        "task": "extractive_qa",
        "tokenizer": tok,
        "references": golds,
        "offsets": offsets,
        "contexts": test.context,
    }
    with_offsets = {**enc, "offset_mapping": offsets}
    with pytest.raises(ValueError, match="pop it"):
        reg.set_data(with_offsets, **base)
    with pytest.raises(ValueError, match="needs offsets="):
        reg.set_data(enc, **{**base, "offsets": None})
    with pytest.raises(ValueError, match=r"offsets have 9 tokens per row but input_ids"):
        reg.set_data(enc, **{**base, "offsets": offsets[:, :9]})
    with pytest.raises(ValueError, match="needs contexts="):
        reg.set_data(enc, **{**base, "contexts": test.context[:-1]})
    with pytest.raises(ValueError, match="references has 1 entries"):
        reg.set_data(enc, **{**base, "references": golds[:1]})
    with pytest.raises(ValueError, match="needs references="):
        reg.set_data(enc, **{**base, "references": None})
    with pytest.raises(ValueError, match="differ from the tokenizer's sequence_ids"):
        reg.set_data(enc, **{**base, "separator_ids": [tok.cls_token_id]})
    wrong = context_mask(enc)
    wrong[:, -1] = ~wrong[:, -1]
    with pytest.raises(ValueError, match="differ from context_mask="):
        reg.set_data(dict(enc), **base, context_mask=wrong)
    reg.set_data(dict(enc), **base, context_mask=context_mask(enc))  # the right one passes


def test_adversarial_overlap_flips_the_models_own_best_span(setup):
    _, _, test, enc, offsets, _ = setup
    reg = registry(setup)
    reg.add("base", setup[0])
    reg.compress("base", "prune", name="pruned", amount=0.5)
    reg.compress("base", "quantize_dynamic", name="int8")
    reg.evaluate(progress=False)
    budget = {"steps": 3, "max_instances": 256}
    check_attack_contract(reg, "base", "pruned", "int8", **budget)
    # The success test, recomputed: decode_spans over the model's logits with the crafted
    # delta added to its word embeddings (inputs_embeds), against the clean best span. A
    # small eps: at the default (0.5) every span of this tiny model moves.
    model = reg.model("base")
    result = crafted_on(reg, "base", eps=0.05, **budget)
    ctx = context_mask(enc)
    flipped = []
    for s, ((chunk, _), (module, delta)) in zip(
        range(0, len(test), BATCH), zip(batches(reg), result.crafted, strict=True), strict=True
    ):
        assert module == "bert.embeddings.word_embeddings"
        rest = {k: v for k, v in chunk.items() if k != "input_ids"}
        with torch.no_grad():
            clean = model(**chunk)
            adv = model(inputs_embeds=embedded(model, chunk["input_ids"], delta), **rest)
        rows = slice(s, s + BATCH)
        spans = [
            decode_spans(out.start_logits, out.end_logits, offsets[rows], ctx[rows],
                         test.context[rows])
            for out in (clean, adv)
        ]
        flipped += list(
            (spans[0].start_token != spans[1].start_token)
            | (spans[0].end_token != spans[1].end_token)
        )
    np.testing.assert_array_equal(result.flipped, flipped)
    assert 0 < sum(flipped) < len(flipped)
    row = reg.compare_many("base", ["pruned"], progress=False).loc["pruned"]
    assert row["adversarial_overlap"] == reg.compare("base", "pruned").adversarial_overlap()
    # An attack that flips everything it may, for both models, is said to say nothing.
    cmp = reg.compare("base", "pruned")
    with pytest.warns(UserWarning, match="flipped every instance it could"):
        saturated = cmp.adversarial_details(eps=2.0, **budget)
    assert saturated["flipped_a"] == saturated["eligible_a"] > 0
    assert saturated["flipped_b"] == saturated["eligible_b"] > 0 and saturated["value"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graded = cmp.adversarial_details(eps=0.05, **budget)
    assert graded["flipped_a"] < graded["eligible_a"]
