"""Finding the right models (issue 10): filters, selection details, layouts, keys, themes."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from .lab import cell_errors, kernel_eval, open_and_run, settle, wait_kernel, write_notebook

pytestmark = pytest.mark.browser

CELLS = [
    """
import cnc_widgets as cnc
from cnc_widgets import examples

data = examples.digits()
base = examples.train_digits_cnn(data, epochs=2)
reg = cnc.ModelRegistry()
reg.set_data(data.test_inputs[:200], data.test_labels[:200], classes=data.classes)
reg.add("base", base)
for amount in (0.3, 0.5, 0.7, 0.9):
    reg.compress("base", "prune", amount=amount, name=f"p{int(amount * 100)}")
reg.compress("base", "prune", amount=0.7, scope="tensor", name="p70-tensor")
reg.compress("base", "quantize_dynamic", name="int8")
reg.compress("p50", "quantize_dynamic", name="p50-int8")
reg.compress("p50", "half", name="p50-half")
reg.evaluate(progress=False)
""",
    """
board = cnc.dashboard(reg)
graph, scatter, panel, details = board.provenance, board.scatter, board.filters, board.details
board
""",
]

SHOTS = Path(os.environ.get("CNC_SCREENSHOTS", "/tmp/cnc-screens"))


@pytest.fixture(scope="module")
def page(lab, browser):
    write_notebook(lab["root"] / "explore.ipynb", CELLS)
    page = browser.new_page()
    open_and_run(page, lab, "explore.ipynb")
    page.wait_for_selector(".cnc-provenance [data-model]")
    page.wait_for_selector(".cnc-filter-panel .cnc-filter")
    page.wait_for_selector(".cnc-details")
    page.wait_for_selector(".cnc-scatter [data-model]")
    assert cell_errors(page) == []
    yield page
    page.close()


def kernel(page, expression: str, code: str = ""):
    return ast.literal_eval(kernel_eval(page, expression, code))


def dimmed(page, view: str) -> list[str]:
    return sorted(
        page.eval_on_selector_all(
            f'{view} [data-model][data-filtered="out"]',
            "els => els.map(e => e.getAttribute('data-model'))",
        )
    )


def test_brushing_dims_exactly_the_models_outside(page):
    hist = page.locator('.cnc-filter-panel .cnc-filter[data-metric="accuracy"] svg')
    hist.scroll_into_view_if_needed()
    box = hist.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + 20, steps=6)
    page.mouse.up()
    wait_kernel(page, "'accuracy' in reg.filters", "True")
    low, high = kernel(page, "reg.filters['accuracy']")
    assert low < high
    # Independent of the registry's own rule: straight from the metrics table.
    expected = kernel(
        page,
        f"sorted(n for n, v in reg.metrics()['accuracy'].items() if not ({low} <= v <= {high}))",
    )
    total = kernel(page, "len(reg)")
    assert 0 < len(expected) < total
    assert kernel(page, "sorted(reg.filtered_out())") == expected
    assert kernel(page, "sorted(reg.metrics(filtered=True).index)") == sorted(
        set(kernel(page, "reg.names")) - set(expected)
    )
    page.wait_for_function(
        "n => document.querySelectorAll('.cnc-provenance [data-filtered=\"out\"]').length === n",
        arg=len(expected),
    )
    assert dimmed(page, ".cnc-provenance") == expected
    page.wait_for_function(
        "n => document.querySelectorAll('.cnc-scatter [data-filtered=\"out\"]').length === n",
        arg=len(expected),
    )
    assert dimmed(page, ".cnc-scatter") == expected
    # Dimmed models stay clickable.
    page.click(f'.cnc-provenance [data-model="{expected[0]}"]', force=True)
    wait_kernel(page, "reg.selected", [expected[0]])
    count = page.inner_text(".cnc-filter-panel .cnc-filter-count")
    assert count.startswith(f"{total - len(expected)} of {total}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".cnc-filter-panel").screenshot(path=str(SHOTS / "filters-light.png"))
    page.locator(".cnc-provenance").screenshot(path=str(SHOTS / "provenance-filtered-light.png"))

    page.click(".cnc-filter-panel button:has-text('Clear')")
    wait_kernel(page, "dict(reg.filters)", {})
    page.wait_for_function("() => !document.querySelector('.cnc-provenance [data-filtered]')")
    page.wait_for_function("() => !document.querySelector('.cnc-scatter [data-filtered]')")
    kernel_eval(page, "1", code="reg.selected = []")


def test_typed_range_from_python_and_inputs(page):
    kernel_eval(page, "1", code="reg.filters = {'sparsity': (0.45, None)}")
    expected = kernel(
        page, "sorted(n for n, v in reg.metrics()['sparsity'].items() if not v >= 0.45)"
    )
    page.wait_for_function(
        "n => document.querySelectorAll('.cnc-provenance [data-filtered=\"out\"]').length === n",
        arg=len(expected),
    )
    assert dimmed(page, ".cnc-provenance") == expected and "base" in expected
    high = page.locator('.cnc-filter-panel [aria-label="sparsity highest"]')
    high.fill("0.6")
    high.press("Enter")
    wait_kernel(page, "reg.filters['sparsity']", (0.45, 0.6))
    kernel_eval(page, "1", code="reg.filters = {}")


def click_models(page, names: list[str]) -> None:
    page.click(f'.cnc-provenance [data-model="{names[0]}"]')
    for name in names[1:]:
        page.click(f'.cnc-provenance [data-model="{name}"]', modifiers=["Shift"])
    wait_kernel(page, "reg.selected", names)


def test_details_three_amounts_and_a_warning(page):
    click_models(page, ["p30", "p50", "p70"])
    page.wait_for_function(
        "() => document.querySelector('.cnc-details .cnc-title').textContent.endsWith('3 models')"
    )
    chart = page.locator('.cnc-details .cnc-chart[data-metric="accuracy"]')
    chart.locator("svg").wait_for()
    bars = chart.locator(".mark-rect path")
    assert bars.count() == 3
    axis_text = chart.locator("text").evaluate_all("els => els.map(e => e.textContent)")
    assert "amount" in axis_text
    assert {"0.3", "0.5", "0.7"} <= set(axis_text)
    # Every metric's chart has three bars.
    charts = page.locator(".cnc-details .cnc-chart")
    assert charts.count() >= 4
    for i in range(charts.count()):
        charts.nth(i).locator(".mark-rect path").first.wait_for()
        assert charts.nth(i).locator(".mark-rect path").count() == 3
    assert page.locator(".cnc-details .cnc-warning").count() == 0
    assert "differ only in prune: amount" in page.inner_text(".cnc-details")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".cnc-details").screenshot(path=str(SHOTS / "details-three-light.png"))

    click_models(page, ["p50", "p70-tensor"])
    warning = page.locator(".cnc-details .cnc-warning")
    warning.wait_for()
    assert "these differ in amount and in scope" in warning.inner_text()

    click_models(page, ["p50-int8"])
    page.wait_for_selector(".cnc-details .cnc-chain")
    chain = page.locator(".cnc-details .cnc-chain li").all_inner_texts()
    assert len(chain) == 3 and chain[0].startswith("base") and "quantize_dynamic" in chain[2]
    size = page.inner_text('.cnc-details tr[data-metric="size_bytes"] td')
    assert size.endswith(("kB", "MB"))
    accuracy = kernel(page, "float(reg.metrics().loc['p50-int8', 'accuracy'])")
    expected = f"{accuracy * 100:.2f}".rstrip("0").rstrip(".") + "%"
    assert page.inner_text('.cnc-details tr[data-metric="accuracy"] td') == expected
    page.locator(".cnc-details").screenshot(path=str(SHOTS / "details-one-light.png"))
    kernel_eval(page, "1", code="reg.selected = []")


def test_columns_by_operation(page):
    page.select_option('.cnc-provenance select[aria-label="Columns"]', "operation")
    page.wait_for_selector('.cnc-provenance [data-column="quantize_dynamic"]')

    def column_x(name: str) -> str:
        t = page.get_attribute(f'.cnc-provenance [data-model="{name}"]', "transform")
        return t.split("(")[1].split(",")[0]

    assert column_x("int8") == column_x("p50-int8")
    assert column_x("p30") == column_x("p50") == column_x("p70-tensor")
    assert len({column_x("int8"), column_x("p30"), column_x("base"), column_x("p50-half")}) == 4
    wait_kernel(page, "graph.columns", "'operation'")
    page.locator(".cnc-provenance").screenshot(path=str(SHOTS / "provenance-by-operation.png"))
    page.select_option('.cnc-provenance select[aria-label="Columns"]', "depth")
    wait_kernel(page, "graph.columns", "'depth'")


def test_size_by_second_metric(page):
    page.select_option('.cnc-provenance select[aria-label="Size models by metric"]', "size_bytes")
    page.wait_for_function(
        "() => document.querySelector('.cnc-provenance .cnc-size-legend')"
        ".textContent.includes('size_bytes')"
    )
    radius = {
        n: float(page.get_attribute(f'.cnc-provenance [data-model="{n}"] .cnc-dot', "r"))
        for n in ("base", "int8")
    }
    sizes = kernel(page, "reg.metrics().loc[['base', 'int8'], 'size_bytes'].tolist()")
    # Area is proportional to the value.
    assert (radius["int8"] / radius["base"]) ** 2 == pytest.approx(sizes[1] / sizes[0], rel=0.01)
    page.select_option('.cnc-provenance select[aria-label="Size models by metric"]', "")


def test_graph_marks_the_scatters_frontier(page):
    def front(view: str) -> list[str]:
        return sorted(
            page.eval_on_selector_all(
                f'{view} [data-pareto="true"]', "els => els.map(e => e.getAttribute('data-model'))"
            )
        )

    expected = sorted(kernel(page, "reg.pareto('size_bytes', 'accuracy')"))
    assert expected and front(".cnc-provenance") == expected == front(".cnc-scatter")
    kernel_eval(page, "1", code="scatter.x = 'latency_ms'")
    expected = sorted(kernel(page, "reg.pareto('latency_ms', 'accuracy')"))
    page.wait_for_function(
        "() => document.querySelector('.cnc-provenance .cnc-front-key')"
        ".textContent.includes('latency_ms')"
    )
    assert front(".cnc-provenance") == expected
    assert kernel(page, "graph.pareto['x']") == "latency_ms"
    kernel_eval(page, "1", code="scatter.x = 'size_bytes'")


def test_keyboard_navigation(page):
    kernel_eval(page, "1", code="reg.selected = []")
    page.focus('.cnc-provenance [data-model="base"]')
    page.keyboard.press("ArrowRight")
    focused = page.evaluate("() => document.activeElement.getAttribute('data-model')")
    assert focused and focused != "base"
    page.keyboard.press("ArrowDown")
    below = page.evaluate("() => document.activeElement.getAttribute('data-model')")
    assert below and below != focused
    page.keyboard.press("Enter")
    wait_kernel(page, "reg.selected", [below])
    assert page.get_attribute(f'.cnc-provenance [data-model="{below}"]', "aria-selected") == "true"
    page.keyboard.press("Escape")
    wait_kernel(page, "reg.selected", [])


def test_dark_theme_screenshots(page):
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme', "
        "{theme: 'JupyterLab Dark'})"
    )
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
    settle(page)
    click_models(page, ["p30", "p50", "p70"])
    page.wait_for_function(
        "() => document.querySelector('.cnc-details .cnc-title').textContent.endsWith('3 models')"
    )
    page.locator('.cnc-details .cnc-chart[data-metric="accuracy"] svg').wait_for()
    kernel_eval(page, "1", code="reg.filters = {'accuracy': (0.5, 1.0)}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(2, 2)  # no tooltip over the pictures
    for view, name in [
        (".cnc-provenance", "dashboard-provenance-dark.png"),
        (".cnc-filter-panel", "dashboard-filters-dark.png"),
        (".cnc-details", "dashboard-details-dark.png"),
        (".cnc-scatter", "dashboard-scatter-dark.png"),
        (".cnc-diff", "dashboard-diff-dark.png"),
    ]:
        page.locator(view).scroll_into_view_if_needed()
        page.locator(view).screenshot(path=str(SHOTS / name))
        background = page.eval_on_selector(view, "e => getComputedStyle(e).backgroundColor")
        text = page.eval_on_selector(view, "e => getComputedStyle(e).color")
        dark = [int(v) for v in background.split("(")[1].rstrip(")").split(",")[:3]]
        light = [int(v) for v in text.split("(")[1].rstrip(")").split(",")[:3]]
        assert sum(dark) < 200 and sum(light) > 450, (view, background, text)
    label = page.eval_on_selector(
        ".cnc-provenance .cnc-node-label", "e => getComputedStyle(e).fill"
    )
    assert sum(int(v) for v in label.split("(")[1].rstrip(")").split(",")[:3]) > 450
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme', "
        "{theme: 'JupyterLab Light'})"
    )
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'")
    kernel_eval(page, "1", code="reg.filters = {}; reg.selected = []")
