"""The quickstart notebook runs in JupyterLab and its provenance view shows every model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .lab import cell_errors, kernel_eval, open_and_run

pytestmark = pytest.mark.browser

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "01_quickstart.ipynb"


def test_quickstart_in_lab(lab, browser, tmp_path):
    shutil.copy(QUICKSTART, lab["root"] / "01_quickstart.ipynb")
    page = browser.new_page()
    try:
        open_and_run(page, lab, "01_quickstart.ipynb")
        page.wait_for_selector(".cnc-provenance [data-model]")
        assert cell_errors(page) == []
        assert page.locator(".cnc-provenance").count() == 1  # no tab left over from other tests
        names = sorted(
            page.eval_on_selector_all(
                ".cnc-provenance [data-model]", "els => els.map(e => e.getAttribute('data-model'))"
            )
        )
        assert names == sorted(eval(kernel_eval(page, "reg.names")))
        # The last cell selected int8 from Python: the graph shows it.
        page.wait_for_function(
            """() => document.querySelector('.cnc-provenance [data-model="int8"]')
                     .getAttribute('aria-selected') === 'true'"""
        )
        # Colour by another metric through the view's own control.
        page.select_option(".cnc-provenance select", "size_bytes")
        page.wait_for_function(
            "() => document.querySelector('.cnc-provenance .cnc-legend-title')"
            ".textContent === 'size_bytes'"
        )
        page.select_option(".cnc-provenance select", "accuracy")
        out = Path(os.environ.get("CNC_SCREENSHOTS", tmp_path))
        out.mkdir(parents=True, exist_ok=True)
        view = page.locator(".cnc-provenance")
        view.scroll_into_view_if_needed()
        view.screenshot(path=str(out / "quickstart-provenance.png"))
        page.hover('.cnc-provenance [data-model="pruned-80"]')
        tip = page.locator(".cnc-provenance .cnc-tooltip")
        tip.wait_for(state="visible")
        assert "sparsity" in tip.inner_text()
        # The tooltip stays inside the view and does not cover the hovered model.
        tip_box, view_box = tip.bounding_box(), view.bounding_box()
        mark_box = page.locator(
            '.cnc-provenance [data-model="pruned-80"] circle.cnc-dot'
        ).bounding_box()
        assert (
            tip_box["x"] >= view_box["x"]
            and tip_box["x"] + tip_box["width"] <= view_box["x"] + view_box["width"] + 1
        )
        overlaps = (
            tip_box["x"] < mark_box["x"] + mark_box["width"]
            and mark_box["x"] < tip_box["x"] + tip_box["width"]
            and tip_box["y"] < mark_box["y"] + mark_box["height"]
            and mark_box["y"] < tip_box["y"] + tip_box["height"]
        )
        assert not overlaps
        view.screenshot(path=str(out / "quickstart-tooltip.png"))
        assert (out / "quickstart-provenance.png").stat().st_size > 5_000
    finally:
        page.close()
