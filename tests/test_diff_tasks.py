"""PredictionDiff beyond classifiers: its payload for a language model (tiny trained Llama and
its int8 / pruned variants) equals cmp.instances, cmp.tokens and cmp.token_stats; for
generated and extracted answers it equals cmp.instances and the task's summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnc_widgets as cnc
from cnc_widgets.examples import cloze_questions, train_tiny_lm, train_tiny_qa, train_tokenizer
from cnc_widgets.widgets._diff_lm import substitutions
from cnc_widgets.widgets._wire import split_buffers, unpack

HOSTILE = "<script>alert(1)</script> and <img src=x onerror=alert(2)>"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lm(one_thread):
    texts = cnc.examples.news_texts()[:40]
    tok = train_tokenizer(texts, vocab_size=300)
    model, tok = train_tiny_lm(texts, tokenizer=tok, steps=15, hidden_size=32, length=32)
    windows = [t[:120] for t in texts[:11]] + [HOSTILE]
    enc = dict(tok(windows, padding=True, truncation=True, max_length=40, return_tensors="pt"))
    reg = cnc.ModelRegistry()
    reg.set_data(enc, task="causal_lm", tokenizer=tok, instances=windows, batch_size=4)
    reg.add("base", model)
    reg.compress("base", "quantize_dynamic", name="int8")
    reg.compress("base", "prune", name="pruned", amount=0.5)
    reg.evaluate(progress=False)
    return reg, tok


def test_lm_payload_equals_the_comparison(lm):
    reg, tok = lm
    diff = cnc.PredictionDiff(reg, a="base", b=["int8", "pruned"])
    assert diff.task == "causal_lm" and diff.status == ""
    assert diff.table == {} and diff.per_class == {}  # no classifier payload
    view = diff.task_view
    assert [m["name"] for m in view["models"]] == ["int8", "pruned"]
    for entry in view["models"]:
        cmp = reg.compare("base", entry["name"])
        inst = cmp.instances
        for column, packed in entry["columns"].items():
            np.testing.assert_allclose(
                unpack(packed), inst[column].to_numpy(np.float64), rtol=1e-6, atol=1e-7
            )
        assert {"kl_mean", "same_top", "nll_change"} <= set(entry["columns"])
        stats = cmp.token_stats
        assert entry["stats"] == pytest.approx({k: float(v) for k, v in stats.items()}, nan_ok=True)
        # The substitutions are NumPy counts of the token table's differing top-1 pairs.
        tokens = cmp.tokens
        moved = tokens[tokens.top_a != tokens.top_b]
        counts = moved.groupby(["top_a", "top_b"]).size()
        for text_a, text_b, count, id_a, id_b in entry["substitutions"]:
            assert counts[(id_a, id_b)] == count
            assert (text_a, text_b) == (tok.decode([id_a]), tok.decode([id_b]))
        got = [c for *_, c, _a, _b in entry["substitutions"]]
        assert got == sorted(counts.to_numpy().tolist(), reverse=True)[: len(got)]
    summary = diff.summary_table().table
    assert summary.loc["int8", "kl_mean"] == pytest.approx(
        reg.compare("base", "int8").token_stats["kl_mean"]
    )
    # int8 dynamic: its numbers depend on the batching, and the view says so.
    notes = view["models"][0]["notes"]
    assert len(notes) == 1 and "batch" in notes[0] and "4 windows" in notes[0]
    assert view["models"][1]["notes"] == []


def test_lm_token_rows_equal_cmp_tokens(lm):
    reg, tok = lm
    diff = cnc.PredictionDiff(reg, a="base", b=["int8", "pruned"])
    details = diff.details
    n = len(reg.data)
    assert details["rows"] == list(range(n))  # fewer than EMBED_SEQUENCES: all embedded
    vocab = dict(zip(unpack(details["vocab_ids"]).tolist(), details["vocab_texts"], strict=True))
    enc = reg.data.inputs
    for k, name in enumerate(["int8", "pruned"]):
        tokens = reg.compare("base", name).tokens
        part = details["models"][k]
        offsets = unpack(part["offsets"])
        for r in range(n):
            want = tokens[tokens.instance == r]
            s, e = offsets[r], offsets[r + 1]
            assert e - s == len(want)
            np.testing.assert_array_equal(unpack(part["position"])[s:e], want.position)
            np.testing.assert_array_equal(unpack(part["top_b"])[s:e], want.top_b)
            np.testing.assert_allclose(unpack(part["kl"])[s:e], want.kl, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(unpack(part["dp"])[s:e], want.dp, rtol=1e-6, atol=1e-9)
            texts = [vocab[t] for t in unpack(part["token"])[s:e]]
            assert texts == list(want.text)
            first = int(enc["input_ids"][r, int(enc["attention_mask"][r].argmax())])
            assert vocab[details["first"][r]] == tok.decode([first])
    # The browser asks for rows beyond the embedded ones: the same numbers, as a message
    # whose arrays travel as buffers.
    message, buffers = split_buffers({"type": "tokens", **diff_rows(diff, [n - 1, 0])})
    assert message["rows"] == [n - 1, 0] and len(buffers) == len(message["buffer_paths"])
    assert all(isinstance(b, bytes) for b in buffers)
    # The hostile text is the last row: its tokens decode back to it, never interpreted.
    last = [vocab[details["first"][n - 1]]]
    s, e = unpack(details["models"][1]["offsets"])[n - 1 : n + 1]
    last += [vocab[t] for t in unpack(details["models"][1]["token"])[s:e]]
    joined = "".join(last)  # cut at max_length tokens
    assert HOSTILE.startswith(joined) and "<script>alert(1)</script> and <img" in joined


def diff_rows(diff, rows):
    from cnc_widgets.widgets._diff_lm import token_rows

    return token_rows(diff.registry, [diff.reference, *diff.compared], rows)


def test_substitutions_count_pairs_with_ties_broken_by_ids():
    import pandas as pd

    table = pd.DataFrame({"top_a": [1, 1, 2, 2, 2, 3, 5], "top_b": [4, 4, 3, 3, 1, 3, 0]})
    got = substitutions(table, None)
    assert got == [
        ["#1", "#4", 2, 1, 4],
        ["#2", "#3", 2, 2, 3],
        ["#2", "#1", 1, 2, 1],
        ["#5", "#0", 1, 5, 0],
    ]


# -- answers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qa(one_thread):
    train, test = cloze_questions(limit=120).split(test_fraction=0.25, seed=0)
    model, tok = train_tiny_qa(train, epochs=1)
    contexts = list(test.context)
    contexts[0] = HOSTILE + " " + contexts[0]
    enc = tok(
        test.question,
        contexts,
        truncation="only_second",
        max_length=160,
        padding="longest",
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    offsets = enc.pop("offset_mapping")
    reg = cnc.ModelRegistry()
    reg.set_data(
        enc,
        task="extractive_qa",
        tokenizer=tok,
        references=[[a] for a in test.answer],
        instances=list(test.question),
        offsets=offsets,
        contexts=contexts,
        batch_size=16,
    )
    reg.add("base", model)
    # Another seed stands in for a compressed variant: answers that differ on some questions.
    reg.add("pruned", train_tiny_qa(train, epochs=1, seed=1)[0], parent="base", operation="prune")
    reg.evaluate(progress=False)
    return reg, contexts


def test_answers_payload_equals_the_comparison(qa):
    reg, contexts = qa
    diff = cnc.PredictionDiff(reg, a="base", b="pruned")
    assert diff.task == "extractive_qa"
    view = diff.task_view
    cmp = reg.compare("base", "pruned")
    inst = cmp.instances
    entry = view["models"][0]
    assert view["output_a"] == list(inst.output_a) and entry["output_b"] == list(inst.output_b)
    assert view["gold"] == list(inst.reference)
    for column, packed in entry["columns"].items():
        np.testing.assert_allclose(unpack(packed), inst[column], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(unpack(entry["same_output"]).astype(bool), inst.same_output)
    assert not inst.same_output.all()  # the pruned model answers some questions otherwise
    want = reg.task.summary(reg.result("base"), reg.result("pruned"), reg.data, inst)
    assert entry["summary"] == pytest.approx(want)
    assert entry["summary"]["agreement"] == pytest.approx(inst.same_output.mean())
    assert diff.summary_table().table.loc["pruned", "f1_b"] == pytest.approx(inst.f1_b.mean())
    # Spans: the characters under each model's span are its answer.
    details = diff.details
    for k, answers in enumerate([inst.output_a, inst.output_b]):
        for r, span in zip(details["rows"], details["spans"][k], strict=True):
            assert details["contexts"][r] == contexts[r]
            if span is None:
                assert answers.iloc[r] == ""
            else:
                assert contexts[r][span[0] : span[1]] == answers.iloc[r]


def test_generation_payload(one_thread):
    from .test_task_generation import MAX_NEW, encode

    qa_ = cloze_questions(limit=24, window=0)
    prompts = [f"{q} A:" for q in qa_.question]
    prompts[1] = HOSTILE + " " + prompts[1]
    model, tok = train_tiny_lm(
        prompts,
        tokenizer=train_tokenizer(prompts, vocab_size=300),
        steps=5,
        hidden_size=32,
        length=32,
    )
    tok.padding_side = "left"
    reg = cnc.ModelRegistry()
    reg.set_data(
        encode(tok, prompts),
        task="generation",
        tokenizer=tok,
        references=[[a] for a in qa_.answer],
        instances=prompts,
        max_new_tokens=MAX_NEW,
        batch_size=8,
    )
    reg.add("base", model)
    reg.compress("base", "prune", name="pruned", amount=0.5)
    reg.evaluate(progress=False)
    diff = cnc.PredictionDiff(reg, a="base", b="pruned")
    inst = reg.compare("base", "pruned").instances
    entry = diff.task_view["models"][0]
    assert diff.task == "generation"
    assert diff.task_view["output_a"] == list(inst.output_a)
    assert entry["output_b"] == list(inst.output_b)
    np.testing.assert_allclose(unpack(entry["columns"]["f1_change"]), inst.f1_change, atol=1e-7)
    assert diff.details["contexts"] is None  # the question (instance) is the whole prompt
    assert diff.previews["texts"][1] == prompts[1]
