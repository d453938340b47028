"""The scatter, the diff and the dashboard in a real JupyterLab, with a real kernel.

One notebook: a digits registry shown as a dashboard, and a 10,000-instance registry
with text previews (one of them hostile markup) shown as a standalone diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .lab import cell_errors, kernel_eval, open_and_run, settle, wait_kernel, write_notebook

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.__xss=1">'

CELLS = [
    """
import torch
import cnc_widgets as cnc
from cnc_widgets import examples

data = examples.digits()
base = examples.train_digits_cnn(data, epochs=2)
reg = cnc.ModelRegistry()
reg.set_data(data.test_inputs, data.test_labels, classes=data.classes,
             instances=data.test_instances)
reg.add("base", base)
reg.compress("base", "prune", amount=0.75, name="pruned")
reg.compress("base", "quantize_dynamic", name="int8")
reg.compress("pruned", "half", name="pruned-half")
reg.evaluate(progress=False)
""",
    "board = cnc.dashboard(reg)\nboard",
    f"""
# 10,000 instances: the digits test images again and again, with a little noise.
g = torch.Generator().manual_seed(0)
reps = -(-10_000 // len(data.test_labels))
big_x = data.test_inputs.repeat(reps, 1, 1, 1)[:10_000]
big_x = (big_x + 0.15 * torch.randn(big_x.shape, generator=g)).clamp(0, 1)
big_y = data.test_labels.repeat(reps)[:10_000]
texts = [f"digit #{{i}}: a noisy copy of test image {{i % len(data.test_labels)}}"
         for i in range(10_000)]
texts[3] = {XSS!r}
texts[-1] = {XSS!r} + " (last)"
big = cnc.ModelRegistry()
big.set_data(big_x, big_y, classes=data.classes, instances=texts)
big.add("base", base)
big.add("pruned", reg.model("pruned"), parent="base", operation="prune")
big.evaluate(progress=False)
diff = cnc.PredictionDiff(big, a="base", b="pruned")
diff
""",
]


@pytest.fixture(scope="module")
def page(lab, browser):
    write_notebook(lab["root"] / "views.ipynb", CELLS)
    page = browser.new_page()
    open_and_run(page, lab, "views.ipynb")
    page.wait_for_selector(".cnc-scatter [data-model]")
    page.wait_for_selector(".cnc-diff [data-instance]")
    yield page
    page.close()


def shots() -> Path:
    out = Path(os.environ.get("CNC_SCREENSHOTS", "/tmp/cnc-screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def set_theme(page, theme: str) -> None:
    page.evaluate(
        "t => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme
    )
    page.wait_for_function("t => document.body.dataset.jpThemeName === t", arg=theme)
    settle(page)


def big_diff(page):
    # The standalone diff is the last .cnc-diff on the page.
    return page.locator(".cnc-diff").last


def test_views_render_with_hooks(page):
    assert cell_errors(page) == []
    names = page.eval_on_selector_all(
        ".cnc-scatter [data-model]", "els => els.map(e => e.getAttribute('data-model'))"
    )
    assert sorted(names) == ["base", "int8", "pruned", "pruned-half"]
    # Nothing selected yet: the dashboard's diff says what to do instead of failing.
    board_diff = page.locator(".cnc-diff").first
    assert "Select two models" in board_diff.inner_text()
    # The frontier marked in the browser is the one Python computes.
    marked = page.eval_on_selector_all(
        ".cnc-scatter [data-pareto='true']", "els => els.map(e => e.getAttribute('data-model'))"
    )
    expected = kernel_eval(page, "sorted(reg.pareto('size_bytes', 'accuracy'))")
    assert repr(sorted(marked)) == expected
    axis = page.locator(".cnc-scatter .cnc-axis-title").first.text_content()
    assert "size_bytes" in axis and "bytes" in axis


def test_scatter_click_selects_everywhere(page):
    page.click('.cnc-scatter [data-model="base"]')
    wait_kernel(page, "reg.selected", "['base']")
    page.wait_for_selector('.cnc-provenance [data-model="base"][aria-selected="true"]')
    page.click('.cnc-scatter [data-model="pruned"]', modifiers=["Shift"])
    wait_kernel(page, "reg.selected", "['base', 'pruned']")
    # The dashboard's diff now compares the two.
    board_diff = page.locator(".cnc-diff").first
    board_diff.locator('[data-model="pruned"]').wait_for()
    text = board_diff.inner_text()
    assert "reference" in text and "agreement" in text
    agreement = float(kernel_eval(page, "reg.compare('base', 'pruned').agreement"))
    assert f"{100 * agreement:.2f}".rstrip("0").rstrip(".") + "%" in text

    kernel_eval(page, "1", code="reg.selected = ['int8']")
    for view in ("cnc-scatter", "cnc-provenance"):
        # The state of the mark is the point, wherever the page is scrolled.
        mark = f'.{view} [data-model="int8"][aria-selected="true"]'
        page.wait_for_selector(mark, state="attached")
        assert page.get_attribute(f'.{view} [data-model="base"]', "aria-selected") == "false"


def test_filters_dim_models(page):
    low = float(kernel_eval(page, "float(reg.metrics()['accuracy'].max())"))
    kernel_eval(page, "1", code=f"board.scatter.filters = {{'accuracy': [{low}, 1.0]}}")
    page.wait_for_selector('.cnc-scatter [data-filtered="out"]')
    out = page.eval_on_selector_all(
        '.cnc-scatter [data-filtered="out"]', "els => els.map(e => e.getAttribute('data-model'))"
    )
    acc = json.loads(
        kernel_eval(page, "__import__('json').dumps(reg.metrics()['accuracy'].to_dict())")[1:-1]
    )
    assert sorted(out) == sorted(n for n, a in acc.items() if a < low)
    kernel_eval(page, "1", code="board.scatter.filters = {}")
    page.wait_for_function("() => !document.querySelector('.cnc-scatter [data-filtered]')")


def test_model_added_later_appears(page):
    kernel_eval(
        page,
        "1",
        code="reg.compress('base', 'prune', amount=0.9, name='late'); reg.evaluate(progress=False)",
    )
    page.wait_for_selector('.cnc-scatter [data-model="late"]')
    page.wait_for_selector('.cnc-provenance [data-model="late"]')


def test_change_matrix_cell_filters_rows(page):
    view = big_diff(page)
    matrix = json.loads(
        kernel_eval(
            page,
            "__import__('json').dumps(big.compare('base', 'pruned').change_matrix.values.tolist())",
        )[1:-1]
    )
    # The off-diagonal cell with the fewest (but some) instances: all its rows fit in view.
    cells = [(v, a, b) for a, row in enumerate(matrix) for b, v in enumerate(row) if a != b and v]
    count, a, b = min(cells)
    view.locator(f'[data-cell="{a},{b}"]').click()
    page.wait_for_function(
        f"() => document.querySelectorAll('.cnc-diff')[document.querySelectorAll('.cnc-diff')"
        f".length - 1].querySelector('.cnc-count').dataset.count === '{count}'"
    )
    rows = view.locator(".cnc-row")
    assert rows.count() == count
    preds = json.loads(
        kernel_eval(
            page,
            "__import__('json').dumps([int(i) for i in big.compare('base', 'pruned').instances"
            f".query('pred_a == {a} and pred_b == {b}').index])",
        )[1:-1]
    )
    shown = sorted(int(x) for x in rows.evaluate_all("els => els.map(e => e.dataset.instance)"))
    assert shown == sorted(preds)
    # Clear the cell filter again.
    view.locator(".cnc-chip + button").click()
    page.wait_for_function(
        "() => { const v = [...document.querySelectorAll('.cnc-diff')].pop();"
        " return v.querySelector('.cnc-count').dataset.count === '10000'; }"
    )


def test_sort_by_kl_puts_largest_first(page):
    view = big_diff(page)
    view.locator('[data-sort="kl1"]').click()
    first = view.locator(".cnc-row").first.get_attribute("data-instance")
    top = kernel_eval(page, "str(big.compare('base', 'pruned').instances['kl'].idxmax())")
    assert first == top.strip("'")


def test_scroll_to_end_shows_last_instance(page):
    view = big_diff(page)
    view.locator('[data-sort="id"]').click()  # ascending ids
    view.locator(".cnc-table").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    last = view.locator('.cnc-row[data-instance="9999"]')
    last.wait_for()
    # Its text came from the kernel on demand (beyond the embedded previews), as text.
    page.wait_for_function(
        "() => { const v = [...document.querySelectorAll('.cnc-diff')].pop();"
        " const r = v.querySelector('.cnc-row[data-instance=\"9999\"]');"
        " return r && r.textContent.includes('(last)'); }"
    )
    assert XSS in last.inner_text()
    assert last.locator("img").count() == 0


def test_hostile_text_stays_text(page):
    view = big_diff(page)
    view.locator(".cnc-table").evaluate("el => { el.scrollTop = 0; }")
    row = view.locator('.cnc-row[data-instance="3"]')
    row.wait_for()
    assert XSS in row.inner_text()
    assert view.locator("img").count() == 0
    assert page.evaluate("() => window.__xss") is None


def test_selected_instances_round_trip(page):
    view = big_diff(page)
    view.locator('.cnc-row[data-instance="5"]').click()
    wait_kernel(page, "diff.selected_instances", "['5']")
    kernel_eval(page, "1", code="diff.selected_instances = ['7']")
    page.wait_for_selector('.cnc-diff .cnc-row[data-instance="7"][aria-selected="true"]')
    assert view.locator('.cnc-row[data-instance="5"]').get_attribute("aria-selected") == "false"


def test_trajectories_and_colour(page):
    kernel_eval(
        page, "1", code="board.scatter.color = 'sparsity'; board.scatter.trajectories = True"
    )
    # A model made without changing size sits straight above its parent: a zero-width line.
    page.wait_for_selector(".cnc-scatter .cnc-trajectory", state="attached")
    edges = page.eval_on_selector_all(
        ".cnc-scatter .cnc-trajectory", "els => els.map(e => e.getAttribute('data-edge'))"
    )
    parents = kernel_eval(
        page,
        "sorted(f'{p}->{n}' for n, p in reg.metrics()['parent'].items() if isinstance(p, str))",
    )
    assert repr(sorted(edges)) == parents
    legend = page.locator(".cnc-scatter .cnc-legend").first.inner_text()
    assert "sparsity" in legend and "%" in legend


def test_screenshots_light_and_dark(page):
    out = shots()
    kernel_eval(page, "1", code="reg.selected = ['base', 'pruned', 'int8']")
    page.locator(".cnc-diff").first.locator('[data-model="int8"]').wait_for()
    # Tall enough that every view fits whole in its screenshot.
    page.set_viewport_size({"width": 1280, "height": 2600})
    for theme, name in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
        set_theme(page, theme)
        for view in ("scatter", "diff", "provenance"):
            locator = page.locator(f".cnc-{view}").first
            locator.scroll_into_view_if_needed()
            locator.screenshot(path=str(out / f"{view}-{name}.png"))
        big_diff(page).screenshot(path=str(out / f"diff-10k-{name}.png"))
        assert (out / f"scatter-{name}.png").stat().st_size > 5_000
    set_theme(page, "JupyterLab Light")
    page.set_viewport_size({"width": 1280, "height": 900})
