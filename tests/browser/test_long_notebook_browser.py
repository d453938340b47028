"""Views in a long notebook: the page keeps its scroll, colour scales tell the truth (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .lab import (
    cell_errors,
    open_and_run,
    wait_attribute_change,
    wait_kernel,
    write_notebook,
)

pytestmark = pytest.mark.browser

CELLS = [
    "print('\\n'.join(f'line {i}' for i in range(80)))",
    """
import json, tempfile
import cnc_widgets as cnc

doc = {"metrics": [{"name": "Top-1 Accuracy", "min": 0, "max": 1, "format": ".2%"}],
       "operations": [],
       "models": [
    {"id": "base", "base": None, "operation": {"name": "train", "parameters": {}},
     "metrics": {"Top-1 Accuracy": 0.9472, "Model Size": 4_000_000}},
    {"id": "pruned", "base": "base", "operation": {"name": "prune", "parameters": {"amount": 0.5}},
     "metrics": {"Top-1 Accuracy": 0.9437, "Model Size": 2_000_000}},
    {"id": "unmeasured", "base": "base",
     "operation": {"name": "prune", "parameters": {"amount": 0.9}}, "metrics": {}}]}
path = tempfile.mktemp(suffix=".json")
json.dump(doc, open(path, "w"))
reg = cnc.ModelRegistry.from_cnc_json(path)
graph = cnc.show_provenance(reg, color_by="accuracy")
graph
""",
    "print('\\n'.join(f'after {i}' for i in range(80)))",
]


@pytest.fixture(scope="module")
def page(lab, browser):
    write_notebook(lab["root"] / "long.ipynb", CELLS)
    page = browser.new_page()
    open_and_run(page, lab, "long.ipynb")
    page.wait_for_selector(".cnc-provenance [data-model]")
    assert cell_errors(page) == []
    yield page
    page.close()


SCROLLER = """() => {
  const view = document.querySelector('.cnc-provenance');
  let el = view.parentElement;
  const scrolls = (e) => e.scrollHeight > e.clientHeight + 10 &&
    ['auto', 'scroll'].includes(getComputedStyle(e).overflowY);
  while (el && !scrolls(el)) el = el.parentElement;
  return el ? el.scrollTop : null;
}"""


VIEWPORT = ".cnc-provenance .cnc-viewport"


def transform(page) -> str:
    return page.get_attribute(VIEWPORT, "transform")


def scale_of(transform: str) -> float:
    return float(transform.split("scale(")[1].rstrip(")"))


def distance(page, a: str, b: str) -> float:
    return sum((x - y) ** 2 for x, y in zip(fill(page, a), fill(page, b), strict=True)) ** 0.5


def fill(page, name: str) -> tuple[int, ...]:
    value = page.get_attribute(f'.cnc-provenance [data-model="{name}"] .cnc-dot', "fill")
    return tuple(int(v) for v in value.removeprefix("rgb(").rstrip(")").split(","))


def test_plain_wheel_scrolls_the_notebook_ctrl_wheel_zooms(page):
    view = page.locator(".cnc-provenance svg")
    view.scroll_into_view_if_needed()
    box = view.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    before, scroll_before = transform(page), page.evaluate(SCROLLER)
    assert scroll_before is not None

    page.mouse.wheel(0, 300)
    page.wait_for_function(f"() => ({SCROLLER})() > {scroll_before}")
    assert transform(page) == before
    hint = page.locator(".cnc-provenance .cnc-zoom-hint")
    assert hint.is_visible() and "scrolling" in hint.inner_text()

    view.scroll_into_view_if_needed()
    box = view.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    scroll_mid = page.evaluate(SCROLLER)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    zoomed = wait_attribute_change(page, VIEWPORT, "transform", before)
    assert scale_of(zoomed) > scale_of(before)
    assert page.evaluate(SCROLLER) == scroll_mid

    # Once clicked into, plain wheels zoom too; leaving the view gives the page its wheel back.
    page.mouse.click(box["x"] + 8, box["y"] + box["height"] - 8)
    page.mouse.wheel(0, 200)
    wait_attribute_change(page, VIEWPORT, "transform", zoomed)
    assert page.evaluate(SCROLLER) == scroll_mid
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 200)
    engaged = page.get_attribute(".cnc-provenance", "class")
    assert "cnc-zoom-engaged" not in engaged


def test_small_spread_legend_and_fixed_domain(page):
    legend = page.locator(".cnc-provenance .cnc-legend")
    text = legend.inner_text()
    assert "94.37%" in text and "94.72%" in text
    note = page.locator(".cnc-provenance .cnc-legend-note")
    assert note.is_visible() and "differ by only 0.37%" in note.inner_text()
    # The data's range: the whole palette spans a third of a point.
    far = distance(page, "base", "pruned")
    assert far > 200
    # Missing values keep their own neutral, hollow mark.
    missing = page.locator('.cnc-provenance [data-model="unmeasured"] .cnc-dot')
    assert "cnc-missing" in missing.get_attribute("class")

    page.select_option(".cnc-provenance select.cnc-domain", "unit")
    page.wait_for_function(
        "() => document.querySelector('.cnc-provenance .cnc-legend-low').textContent === '0%'"
    )
    close = distance(page, "base", "pruned")
    assert close < 12
    assert "100%" in legend.inner_text()
    assert page.locator(".cnc-provenance .cnc-legend-note").is_visible()
    wait_kernel(page, "graph.color_domains", "{'accuracy': 'unit'}")
    out = Path(os.environ.get("CNC_SCREENSHOTS", "/tmp/cnc-screens"))
    out.mkdir(parents=True, exist_ok=True)
    page.locator(".cnc-provenance").screenshot(path=str(out / "small-spread-fixed.png"))
    page.select_option(".cnc-provenance select.cnc-domain", "data")
    page.wait_for_function(
        "() => document.querySelector('.cnc-provenance .cnc-legend-low').textContent !== '0%'"
    )
    page.locator(".cnc-provenance").screenshot(path=str(out / "small-spread-data.png"))
