"""An exported report opens in Chromium with the network cut off: views render and link.

The notebook is executed for real (nbclient, a real kernel, the digits CNN), exported with
:func:`cnc_widgets.export_report`, and opened from a file:// URL with every other request
aborted through Playwright's ``page.route``.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import cnc_widgets as cnc

from .lab import write_notebook

pytestmark = pytest.mark.browser

# Untrusted text that would run if any view or summary inserted it as markup.
PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
MODEL_PAYLOAD = "<img src=x onerror=window.__pwned=3>"
# Views whose marks stand for models, by root class, and the classes that draw them.
MODEL_VIEWS = {"cnc-provenance": "ProvenanceGraph", "cnc-scatter": "EfficiencyScatter"}
OTHER_VIEWS = {"cnc-diff": "PredictionDiff", "cnc-heatmap": "ActivationHeatmap"}
AVAILABLE = {
    cls: name for cls, name in {**MODEL_VIEWS, **OTHER_VIEWS}.items() if name in cnc.__all__
}
if "dashboard" in cnc.__all__:
    SHOW = ["cnc.dashboard(reg)"]
    SHOW += [f"cnc.{n}(reg)" for n in AVAILABLE.values() if n == "ActivationHeatmap"]
else:
    SHOW = [f"cnc.{n}(reg)" for n in AVAILABLE.values()]

CELLS = [
    "import cnc_widgets as cnc\nfrom cnc_widgets import examples",
    "data = examples.digits()\nbase = examples.train_digits_cnn(data, epochs=5)",
    f"""instances = [f"digit {{int(y)}}" for y in data.test_labels]
instances[0] = {PAYLOAD!r}
reg = cnc.ModelRegistry()
reg.set_data(data.test_inputs, data.test_labels, classes=data.classes, instances=instances)
reg.add("base", base)
reg.compress("base", "prune", amount=0.5, name="pruned")
reg.compress("base", "quantize_dynamic", name={MODEL_PAYLOAD!r})
reg.compress("base", "half", name="fp16")
reg.evaluate(progress=False)
reg.selected = ["base", "pruned"]""",
    *SHOW,
    # A chart returned to the user: drawn by the bundled vega, not altair's CDN renderer.
    "reg.compare('base', 'pruned').histogram_chart('features.0')",
    # A provenance view of its own, last: where the test clicks.
    "cnc.show_provenance(reg, color_by='size_bytes')",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    write_notebook(folder / "report.ipynb", CELLS)
    return cnc.export_report(folder / "report.ipynb", folder / "report.html", execute=True)


class _References(HTMLParser):
    """Every src/href of an element and the text of every <style>, as a browser parses them."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.css: list[str] = []
        self.scripts = 0
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self._in_style = tag == "style"
        self.urls += [(tag, v or "") for k, v in attrs if k in ("src", "href")]

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)


def test_report_file_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    refs = _References()
    refs.feed(text)
    assert refs.scripts >= 5  # require.js, the manager, anywidget, the loader, the state
    # No script or stylesheet is fetched: none has a src, no link points anywhere remote.
    assert [u for tag, u in refs.urls if tag in ("script", "link", "img", "iframe")] == []
    assert [u for _, u in refs.urls if re.match(r"\s*(https?:)?//", u)] == []
    css = re.sub(r"/\*.*?\*/", "", "".join(refs.css), flags=re.DOTALL)
    assert not re.search(r"@import|url\(\s*[\"']?(?:https?:)?//", css)
    assert 'type="application/vnd.jupyter.widget-state+json"' in text
    assert "cnc-provenance" in text  # the view's bundle travels in the widget state
    assert report.stat().st_size < 15_000_000


def _open(browser, report):
    page = browser.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        requests.append(r.request.url)
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            r.abort()

    page.route("**/*", route)
    page.goto(report.as_uri())
    page.wait_for_function("() => document.documentElement.getAttribute('data-cnc-report')")
    return page, requests, errors


def test_report_renders_offline_and_links_selection(browser, report, tmp_path):
    page, requests, errors = _open(browser, report)
    try:
        assert page.get_attribute("html", "data-cnc-report") == "rendered"
        for cls in AVAILABLE:
            page.wait_for_selector(f".{cls}")
        for cls in (c for c in AVAILABLE if c in MODEL_VIEWS):
            page.wait_for_selector(f".{cls} [data-model]")
        # The returned chart is drawn offline, as SVG, with no script error.
        chart = page.locator(".cnc-vega-chart").first
        page.wait_for_selector(".cnc-vega-chart[data-rendered]")
        assert chart.get_attribute("data-rendered") == "true"
        assert chart.locator("svg .mark-rect path").count() > 0
        assert "weights of features.0" in chart.locator("svg").text_content()
        assert "Error loading script" not in page.inner_text("body")
        # The dashboard's layers view computed while the notebook ran for export: its rows
        # are there, and it says what the report leaves out.
        if "cnc-heatmap" in AVAILABLE:
            board_layers = page.locator(".cnc-heatmap").first
            board_layers.locator("[data-layer]").first.wait_for()
            note = board_layers.locator(".cnc-hm-message").first.inner_text()
            assert "when the view is shown" not in note and "Computed for the report" in note
        # The summaries stood in until the views rendered, then made way.
        assert page.locator(".cnc-report-summary").count() == 0
        graphs = page.locator(".cnc-provenance")
        assert graphs.count() >= 2
        clicked = graphs.last
        names = sorted(
            clicked.locator("[data-model]").evaluate_all(
                "els => els.map(e => e.getAttribute('data-model'))"
            )
        )
        assert names == sorted(["base", "pruned", MODEL_PAYLOAD, "fp16"])
        marks = {
            cls: page.locator(f'.{cls} [data-model="fp16"]')
            for cls in AVAILABLE
            if cls in MODEL_VIEWS
        }
        # The selection made in the kernel before export is shown by every view.
        for cls in marks:
            pruned = page.locator(f'.{cls} [data-model="pruned"]').first
            assert pruned.get_attribute("aria-selected") == "true", cls
        # A click in one view selects in the others, through the embedded state alone.
        clicked.locator('[data-model="fp16"]').click()
        page.wait_for_function(
            """() => [...document.querySelectorAll('.cnc-provenance, .cnc-scatter')]
                     .every(v => v.querySelector('[data-model="fp16"]')
                                  .getAttribute('aria-selected') === 'true')"""
        )
        for cls, mark in marks.items():
            assert mark.first.get_attribute("aria-selected") == "true", cls
            base = page.locator(f'.{cls} [data-model="base"]').first
            assert base.get_attribute("aria-selected") == "false", cls
        # Untrusted names and instance texts stay text.
        assert page.evaluate("() => window.__pwned") is None
        label = clicked.locator(f'[data-model="{MODEL_PAYLOAD}"] text').first.text_content()
        assert label.startswith("<img")
        if "cnc-diff" in AVAILABLE:  # the instance table shows the payload as its text
            page.wait_for_selector(".cnc-diff [data-instance]")
            assert "<script>window.__pwned = 1" in page.locator(".cnc-diff").inner_text()
        assert errors == []
        assert [u for u in requests if not u.startswith("file://")] == []
        # Nor does anything the scripts added point at the network.
        remote = page.evaluate(
            """() => [...document.querySelectorAll('script[src], link[href]')]
                   .map(e => e.src || e.href).filter(u => /^(https?:)?\\/\\//.test(u))"""
        )
        assert remote == []
        out = Path(os.environ.get("CNC_SCREENSHOTS", tmp_path))
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / "report.png"), full_page=True)
    finally:
        page.close()
