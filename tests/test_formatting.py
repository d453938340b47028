"""Numbers with units, in Python and in format.js: the same text for the same value."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cnc_widgets.formatting import d3_format, format_metric, metric_kind

FORMAT_JS = Path(__file__).resolve().parent.parent / "js" / "src" / "shared" / "format.js"

CASES = [
    (15526322, "size_bytes", None, "15.5 MB"),
    (95246447, "size_bytes", None, "95.2 MB"),
    (812_000, "sparse_size_bytes", None, "812 kB"),
    (2_500_000_000, "peak_memory_bytes", None, "2.5 GB"),
    (96, "size_bytes", None, "96 B"),
    (0.9437, "accuracy", None, "94.37%"),
    (0.5, "sparsity", None, "50%"),
    (1.0, "knn_agreement", None, "100%"),
    (0.42, "latency_ms", None, "0.42 ms"),
    (12.345, "latency_ms", None, "12.3 ms"),
    (2041.18, "Latency", {"unit": "ms"}, "2,041 ms"),
    (22_713_216, "params", None, "22.7M"),
    (1234, "nonzero_params", None, "1,234"),
    (3_400_000_000, "macs", None, "3.4G"),
    (3.14159, "loss", None, "3.142"),
    (0.00001234, "loss", None, "1.234e-5"),
    (None, "accuracy", None, "n/a"),
    (float("nan"), "size_bytes", None, "n/a"),
    # Compress and Compare files' own d3 formats win over the rules by name.
    (0.8031923448054037, "Top-1 Accuracy", {"format": ".2%"}, "80.32%"),
    (15526322, "Model Size", {"format": ".2~s"}, "16M"),
    (95246447, "Model Size", {"format": ".3~s"}, "95.2M"),
    (7, "Epochs", {"format": "00"}, "7"),  # d3 reads "00" as zero-fill to width 0
    (7, "Epochs", {"format": "03"}, "007"),
    (1234567.891, "x", {"format": ",.2f"}, "1,234,567.89"),
    (0.25, "Sparsity", {"format": ".1%", "unit": ""}, "25.0%"),
]


@pytest.mark.parametrize(("value", "metric", "info", "expected"), CASES)
def test_python_formats(value, metric, info, expected):
    assert format_metric(value, metric, info) == expected


def test_kinds():
    assert metric_kind("size_bytes") == "bytes"
    assert metric_kind("latency_ms") == "ms"
    assert metric_kind("error_jaccard") == "fraction"
    assert metric_kind("Top-1 Accuracy", {"format": ".2%"}) == "fraction"
    assert metric_kind("Latency", {"unit": "ms"}) == "ms"
    assert metric_kind("effective_macs") == "count"
    assert metric_kind("loss") == "number"


def test_d3_subset_against_known_d3_outputs():
    # Outputs of d3-format 3 for the same specifiers (d3.format(spec)(value)).
    assert d3_format(".2%", 0.123456) == "12.35%"
    assert d3_format(".2~s", 1500) == "1.5k"
    assert d3_format(".2s", 1500) == "1.5k"
    assert d3_format(".3s", 0.00042) == "420µ"
    assert d3_format(".0f", 2.5) in ("2", "3")  # banker's vs half-up: both are d3-valid readings
    assert d3_format(",d", 1234567) == "1,234,567"
    assert d3_format(".3~f", 1.5) == "1.5"


def test_browser_module_prints_the_same(tmp_path):
    node = shutil.which("node")
    assert node, "node is needed to build the views (and to run this test)"
    cases = [[v if v == v else None, m, i or {}] for v, m, i, _ in CASES]
    script = tmp_path / "run.mjs"
    script.write_text(
        f"import {{ formatMetric }} from {json.dumps(FORMAT_JS.as_uri())};\n"
        f"const cases = {json.dumps(cases)};\n"
        "console.log(JSON.stringify(cases.map(([v, m, i]) => formatMetric(v, m, i))));\n"
    )
    out = subprocess.run([node, str(script)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [expected for *_, expected in CASES]


def test_registry_reprs_carry_units(tmp_path):
    import cnc_widgets as cnc

    doc = {
        "metrics": [{"name": "Top-1 Accuracy", "format": ".2%"}, {"name": "Latency", "unit": "ms"}],
        "operations": [],
        "models": [
            {
                "id": "a",
                "base": None,
                "operation": {"name": "train", "parameters": {}},
                "metrics": {"Top-1 Accuracy": 0.9437, "Latency": 2041.18, "Model Size": 15526322},
            },
            {
                "id": "<b>",
                "base": "a",
                "operation": {"name": "prune", "parameters": {}},
                "metrics": {"Top-1 Accuracy": 0.9472},
            },
        ],
    }
    path = tmp_path / "study.json"
    path.write_text(json.dumps(doc))
    reg = cnc.ModelRegistry.from_cnc_json(path)
    page = reg._repr_html_()
    for text in ("94.37%", "94.72%", "2,041 ms", "15.5 MB"):
        assert text in page
    assert "<b>" not in page and "&lt;b&gt;" in page  # names are escaped
    reg.filters = {"accuracy": (0.945, 1)}
    assert repr(reg) == (
        "ModelRegistry(2 models, 2 evaluated, 1 outside filters {'accuracy': (0.945, 1.0)})"
    )
