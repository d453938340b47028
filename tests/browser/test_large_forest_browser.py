"""A 200-model forest stays usable: zoom, pan, collapse."""

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
    """
import json, random, tempfile
import cnc_widgets as cnc

rng = random.Random(0)
models = [{"id": "root0", "base": None, "operation": {"name": "train", "parameters": {}},
           "metrics": {"accuracy": 0.9}},
          {"id": "root1", "base": None, "operation": {"name": "train", "parameters": {}},
           "metrics": {"accuracy": 0.8}}]
for i in range(2, 200):
    parent = models[rng.randrange(len(models))]["id"]
    models.append({"id": f"m{i}", "base": parent,
                   "operation": {"name": rng.choice(["prune", "quantize"]),
                                 "parameters": {"amount": round(rng.random(), 2)}},
                   "metrics": {"accuracy": rng.random(), "Model Size": rng.randrange(10**6)}})
path = tempfile.mktemp(suffix=".json")
json.dump({"metrics": [], "operations": [], "models": models}, open(path, "w"))
reg = cnc.ModelRegistry.from_cnc_json(path)
""",
    "graph = cnc.show_provenance(reg)\ngraph",
]


VIEWPORT = ".cnc-provenance .cnc-viewport"


def transform(page) -> str:
    return page.get_attribute(VIEWPORT, "transform")


def visible_marks(page) -> int:
    return page.locator(".cnc-provenance [data-model]").count()


def test_large_forest(lab, browser, tmp_path):
    write_notebook(lab["root"] / "forest.ipynb", CELLS)
    page = browser.new_page()
    try:
        open_and_run(page, lab, "forest.ipynb")
        page.wait_for_selector(".cnc-provenance [data-model]")
        assert cell_errors(page) == []
        assert visible_marks(page) == 200
        out = Path(os.environ.get("CNC_SCREENSHOTS", tmp_path))
        out.mkdir(parents=True, exist_ok=True)
        view = page.locator(".cnc-provenance")
        view.scroll_into_view_if_needed()
        view.screenshot(path=str(out / "forest.png"))
        # The view's height is bounded; the forest is reached by zooming and panning.
        assert view.bounding_box()["height"] <= 700

        # Far out, edge labels are hidden (semantic zoom); zooming in brings them back.
        assert "cnc-zoomed-out" in view.get_attribute("class")
        assert not page.locator(".cnc-provenance .cnc-edge-label").first.is_visible()
        before = transform(page)
        box = page.locator(".cnc-provenance svg").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        # Ctrl+wheel zooms (a plain wheel scrolls the notebook: test_wheel_browser.py).
        page.keyboard.down("Control")
        page.mouse.wheel(0, -400)
        page.keyboard.up("Control")
        zoomed = wait_attribute_change(page, VIEWPORT, "transform", before)
        if float(zoomed.split("scale(")[1].rstrip(")")) >= 0.6:
            assert "cnc-zoomed-out" not in view.get_attribute("class")
        assert zoomed != before and float(zoomed.split("scale(")[1].rstrip(")")) > float(
            before.split("scale(")[1].rstrip(")")
        )
        page.mouse.move(box["x"] + 20, box["y"] + 20)
        page.mouse.down()
        page.mouse.move(box["x"] + 220, box["y"] + 120, steps=5)
        page.mouse.up()
        assert transform(page) != zoomed
        view.screenshot(path=str(out / "forest-zoomed.png"))

        page.click(".cnc-provenance button[title='Fit the whole forest']")
        page.locator('.cnc-provenance .cnc-collapse[aria-label^="Collapse root0"]').click()
        collapsed = visible_marks(page)
        assert 1 < collapsed < 200
        label = page.get_attribute(
            '.cnc-provenance .cnc-collapse[aria-label^="Expand root0"]', "aria-label"
        )
        hidden = int(label.split("(")[1].split()[0])
        assert collapsed + hidden == 200
        page.locator('.cnc-provenance .cnc-collapse[aria-label^="Expand root0"]').click()
        assert visible_marks(page) == 200

        # Box selection: the models whose marks lie inside the dragged box become the selection.
        page.click(".cnc-provenance button[title='Fit the whole forest']")
        page.click(".cnc-provenance button[aria-pressed]")
        box = page.locator(".cnc-provenance svg").bounding_box()
        x0, y0 = box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.2
        x1, y1 = box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.6
        inside = page.evaluate(
            """([x0, y0, x1, y1]) => [...document.querySelectorAll('.cnc-provenance .cnc-node')]
                 .filter((m) => { const r = m.querySelector('.cnc-dot').getBoundingClientRect();
                   const cx = r.x + r.width / 2, cy = r.y + r.height / 2;
                   return cx >= x0 && cx <= x1 && cy >= y0 && cy <= y1; })
                 .map((m) => m.getAttribute('data-model')).sort()""",
            [x0, y0, x1, y1],
        )
        assert 5 < len(inside) < 200
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=8)
        page.mouse.up()
        wait_kernel(page, "sorted(reg.selected)", inside)
        selected = page.eval_on_selector_all(
            '.cnc-provenance [aria-selected="true"]',
            "els => els.map(e => e.getAttribute('data-model')).sort()",
        )
        assert selected == inside
        view.screenshot(path=str(out / "forest-box-selected.png"))
    finally:
        page.close()
