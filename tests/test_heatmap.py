"""The layers view's data (ActivationHeatmap), the one-pass layer table and the histogram chart."""

from __future__ import annotations

import copy

import altair as alt
import numpy as np
import pandas as pd
import pytest
import torch

import cnc_widgets as cnc
from cnc_widgets.evaluate.activations import paired_activation_stats
from cnc_widgets.metrics.layers import cka_between, layer_table, layers_and_cka

N = 160  # instances: enough for two batches and for CKA, quick on a shared machine


@pytest.fixture(scope="module")
def small(digits):
    return digits.test_inputs[:N], digits.test_labels[:N]


def _edited(model: torch.nn.Module) -> torch.nn.Module:
    """A child whose first BatchNorm is gone and whose head gained a module."""
    child = copy.deepcopy(model)
    child.features[1] = torch.nn.Identity()
    extra = torch.nn.Linear(10, 10)
    with torch.no_grad():
        extra.weight.copy_(torch.eye(10))
        extra.bias.zero_()
    child.classifier.append(extra)
    return child


@pytest.fixture(scope="module")
def reg(small, digits_cnn):
    x, y = small
    r = cnc.ModelRegistry()
    r.set_data(x, y, batch_size=64)
    r.add("base", copy.deepcopy(digits_cnn))
    r.compress("base", "prune", amount=0.5, scope="tensor", include_norms=True, name="p50")
    r.compress("base", "quantize_dynamic", name="int8")
    r.add("edited", _edited(digits_cnn), parent="base", operation="edit")
    r.evaluate(progress=False)
    return r


def test_one_pass_matches_separate_passes(reg, small):
    x, _ = small
    a, b = reg.model("base"), reg.model("p50")
    mods = ["features.0", "features.3", "classifier.1"]
    table, matrix = layers_and_cka(a, b, x, batch_size=64, cka_modules=(mods, mods[::-1]))
    names = list(table.index)
    change = paired_activation_stats(a, b, x, pairs=names, batch_size=64).as_dict()
    cka = cka_between(a, b, x, names, batch_size=64)
    assert np.allclose(table["activation_rel_change"], pd.Series(change)[names], rtol=1e-6)
    assert np.allclose(table["cka"], cka[names], atol=1e-9)
    expected = cka_between(a, b, x, mods, mods[::-1], batch_size=64, matrix=True)
    pd.testing.assert_frame_equal(matrix, expected, atol=1e-9)
    # Modules on the matrix's diagonal take their CKA from it: the same value.
    assert table.loc["features.0", "cka"] == pytest.approx(matrix.loc["features.0", "features.0"])
    plain = layer_table(a, b, x, batch_size=64)
    pd.testing.assert_frame_equal(plain, table)
    # Batching does not change exact CKA.
    other = layer_table(a, b, x, batch_size=50)
    assert np.allclose(other["cka"], table["cka"], atol=1e-9)


def test_comparison_layers_fill_the_default_cka_matrix(reg, monkeypatch):
    cmp = reg.compare("base", "p50")
    layers = cmp.layers
    import cnc_widgets.comparison as comparison

    def forbidden(*args, **kwargs):
        raise AssertionError("the CKA matrix was computed again")

    monkeypatch.setattr(comparison, "cka_between", forbidden)
    matrix = cmp.cka_matrix()
    layers = layers[layers["row_type"] == "parameters"]  # the default matrix: modules with weights
    assert list(matrix.index) == list(layers.index)
    diagonal = np.diag(matrix.loc[layers.index, layers.index].to_numpy())
    assert np.allclose(diagonal, layers["cka"], atol=1e-9)


def test_histogram_chart_is_altair_with_the_counts(reg):
    cmp = reg.compare("base", "p50")
    chart = cmp.histogram_chart("features.1", bins=16)
    assert isinstance(chart, alt.VConcatChart)
    spec = chart.to_dict()
    weights, acts = spec["vconcat"]
    assert weights["title"] == "weights of features.1"
    hist = cmp.histograms("features.1", bins=16)
    values = spec["datasets"][weights["data"]["name"]]
    base = sum(v["count"] for v in values if v["model"] == "base")
    assert base == hist["weights"]["a"].sum() == 32  # BatchNorm(16): weight and bias
    zero_bin = [v for v in values if v["left"] <= 0 <= v["right"] and v["model"] == "p50"]
    assert zero_bin[0]["count"] >= 16  # half of the norm's parameters pruned to zero
    assert acts["title"]["text"].startswith("activations of features.1")
    domain = weights["encoding"]["color"]["scale"]["domain"]
    assert domain == ["base", "p50"]


def _column(entry, name):
    return np.frombuffer(entry["values"][name], dtype="<f4")


def test_payload_columns_and_one_model_rows(reg):
    heat = cnc.ActivationHeatmap(reg, "base", ["p50", "int8", "edited"])
    assert heat.models == ["base", "p50", "int8", "edited"]
    assert heat.message == ""
    payload = heat.layers
    rows = payload["rows"]
    table = reg.compare("base", "p50").layers
    assert rows[: len(table)] == list(table.index)
    entry = payload["by_model"]["p50"]
    for column in ["zero_b_only", "weight_rel_change", "activation_rel_change", "cka"]:
        got = _column(entry, column)[: len(table)]
        assert np.allclose(got, table[column].to_numpy(dtype=np.float32), equal_nan=True)
    assert _column(entry, "zero_b_only")[rows.index("features.1")] == pytest.approx(0.5)
    # The edited child lost features.1 and gained classifier.4: listed, not dropped.
    edited = payload["by_model"]["edited"]
    status = dict(zip(rows, edited["status"], strict=True))
    note = dict(zip(rows, edited["note"], strict=True))
    assert status["features.1"] == "only_a" and note["features.1"] == "only in base"
    assert status["classifier.4"] == "only_b" and note["classifier.4"] == "only in edited"
    assert status["features.0"] == "both"
    assert payload["params"][rows.index("classifier.4")] == 110
    # Rows another model lacks are marked in p50's column, not left blank.
    assert dict(zip(rows, entry["status"], strict=True))["classifier.4"] == "absent"
    assert np.isnan(_column(edited, "cka")[rows.index("features.1")])
    cka = heat.cka["p50"]
    values = np.frombuffer(cka["values"], dtype="<f4").reshape(len(cka["rows"]), -1)
    assert values.shape == (6, 6) and np.all(np.diag(values) > 0.5)


def test_detail_request_sends_chart_and_numbers(reg):
    heat = cnc.ActivationHeatmap(reg, "base", "p50")
    heat.detail_request = {"module": "classifier.1", "model": "p50"}
    detail = heat.detail
    assert detail["module"] == "classifier.1" and "error" not in detail
    assert detail["numbers"]["kind"] == "Linear"
    table = reg.compare("base", "p50").layers
    assert detail["numbers"]["cka"] == pytest.approx(table.loc["classifier.1", "cka"])
    assert detail["spec"]["vconcat"][0]["title"] == "weights of classifier.1"
    heat.detail_request = {"module": "features.1", "model": "ghost"}
    assert heat.detail == {}
    edited = cnc.ActivationHeatmap(reg, "base", "edited")
    edited.detail_request = {"module": "classifier.4", "model": "edited"}
    assert "error" not in edited.detail and edited.detail["numbers"]["params"] == 110
    spec = edited.detail["spec"]
    counts = spec["datasets"][spec["vconcat"][0]["data"]["name"]]
    assert sum(v["count"] for v in counts if v["model"] == "base") == 0  # only in edited


def test_follows_selection_and_says_what_to_do(reg):
    heat = cnc.ActivationHeatmap(reg)
    reg.selected = []
    assert heat.layers == {} and "reg.selected" in heat.message
    reg.selected = ["base", "int8"]
    assert heat.models == ["base", "int8"]
    assert heat.layers["compared"] == ["int8"]
    reg.selected = ["p50", "base", "int8"]
    assert heat.models == ["p50", "base", "int8"]
    assert heat.layers["reference"] == "p50"
    reg.selected = []


def test_bad_arguments(reg):
    with pytest.raises(ValueError, match="reference model a"):
        cnc.ActivationHeatmap(reg, b="p50")
    with pytest.raises(ValueError, match="up to 4"):
        cnc.ActivationHeatmap(reg, "base", ["p50", "int8", "edited", "p50", "int8"])
    with pytest.raises(KeyError, match="ghost"):
        cnc.ActivationHeatmap(reg, "base", "ghost")


def test_lazy_view_runs_models_once_shown_and_joins_the_dashboard(reg):
    heat = cnc.ActivationHeatmap(reg, "base", "int8", lazy=True)
    assert heat.layers == {} and "when the view is shown" in heat.message
    heat.active = True  # what the browser sends when it draws the view
    assert heat.layers["compared"] == ["int8"] and heat.message == ""
    board = cnc.dashboard(reg)
    assert isinstance(board.heatmap, cnc.ActivationHeatmap) and not board.heatmap.active
