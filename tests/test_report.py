"""Reports and view summaries without a browser: what the HTML file holds, what a repr shows.

The browser half (rendering offline, linked selection) is tests/browser/test_report_browser.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import nbformat
import pytest
import torch
from ipywidgets.embed import embed_data

import cnc_widgets as cnc
from cnc_widgets import examples
from cnc_widgets.widgets._sync import registry_key
from cnc_widgets.widgets.report import anywidget_amd, report_assets

PAYLOAD = "</script><script>alert(1)</script>"


@pytest.fixture(scope="module")
def reg():
    data = examples.digits()
    torch.manual_seed(0)
    r = cnc.ModelRegistry()
    r.set_data(data.test_inputs, data.test_labels, classes=data.classes)
    r.add("base", examples.train_digits_cnn(data, epochs=3))
    r.compress("base", "prune", amount=0.5, name="pruned")
    r.compress("base", "half", name=PAYLOAD)
    r.evaluate(progress=False)
    return r


def test_summary_is_a_table_of_the_models(reg):
    reg.selected = ["pruned"]
    graph = cnc.show_provenance(reg, color_by="size_bytes")
    data, _ = graph._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data  # the widget still renders
    summary = data["text/html"]
    rows = re.findall(r"<tr><th>(.*?)</th>(.*?)</tr>", summary.split("<tbody>")[1])
    escaped = "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert [name for name, _ in rows] == ["base", "pruned", escaped]
    # The pruned row says it is selected; its size is the registry's.
    pruned = dict(rows)["pruned"]
    assert pruned.startswith("<td>yes</td>")
    size = reg.metrics().loc["pruned", "size_bytes"]
    assert f"<td>{int(size)}</td>" in pruned
    assert "coloured by size_bytes" in summary
    assert "<script>" not in summary


def test_views_of_one_registry_share_a_key(reg):
    a, b = cnc.show_provenance(reg), cnc.show_provenance(reg)
    other = cnc.ModelRegistry()
    assert a._registry_key == b._registry_key == registry_key(reg)
    assert registry_key(other) != registry_key(reg)


def test_assets_are_inlinable():
    assets = report_assets()
    assert set(assets) == {"require_js", "html_manager_js", "anywidget_js", "loader_js"}
    assert 'define("@jupyter-widgets/html-manager"' in assets["html_manager_js"]
    assert anywidget_amd().count('define("anywidget", ["@jupyter-widgets/base"]') == 1
    for text in assets.values():
        assert "</script" not in text.lower()
        assert "sourceMappingURL=" not in "\n".join(
            line for line in text.splitlines() if line.startswith("//#")
        )


def _notebook_with(widget, folder):
    """A notebook as a kernel would save it: the widget's output and the widget state."""
    state = embed_data(views=[widget])
    nb = nbformat.v4.new_notebook()
    data, _ = widget._repr_mimebundle_()
    out = nbformat.v4.new_output("display_data", data=data)
    nb.cells = [nbformat.v4.new_code_cell("cnc.show_provenance(reg)", outputs=[out])]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": state["manager_state"]}
    path = folder / "saved.ipynb"
    nbformat.write(nb, path)
    return path


def test_export_embeds_state_and_inlines_scripts(reg, tmp_path):
    graph = cnc.show_provenance(reg)
    html = cnc.export_report(_notebook_with(graph, tmp_path), tmp_path / "out.html")
    text = html.read_text()
    assert not re.search(r"<script[^>]*\ssrc=", text)
    assert "cdn.jsdelivr.net/npm/@jupyter-widgets" not in text.split("define(")[0]
    state = re.search(
        r'<script type="application/vnd.jupyter.widget-state\+json">\s*(.*?)\s*</script>',
        text,
        flags=re.DOTALL,
    ).group(1)
    models = json.loads(state)["state"]
    assert models[graph.model_id]["state"]["_registry_key"] == registry_key(reg)
    names = [n["name"] for n in models[graph.model_id]["state"]["nodes"]]
    assert PAYLOAD in names  # the name travels as data...
    assert PAYLOAD not in text  # ...escaped, so it cannot close the script element
    assert text.count('<div class="cnc-report-summary">') == 1  # shown until the view renders


def test_cli_prints_the_size(reg, tmp_path):
    path = _notebook_with(cnc.show_provenance(reg), tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "cnc_widgets", "report", str(path), "-o", str(tmp_path / "r.html")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    size = (tmp_path / "r.html").stat().st_size
    assert re.search(rf"r\.html \({size / 1e6:.1f} MB, opens offline\)", out), out


def test_missing_notebook_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebook at"):
        cnc.export_report(tmp_path / "nope.ipynb", tmp_path / "x.html")


def test_export_without_state_or_execute_says_so(reg, tmp_path):
    path = _notebook_with(cnc.show_provenance(reg), tmp_path)
    nb = nbformat.read(path, as_version=4)
    del nb.metadata["widgets"]  # saved without widget state, as JupyterLab does by default
    nbformat.write(nb, path)
    with pytest.warns(UserWarning, match=r"static summaries.*execute=True.*save the widget state"):
        cnc.export_report(path, tmp_path / "bare.html")
    # With the state saved, nothing to warn about.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cnc.export_report(_notebook_with(cnc.show_provenance(reg), tmp_path), tmp_path / "s.html")
