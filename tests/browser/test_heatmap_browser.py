"""The layers view (ActivationHeatmap) on MiniLM in a real JupyterLab, driven by Chromium.

MiniLM on 64 tweets of 24 tokens (two batches) against a lightly pruned, an int8 and a
per-tensor pruned copy with its LayerNorms pruned too. Screenshots in light and dark
theme go to $CNC_SCREENSHOTS (or a temp dir).
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from .lab import cell_errors, kernel_eval, open_and_run, settle, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    """
import json
import numpy as np
import cnc_widgets as cnc
from cnc_widgets import examples

encoder, tokenizer = examples.load_minilm()
data = examples.tweets(n_train=120, n_test=64, max_length=24, tokenizer=tokenizer)
model = examples.train_text_classifier(data, encoder, epochs=30)
reg = cnc.ModelRegistry()
reg.set_data(data.test_inputs, data.test_labels, classes=data.classes,
             instances=data.test_instances, batch_size=32)
reg.add("fp32", model)
reg.compress("fp32", "prune", amount=0.2, scope="tensor", name="pruned")
reg.compress("fp32", "quantize_dynamic", name="int8")
reg.compress("fp32", "prune", amount=0.5, scope="tensor", include_norms=True, name="pruned_ln")
reg.evaluate(progress=False)
""",
    """
heat = cnc.ActivationHeatmap(reg, "fp32", ["pruned", "int8", "pruned_ln"])
heat
""",
    "graph = cnc.show_provenance(reg)\ngraph",
    "follow = cnc.ActivationHeatmap(reg)\nfollow",
]

PINNED = ".cnc-heatmap >> nth=0"


@pytest.fixture(scope="module")
def page(lab, browser):
    write_notebook(lab["root"] / "heatmap.ipynb", CELLS)
    page = browser.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    open_and_run(page, lab, "heatmap.ipynb", timeout_ms=600_000)
    page.wait_for_selector(".cnc-heatmap [data-layer]", timeout=300_000)
    yield page
    page.close()


def _pinned(page):
    return page.locator(".cnc-heatmap").first


def test_rows_are_encoder_blocks_and_columns_models(page):
    # Warnings on stderr (a library's deprecation notice) are not failures; tracebacks are.
    assert [e for e in cell_errors(page) if "Traceback" in e or "Error" in e] == []
    view = _pinned(page)
    layers = view.locator("[data-layer]").evaluate_all(
        "els => els.map(e => e.getAttribute('data-layer'))"
    )
    blocks = [f"encoder.encoder.layer.{i}" for i in range(6)]
    assert all(b in layers for b in blocks), layers
    # The tree opens at the blocks, not at their hundred leaves.
    assert not any(name.startswith("encoder.encoder.layer.0.") for name in layers)
    assert len(layers) < 40
    headers = view.locator(".cnc-hm-head [data-model]").evaluate_all(
        "els => els.map(e => e.getAttribute('data-model'))"
    )
    assert headers == ["pruned", "int8", "pruned_ln"]


def test_modes_switch_and_legends_change(page):
    view = _pinned(page)
    seen = {}
    for mode in ["weight_change", "activation_change", "cka", "sparsity"]:
        view.locator(f"[data-mode='{mode}']").click()
        page.wait_for_function(
            """(mode) => document.querySelector(`.cnc-heatmap [data-mode='${mode}']`)
                 .getAttribute('aria-pressed') === 'true'""",
            arg=mode,
        )
        legend = view.locator(".cnc-hm-legend").inner_text()
        block = view.locator("[data-layer='encoder.encoder.layer.2'] [data-cell-model='pruned']")
        seen[mode] = (legend, block.get_attribute("data-value"))
    assert "1 = same representation" in seen["cka"][0]
    assert "weight change" in seen["weight_change"][0]
    assert "zero only in the compressed model" in seen["sparsity"][0]
    assert kernel_eval(page, "heat.mode") == "'sparsity'"
    # A block's CKA cell is the parameter-weighted mean of its modules' CKA.
    cka = float(seen["cka"][1])
    expected = float(
        kernel_eval(
            page,
            "float(np.average(t.loc[m, 'cka'], weights=t.loc[m, 'params']))",
            code=(
                "t = reg.compare('fp32', 'pruned').layers\n"
                "m = [i for i in t.index if i.startswith('encoder.encoder.layer.2.')\n"
                "     and t.loc[i, 'row_type'] == 'parameters']"
            ),
        )
    )
    assert cka == pytest.approx(expected, rel=1e-4)
    sparsity = [float(v) for v in seen["sparsity"][1].split(",")]
    assert sparsity[2] == pytest.approx(0.2, abs=0.02)  # zero only in the pruned model


def test_layernorm_rows_stand_out_in_sparsity(page):
    payload = json.loads(
        ast.literal_eval(
            kernel_eval(
                page,
                "json.dumps(out)",
                code=(
                    "lay = heat.layers\n"
                    "out = {}\n"
                    "for name in ['pruned', 'pruned_ln']:\n"
                    "    e = lay['by_model'][name]\n"
                    "    z = np.frombuffer(e['values']['zero_b_only']['data'], dtype='<f4')\n"
                    "    out[name] = {r: float(v) for r, v, k in zip(lay['rows'], z, lay['kind'])\n"
                    "                 if k == 'LayerNorm'}\n"
                ),
            )
        )
    )
    assert len(payload["pruned_ln"]) == 13  # embeddings + two per block
    # prune zeroes weights, not biases: half of each LayerNorm weight = 1/4 of its elements
    assert all(v == pytest.approx(0.25, abs=0.01) for v in payload["pruned_ln"].values())
    assert all(v == 0.0 for v in payload["pruned"].values())
    view = _pinned(page)
    view.locator("[data-mode='sparsity']").click()
    view.locator("[data-layer='encoder.encoder.layer.0']").locator(".cnc-hm-caret").click()
    view.locator("[data-layer='encoder.encoder.layer.0.output']").locator(".cnc-hm-caret").click()
    ln = view.locator("[data-layer='encoder.encoder.layer.0.output.LayerNorm']")
    ln.wait_for()
    plain = ln.locator("[data-cell-model='pruned']").get_attribute("data-value")
    with_ln = ln.locator("[data-cell-model='pruned_ln']").get_attribute("data-value")
    assert float(plain.split(",")[2]) == 0.0
    assert float(with_ln.split(",")[2]) == pytest.approx(0.25, abs=0.01)  # weights, not biases
    _shot(page, view, "heatmap_sparsity_layernorm.png")


def test_module_detail_shows_two_histograms(page):
    view = _pinned(page)
    view.locator(
        "[data-layer='encoder.encoder.layer.0.output.LayerNorm'] [data-cell-model='pruned_ln']"
    ).click()
    chart = view.locator(".cnc-hm-chart svg")
    chart.first.wait_for()
    text = view.locator(".cnc-hm-side").inner_text()
    assert "encoder.encoder.layer.0.output.LayerNorm" in text
    assert "pruned_ln compared with fp32" in text
    titles = view.locator(".cnc-hm-chart").inner_text()
    assert "weights of encoder.encoder.layer.0.output.LayerNorm" in titles
    assert "activations of encoder.encoder.layer.0.output.LayerNorm" in titles
    # Two overlaid models in each of the two panels: bars of both colours.
    fills = set(
        view.locator(".cnc-hm-chart path[fill]").evaluate_all(
            "els => els.map(e => e.getAttribute('fill').toLowerCase())"
        )
    )
    assert {"#0072b2", "#d55e00"} <= fills
    _shot(page, view, "heatmap_detail.png")


def test_cka_tab_matrix_diagonal(page):
    view = _pinned(page)
    view.locator("[data-tab='cka']").click()
    view.locator("[data-cka-model='pruned']").click()
    cells = view.locator(".cnc-hm-matrix rect[data-a]")
    cells.first.wait_for()
    values = cells.evaluate_all(
        "els => els.map(e => [e.getAttribute('data-a'), e.getAttribute('data-b'),"
        " parseFloat(e.getAttribute('data-value'))])"
    )
    diagonal = [v for a, b, v in values if a == b]
    assert len(diagonal) == 7  # embeddings + six blocks
    assert min(diagonal) > 0.9, diagonal
    off = [v for a, b, v in values if a != b]
    assert max(diagonal) >= max(off) - 1e-6 or sum(diagonal) / 7 > sum(off) / len(off)
    # A click on a cell highlights both modules in the tree.
    view.locator(
        ".cnc-hm-matrix rect[data-a='encoder.encoder.layer.1'][data-b='encoder.encoder.layer.4']"
    ).click()
    view.locator("[data-layer='encoder.encoder.layer.1'].cnc-hl-a").wait_for()
    view.locator("[data-layer='encoder.encoder.layer.4'].cnc-hl-b").wait_for()
    cell = view.locator(".cnc-hm-matrix rect[data-a='encoder.encoder.layer.2']").first
    cell.hover()
    tip = view.locator(".cnc-tooltip")
    tip.wait_for(state="visible")
    assert "CKA" in tip.inner_text() and "encoder.encoder.layer.2" in tip.inner_text()
    _shot(page, view, "heatmap_cka.png")


def test_selection_in_another_view_changes_columns(page):
    follow = page.locator(".cnc-heatmap").nth(1)
    assert "Select a reference" in follow.inner_text()
    graph = page.locator(".cnc-provenance")
    graph.locator('[data-model="fp32"]').click()
    graph.locator('[data-model="int8"]').click(modifiers=["Shift"])
    follow.locator(".cnc-hm-head [data-model='int8']").wait_for()
    assert kernel_eval(page, "follow.models") == "['fp32', 'int8']"
    graph.locator('[data-model="pruned"]').click(modifiers=["Shift"])
    follow.locator(".cnc-hm-head [data-model='pruned']").wait_for()
    headers = follow.locator(".cnc-hm-head [data-model]").evaluate_all(
        "els => els.map(e => e.getAttribute('data-model'))"
    )
    assert headers == ["int8", "pruned"]
    selected = follow.locator(".cnc-hm-head [data-model][aria-selected='true']").count()
    assert selected == 2


def test_dark_theme_screenshot(page):
    view = _pinned(page)
    view.locator("[data-mode='cka']").click()
    view.locator("[data-tab='module']").click()
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme',"
        " {theme: 'JupyterLab Dark'})"
    )
    page.wait_for_function("() => document.body.getAttribute('data-jp-theme-light') === 'false'")
    settle(page)
    background = view.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background != "rgb(255, 255, 255)"
    _shot(page, view, "heatmap_cka_mode_dark.png")
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme',"
        " {theme: 'JupyterLab Light'})"
    )


def _shot(page, view, name: str) -> None:
    out = Path(os.environ.get("CNC_SCREENSHOTS", "/tmp/cnc-screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    view.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    view.screenshot(path=str(out / name))
    assert (out / name).stat().st_size > 5_000
