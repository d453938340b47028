"""reg.comparability and the selection details built on it, on real pruned digits CNNs."""

from __future__ import annotations

import pytest

import cnc_widgets as cnc
from cnc_widgets.provenance.comparability import differences_sentence
from cnc_widgets.widgets.details import details_state, varying_parameter


@pytest.fixture(scope="module")
def reg(digits, digits_cnn):
    reg = cnc.ModelRegistry()
    reg.set_data(digits.test_inputs[:120], digits.test_labels[:120])
    reg.add("base", digits_cnn)
    for amount in (0.3, 0.5, 0.7):
        reg.compress("base", "prune", amount=amount, name=f"p{int(amount * 100)}")
    reg.compress("base", "prune", amount=0.7, scope="tensor", name="p70-tensor")
    reg.compress("p50", "quantize_dynamic", name="p50-int8")
    reg.evaluate(progress=False)
    return reg


def test_one_parameter_differs(reg):
    table = reg.comparability(["p30", "p50", "p70"])
    differing = table.index[table["status"] == "differs"].tolist()
    assert differing == ["prune: amount"]
    assert table.loc["prune: amount", ["p30", "p50", "p70"]].tolist() == [0.3, 0.5, 0.7]
    assert table.loc["prune: scope", "status"] == "shared"
    assert table.loc["root", ["p30", "p50", "p70"]].tolist() == ["base"] * 3
    assert differences_sentence(table) is None
    assert varying_parameter(table) == "prune: amount"


def test_two_parameters_differ_warns(reg):
    table = reg.comparability(["p50", "p70-tensor"])
    assert sorted(table.index[table["status"] == "differs"]) == ["prune: amount", "prune: scope"]
    sentence = differences_sentence(table)
    assert sentence.startswith("these differ in amount and in scope")
    assert varying_parameter(table) is None


def test_an_extra_operation_is_one_difference(reg):
    table = reg.comparability(["p50", "p50-int8"])
    assert table.index[table["status"] == "differs"].tolist() == ["quantize_dynamic"]
    assert table.loc["quantize_dynamic", "p50"] is None
    assert "qint8" in table.loc["quantize_dynamic", "p50-int8"]
    # The root against its child: the child's operation is the one difference.
    table = reg.comparability(["base", "p30"])
    assert table.index[table["status"] == "differs"].tolist() == ["prune"]


def test_defaults_to_selection_and_checks_names(reg):
    reg.selected = ["p30", "p70"]
    assert list(reg.comparability().columns) == ["p30", "p70", "status"]
    reg.selected = []
    with pytest.raises(ValueError, match="at least one"):
        reg.comparability([])
    with pytest.raises((KeyError, ValueError), match="nope"):
        reg.comparability(["nope"])


def test_details_state(reg):
    assert details_state(reg, [])["mode"] == "empty"
    one = details_state(reg, ["p50-int8"])
    assert [s["name"] for s in one["chain"]] == ["base", "p50", "p50-int8"]
    texts = {m["metric"]: m["text"] for m in one["metrics"]}
    acc = float(reg.metrics().loc["p50-int8", "accuracy"])
    assert texts["accuracy"] == f"{acc * 100:.2f}".rstrip("0").rstrip(".") + "%"
    assert texts["size_bytes"].endswith(("kB", "MB"))
    many = details_state(reg, ["p30", "p50", "p70"])
    assert many["warning"] is None and many["varying"] == "prune: amount"
    charts = {c["title"]: c for c in many["charts"]}
    assert "accuracy" in charts
    chart = charts["accuracy"]
    assert chart["encoding"]["x"]["title"] == "amount"
    rows = next(iter(chart["datasets"].values()))
    assert sorted(r["x"] for r in rows) == ["0.3", "0.5", "0.7"]
    truth = reg.metrics().loc[["p30", "p50", "p70"], "accuracy"].tolist()
    assert [r["value"] for r in rows] == pytest.approx(truth)
    warned = details_state(reg, ["p50", "p70-tensor"])
    assert "amount and in scope" in warned["warning"]
    widget = cnc.SelectionDetails(reg)
    reg.selected = ["p30", "p50", "p70"]
    assert widget.details["mode"] == "many" and len(widget.charts()) == len(many["charts"])
    # Returned to users, they display with the bundled vega (no CDN), still altair charts.
    for chart in widget.charts():
        assert "application/vnd.jupyter.widget-view+json" in chart._repr_mimebundle_()[0]
    reg.selected = []
