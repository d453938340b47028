"""The provenance graph in a real JupyterLab, driven by a real Chromium, with a real kernel."""

from __future__ import annotations

import pytest

from .lab import cell_errors, kernel_eval, open_and_run, wait_kernel, write_notebook

pytestmark = pytest.mark.browser

CELLS = [
    """
import copy, torch
import cnc_widgets as cnc
from cnc_widgets import examples

data = examples.digits()
base = examples.train_digits_cnn(data, epochs=2)
reg = cnc.ModelRegistry()
reg.set_data(data.test_inputs, data.test_labels, classes=data.classes,
             instances=data.test_instances)
reg.add("base", base)

def scaled(model, factor):
    child = copy.deepcopy(model)
    with torch.no_grad():
        for p in child.parameters():
            p.mul_(factor)
    return child

reg.add("shrunk", scaled(base, 0.9), parent="base", operation="scale", params={"factor": 0.9})
reg.add("<b>tiny</b>", scaled(base, 0.5), parent="shrunk", operation="scale",
        params={"factor": 0.5})
reg.add("grown", scaled(base, 1.1), parent="base", operation="scale", params={"factor": 1.1})
reg.evaluate(progress=False)
""",
    "graph = cnc.show_provenance(reg)\ngraph",
]


@pytest.fixture(scope="module")
def notebook_page(lab, browser):
    write_notebook(lab["root"] / "provenance.ipynb", CELLS)
    page = browser.new_page()
    open_and_run(page, lab, "provenance.ipynb")
    page.wait_for_selector(".cnc-provenance [data-model]")
    yield page
    page.close()


def test_one_mark_per_model(notebook_page):
    page = notebook_page
    assert cell_errors(page) == []
    names = page.eval_on_selector_all(
        ".cnc-provenance [data-model]", "els => els.map(e => e.getAttribute('data-model'))"
    )
    assert sorted(names) == sorted(["base", "shrunk", "<b>tiny</b>", "grown"])
    # Names are text, never markup: no <b> element was created from the model name.
    assert page.locator(".cnc-provenance b").count() == 0
    edges = page.eval_on_selector_all(
        ".cnc-provenance [data-edge]", "els => els.map(e => e.getAttribute('data-edge'))"
    )
    assert sorted(edges) == sorted(["base->shrunk", "shrunk-><b>tiny</b>", "base->grown"])
    labels = page.eval_on_selector_all(
        ".cnc-provenance .cnc-edge-label", "els => els.map(e => e.textContent)"
    )
    assert "scale (factor=0.9)" in labels


def test_click_selects_in_kernel_and_python_moves_highlight(notebook_page):
    page = notebook_page
    page.click('.cnc-provenance [data-model="shrunk"]')
    page.wait_for_function(
        """() => document.querySelector('.cnc-provenance [data-model="shrunk"]')
                 .getAttribute('aria-selected') === 'true'"""
    )
    # The click reached the kernel: the registry's trait holds the name.
    wait_kernel(page, "reg.selected", "['shrunk']")

    kernel_eval(page, "reg.selected", code="reg.selected = ['grown']")
    page.wait_for_function(
        """() => document.querySelector('.cnc-provenance [data-model="grown"]')
                 .getAttribute('aria-selected') === 'true'"""
    )
    assert page.get_attribute('.cnc-provenance [data-model="shrunk"]', "aria-selected") == "false"


def test_hover_tooltip_shows_metrics(notebook_page):
    page = notebook_page
    page.hover('.cnc-provenance [data-model="grown"]')
    tip = page.locator(".cnc-provenance .cnc-tooltip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert "grown" in text and "accuracy" in text
    accuracy = float(kernel_eval(page, "float(reg.metrics().loc['grown', 'accuracy'])"))
    assert f"{accuracy:.4g}".rstrip("0").rstrip(".") in text


def test_screenshot_when_asked(notebook_page, tmp_path):
    """Writes the view's PNG (to $CNC_SCREENSHOTS or a temp dir) so a person can look at it."""
    import os
    from pathlib import Path

    out = Path(os.environ.get("CNC_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    view = notebook_page.locator(".cnc-provenance")
    view.screenshot(path=str(out / "provenance.png"))
    assert (out / "provenance.png").stat().st_size > 5_000
