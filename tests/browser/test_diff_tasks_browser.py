"""The prediction diff of language models and of extractive QA in a real JupyterLab.

One notebook: a tiny trained Llama and its int8 / pruned variants on news windows, one of them
hostile markup, shown as a token diff; a tiny BERT QA model and a second seed on cloze
questions (one context hostile) shown as an answer diff.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from .lab import cell_errors, kernel_eval, open_and_run, settle, write_notebook

pytestmark = pytest.mark.browser

PAIR = "reg.compare('base', 'pruned')"
HOSTILE = "<script>alert(1)</script> and <img src=x onerror=window.__xss=1>"

CELLS = [
    f"""
import torch
import cnc_widgets as cnc
from cnc_widgets import examples

torch.set_num_threads(1)
HOSTILE = {HOSTILE!r}
texts = examples.news_texts()[:40]
tok = examples.train_tokenizer(texts, vocab_size=300)
lm, tok = examples.train_tiny_lm(texts, tokenizer=tok, steps=15, hidden_size=32, length=32)
windows = [t[:120] for t in texts[:7]] + [HOSTILE]
enc = dict(tok(windows, padding=True, truncation=True, max_length=48, return_tensors="pt"))
reg = cnc.ModelRegistry()
reg.set_data(enc, task="causal_lm", tokenizer=tok, instances=windows, batch_size=4)
reg.add("base", lm)
reg.compress("base", "quantize_dynamic", name="int8")
reg.compress("base", "prune", name="pruned", amount=0.5)
reg.evaluate(progress=False)
lm_diff = cnc.PredictionDiff(reg, a="base", b=["pruned", "int8"])
lm_diff
""",
    f"""
train, test = examples.cloze_questions(limit=120).split(test_fraction=0.25, seed=0)
qa_model, qa_tok = examples.train_tiny_qa(train, epochs=1)
contexts = list(test.context)
contexts[0] = {HOSTILE!r} + " " + contexts[0]
qenc = qa_tok(test.question, contexts, truncation="only_second", max_length=160,
              padding="longest", return_offsets_mapping=True, return_tensors="pt")
offsets = qenc.pop("offset_mapping")
qa = cnc.ModelRegistry()
qa.set_data(qenc, task="extractive_qa", tokenizer=qa_tok, references=[[a] for a in test.answer],
            instances=list(test.question), offsets=offsets, contexts=contexts, batch_size=16)
qa.add("base", qa_model)
qa.add("other", examples.train_tiny_qa(train, epochs=1, seed=1)[0], parent="base",
       operation="prune")
qa.evaluate(progress=False)
qa_diff = cnc.PredictionDiff(qa, a="base", b="other")
qa_diff
""",
]


@pytest.fixture(scope="module")
def page(lab, browser):
    write_notebook(lab["root"] / "diff_tasks.ipynb", CELLS)
    page = browser.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.errors_seen = []  # uncaught errors of the page: a view that failed to render
    page.on("pageerror", lambda e: page.errors_seen.append(str(e)))
    open_and_run(page, lab, "diff_tasks.ipynb")
    page.wait_for_selector(".cnc-diff .cnc-token")
    page.wait_for_selector(".cnc-diff .cnc-question")
    yield page
    page.close()


def shots() -> Path:
    out = Path(os.environ.get("CNC_SCREENSHOTS", "/tmp/cnc-screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def lm_view(page):
    return page.locator(".cnc-diff").first


def qa_view(page):
    return page.locator(".cnc-diff").last


def test_lm_diff_tints_every_scored_token_and_keeps_markup_text(page):
    # torchao's import warnings reach stderr; a failing cell shows a traceback.
    assert not [e for e in cell_errors(page) if "Traceback" in e or "Error:" in e]
    assert page.errors_seen == []
    view = lm_view(page)
    n = int(kernel_eval(page, "len(reg.data)"))
    assert view.locator("tr[data-instance]").count() == n
    # The statistics are the comparison's, as printed.
    kl = float(kernel_eval(page, f"float({PAIR}.token_stats['kl_mean'])"))
    cell = view.locator("tr[data-measure='kl_mean'] td").first.inner_text()
    assert float(cell.split(" ")[0]) == pytest.approx(kl, rel=5e-3)
    # The int8 dynamic model's numbers depend on the batching: the view says so.
    assert "batches of 4 windows" in view.locator(".cnc-notes").inner_text()
    # Click the hostile sequence: one token element per scored token of that sequence.
    last = str(n - 1)
    view.locator(f"tr[data-instance='{last}']").click()
    page.wait_for_function(
        "() => document.querySelector('.cnc-diff .cnc-sequence h4').textContent"
        ".startsWith('Sequence 7:')"
    )
    scored = int(kernel_eval(page, f"int(({PAIR}.tokens.instance == {last}).sum())"))
    tokens = view.locator(".cnc-sequence .cnc-token")
    assert tokens.count() == scored
    text = view.locator(".cnc-sequence .cnc-tokens").inner_text()
    assert "<script>alert(1)</script>" in text and "<img src=x onerror" in text
    assert view.locator(".cnc-tokens script, .cnc-tokens img").count() == 0
    assert page.locator(".jp-OutputArea-output script:not([type]), .cnc-diff img").count() == 0
    # Tints follow the KL: the token with the largest KL has the strongest background.
    kls = kernel_eval(page, f"[float(x) for x in {PAIR}.tokens.query('instance == {last}').kl]")
    kls = ast.literal_eval(kls)
    alphas = tokens.evaluate_all(
        "els => els.map(e => parseFloat(getComputedStyle(e).backgroundColor.split(',')[3]))"
    )
    assert alphas.index(max(alphas)) == kls.index(max(kls))
    # Hover: both models' top-1 tokens.
    tokens.nth(2).hover()
    tip = view.locator(".cnc-tooltip")
    assert "top-1, base" in tip.inner_text() and "top-1, pruned" in tip.inner_text()
    # Switch the tint to dp: a diverging legend.
    view.locator("select[aria-label='Tint tokens by']").select_option("dp")
    assert "pts" in view.locator(".cnc-tint-legend").inner_text()
    assert page.evaluate("() => window.__xss") is None and page.dialogs == []


def test_lm_sequences_sort_by_kl(page):
    view = lm_view(page)
    view.locator("button[data-sort='kl_mean']").click()  # second click: ascending
    ids = view.locator("tr[data-instance]").evaluate_all(
        "els => els.map(e => e.getAttribute('data-instance'))"
    )
    want = kernel_eval(page, f"list({PAIR}.instances.kl_mean.sort_values(kind='stable').index)")
    assert ids == ast.literal_eval(want)


def test_qa_diff_shows_both_answers_and_spans(page):
    view = qa_view(page)
    n = int(kernel_eval(page, "len(qa.data)"))
    assert view.locator("tr[data-instance]").count() == n
    table = "qa.compare('base', 'other').instances"
    row = kernel_eval(page, f"int((~{table}.same_output).to_numpy().argmax())")
    a = ast.literal_eval(kernel_eval(page, f"{table}.output_a.iloc[{row}]"))
    b = ast.literal_eval(kernel_eval(page, f"{table}.output_b.iloc[{row}]"))
    cells = view.locator(f"tr[data-instance='{row}'] td")
    assert cells.nth(3).inner_text() == a and cells.nth(4).inner_text() == b
    assert view.locator(f"tr[data-instance='{row}'] .cnc-word-diff").count() > 0
    # The hostile context (question 0): spans marked, markup kept as text.
    view.locator("tr[data-instance='0']").click()
    context = view.locator(".cnc-question .cnc-context")
    context.wait_for()
    assert context.inner_text().startswith("<script>alert(1)</script>")
    assert view.locator(".cnc-question script, .cnc-question img").count() == 0
    spans = ast.literal_eval(kernel_eval(page, "[s[0] for s in qa_diff.details['spans']]"))
    marked = view.locator(".cnc-question [data-span]").count()
    assert marked >= sum(s is not None for s in spans)
    assert page.evaluate("() => window.__xss") is None and page.dialogs == []


@pytest.mark.parametrize("theme", ["JupyterLab Light", "JupyterLab Dark"])
def test_screenshots(page, theme):
    page.evaluate(
        "t => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme
    )
    page.wait_for_function("t => document.body.dataset.jpThemeName === t", arg=theme)
    settle(page)
    tag = "dark" if "Dark" in theme else "light"
    lm_view(page).locator(".cnc-sequence .cnc-token").nth(3).hover()
    lm_view(page).screenshot(path=str(shots() / f"diff-lm-{tag}.png"))
    qa_view(page).screenshot(path=str(shots() / f"diff-qa-{tag}.png"))
    # The text of the tinted tokens stays the theme's text colour (readable on the tints).
    colour = (
        lm_view(page)
        .locator(".cnc-sequence .cnc-token")
        .first.evaluate("e => getComputedStyle(e).color")
    )
    text = lm_view(page).evaluate("e => getComputedStyle(e).color")
    assert colour == text
