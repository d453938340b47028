"""The layers view's damage mode in a real JupyterLab, driven by Chromium (issue 26, Views).

A digits CNN and a copy pruned 30% with one convolution (features.3) damaged on purpose, in
the dashboard. Picking the damage mode runs ``cmp.sensitivity()`` in the kernel; "suggest
restores" makes restore children that the provenance graph and the scatter show at once.
Screenshots in light and dark theme go to $CNC_SCREENSHOTS (or a temp dir).
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from .lab import cell_errors, kernel_eval, open_and_run, settle, wait_kernel, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    """
import json
import torch
import cnc_widgets as cnc
from cnc_widgets import examples
from cnc_widgets.compress import apply_operation

data = examples.digits()
cnn = examples.train_digits_cnn(data, epochs=2)

def damage(model, module, scale):
    # Pruned 30% everywhere, and one convolution noised on purpose.
    model = apply_operation(model, "prune", amount=0.3)
    torch.manual_seed(0)
    weight = model.get_submodule(module).weight
    with torch.no_grad():
        weight.add_(torch.randn_like(weight) * weight.std() * scale)
    return model

reg = cnc.ModelRegistry()
reg.set_data(data.test_inputs, data.test_labels, classes=data.classes, batch_size=128)
reg.add("base", cnn)
reg.compress("base", damage, module="features.3", scale=3.0, name="damaged")
reg.evaluate(progress=False)
reg.selected = ["base", "damaged"]
""",
    "board = cnc.dashboard(reg)\nboard",
]


@pytest.fixture(scope="module")
def page(lab, browser):
    write_notebook(lab["root"] / "damage.ipynb", CELLS)
    page = browser.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    open_and_run(page, lab, "damage.ipynb", timeout_ms=600_000)
    page.wait_for_selector(".cnc-heatmap [data-layer]", timeout=300_000)
    yield page
    page.close()


def _view(page):
    return page.locator(".cnc-heatmap").first


def test_damage_mode_marks_the_worst_group(page):
    assert [e for e in cell_errors(page) if "Traceback" in e or "Error" in e] == []
    view = _view(page)
    assert kernel_eval(page, "board.heatmap._damage") == "{}"  # nothing ran before the pick
    view.locator("[data-mode='damage']").click()
    view.locator("[data-layer][data-worst='true']").first.wait_for()
    worst = view.locator("[data-layer][data-worst='true']").evaluate_all(
        "els => els.map(e => e.getAttribute('data-layer'))"
    )
    expected = json.loads(
        ast.literal_eval(
            kernel_eval(
                page,
                "json.dumps(out)",
                code=(
                    "t = reg.compare('base', 'damaged').sensitivity()\n"
                    "out = {'modules': t.loc[0, 'modules'], 'group': t.loc[0, 'group'],\n"
                    "       'recovered': dict(zip(t['group'], t['recovered'].astype(float))),\n"
                    "       'proxy': dict(zip(t['group'], t['proxy'].astype(float)))}"
                ),
            )
        )
    )
    assert "features.3" in expected["modules"]
    assert sorted(worst) == sorted(expected["modules"])
    # Every module row carries its group's recovered and proxy, as cmp.sensitivity says.
    cells = view.locator("[data-layer] [data-column='recovered'][data-group]").evaluate_all(
        "els => els.map(e => [e.closest('[data-layer]').getAttribute('data-layer'),"
        " e.getAttribute('data-group'), e.getAttribute('data-value'),"
        " e.parentElement.querySelector(\"[data-column='proxy']\").getAttribute('data-value')])"
    )
    leaves = {layer: rest for layer, *rest in cells if layer in ("features.3", "classifier.3")}
    assert set(leaves) == {"features.3", "classifier.3"}, cells
    for group, recovered, proxy in leaves.values():
        assert float(proxy) == pytest.approx(expected["proxy"][group], rel=1e-9)
        want = expected["recovered"][group]
        assert recovered == "nan" if want != want else float(recovered) == pytest.approx(want)
    assert leaves["features.3"][0] == expected["group"]
    text = view.locator(".cnc-hm-side").inner_text()
    assert "restore runs" in text and "accuracy (higher is better)" in text
    view.locator(".cnc-dmg-chart svg").wait_for()
    # The recovered column says % and the proxy's meaning is one hover away.
    f3 = view.locator("[data-layer='features.3'] [data-column='recovered']")
    assert f3.inner_text().strip().endswith("%")
    view.locator("[data-layer='features.3'] [data-column='proxy']").hover()
    tip = view.locator(".cnc-tooltip")
    tip.wait_for(state="visible")
    assert "quality_a" not in tip.inner_text()  # labelled in words, not attr keys
    assert "accuracy, base" in tip.inner_text() and "restore runs" in tip.inner_text()
    # Rows are focusable and say their damage in their label.
    label = view.locator("[data-layer='features.3']").get_attribute("aria-label")
    assert "worst group" in label and "recovered" in label
    _shot(page, view, "damage_light.png")


def test_suggest_restores_adds_children_to_graph_and_scatter(page):
    view = _view(page)
    before = set(ast.literal_eval(kernel_eval(page, "list(reg.metrics().index)")))
    button = view.locator("[data-action='suggest-restores']")
    button.click()
    view.locator("[data-made]").first.wait_for()
    made = view.locator("[data-made]").evaluate_all(
        "els => els.map(e => e.getAttribute('data-made'))"
    )
    wait_kernel(page, f"sorted(set(reg.metrics().index) - set({sorted(before)!r}))", sorted(made))
    assert made and not set(made) & before
    for name in made:
        assert kernel_eval(page, f"reg.record({name!r}).parent") == "'damaged'"
        page.locator(f".cnc-provenance [data-model='{name}']").wait_for()
        page.locator(f".cnc-scatter [data-model='{name}']").wait_for()
    assert button.get_attribute("aria-busy") == "false"


def test_dark_theme_screenshot(page):
    view = _view(page)
    number = view.locator("[data-layer='features.3'] [data-column='proxy'] .cnc-hm-num")
    light = number.evaluate("el => getComputedStyle(el).color")
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme',"
        " {theme: 'JupyterLab Dark'})"
    )
    page.wait_for_function("() => document.body.getAttribute('data-jp-theme-light') === 'false'")
    settle(page)
    background = view.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background != "rgb(255, 255, 255)"
    # The numbers follow the theme's ink (JupyterLab's variables), not a fixed colour.
    assert number.evaluate("el => getComputedStyle(el).color") != light
    _shot(page, view, "damage_dark.png")
    page.locator(".cnc-provenance").first.scroll_into_view_if_needed()
    _shot(page, page.locator(".cnc-provenance").first, "damage_provenance_dark.png")
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
