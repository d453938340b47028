"""The layers view's data (ActivationHeatmap), the one-pass layer table and the histogram chart."""

from __future__ import annotations

import copy
import json
import pickle

import altair as alt
import numpy as np
import pandas as pd
import pytest
import torch

import cnc_widgets as cnc
from cnc_widgets.compress import apply_operation
from cnc_widgets.metrics.layers import cka_between, layer_table, layers_and_cka
from cnc_widgets.widgets._wire import unpack

from .reference_activations import paired_activation_stats

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
    import cnc_widgets.comparison.modules as comparison

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
    return unpack(entry["values"][name])


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
    # prune zeroes weights only: half of the BatchNorm weight, none of its bias = 1/4 of it
    assert _column(entry, "zero_b_only")[rows.index("features.1")] == pytest.approx(0.25)
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
    values = unpack(cka["values"]).reshape(len(cka["rows"]), -1)
    assert values.shape == (6, 6) and np.all(np.diag(values) > 0.5)


def test_detail_request_sends_chart_and_numbers(reg):
    heat = cnc.ActivationHeatmap(reg, "base", "p50")
    heat._detail_request = {"module": "classifier.1", "model": "p50"}
    detail = heat._detail
    assert detail["module"] == "classifier.1" and "error" not in detail
    assert detail["numbers"]["kind"] == "Linear"
    table = reg.compare("base", "p50").layers
    assert detail["numbers"]["cka"] == pytest.approx(table.loc["classifier.1", "cka"])
    assert detail["spec"]["vconcat"][0]["title"] == "weights of classifier.1"
    heat._detail_request = {"module": "features.1", "model": "ghost"}
    assert heat._detail == {}
    edited = cnc.ActivationHeatmap(reg, "base", "edited")
    edited._detail_request = {"module": "classifier.4", "model": "edited"}
    assert "error" not in edited._detail and edited._detail["numbers"]["params"] == 110
    spec = edited._detail["spec"]
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


def test_histogram_chart_displays_with_the_bundled_vega(reg):
    # altair's renderer would load vega-embed from a CDN: the chart shows as the library's
    # chart widget instead, which carries the same spec and the bundled vega in its module.
    chart = reg.compare("base", "p50").histogram_chart("features.1", bins=16)
    data, _ = chart._repr_mimebundle_(include=None, exclude=None)
    assert "application/vnd.jupyter.widget-view+json" in data
    assert not any(k.startswith("application/vnd.vegalite") for k in data)
    assert "cdn.jsdelivr" not in json.dumps({k: v for k, v in data.items() if k != "text/plain"})
    from cnc_widgets.widgets.chart import VegaChart

    view = VegaChart(chart)
    assert view.spec == chart.to_dict() and view.chart is chart
    assert "vega" in view._esm and "cdn.jsdelivr.net/npm/vega" not in view._esm
    # Still altair: restyled copies and round trips keep both the class and the display.
    wider = chart.properties(title="restyled")
    assert isinstance(wider, alt.VConcatChart)
    assert "application/vnd.jupyter.widget-view+json" in wider._repr_mimebundle_()[0]
    again = pickle.loads(pickle.dumps(chart))
    assert again.to_dict() == chart.to_dict() and isinstance(again, alt.VConcatChart)


def test_lazy_view_computes_while_a_report_is_executed(reg, monkeypatch):
    # export_report(execute=True) runs the kernel with this variable: no frontend draws the
    # dashboard there, so its layers view computes what the report shows.
    monkeypatch.setenv("CNC_WIDGETS_EXPORT", "1")
    heat = cnc.ActivationHeatmap(reg, "base", ["p50", "int8"], lazy=True)
    assert heat.active and heat.layers["compared"] == ["p50", "int8"]
    expected = reg.compare("base", "int8").layers["weight_rel_change"].to_numpy(np.float32)
    got = _column(heat.layers["by_model"]["int8"], "weight_rel_change")[: len(expected)]
    assert np.allclose(got, expected, equal_nan=True)
    # The costly CKA matrix only for the first compared model, and the panel says so.
    assert list(heat.cka) == ["p50"]
    assert "CKA matrix of p50 only (not int8)" in heat.message
    assert "Module histograms" in heat.message
    board = cnc.dashboard(reg)
    reg.selected = ["base", "p50"]
    assert board.heatmap.layers["compared"] == ["p50"] and list(board.heatmap.cka) == ["p50"]
    reg.selected = []


# -- the damage mode ------------------------------------------------------------------------


def _noised(model: torch.nn.Module, module: str, scale: float) -> torch.nn.Module:
    """Pruned 30% (every layer changes a little), and one layer damaged on purpose: Gaussian
    noise of ``scale`` times its weights' std. Restoring the damaged layer's group alone is
    then a suggestion that is not just the reference again."""
    model = apply_operation(model, "prune", amount=0.3)
    torch.manual_seed(0)
    weight = model.get_submodule(module).weight
    with torch.no_grad():
        weight.add_(torch.randn_like(weight) * weight.std() * scale)
    return model


@pytest.fixture(scope="module")
def damaged(small, digits_cnn):
    x, y = small
    r = cnc.ModelRegistry()
    r.set_data(x, y, batch_size=64)
    r.add("base", copy.deepcopy(digits_cnn))
    r.compress("base", _noised, module="features.3", scale=3.0, name="damaged")
    r.compress("base", "prune", amount=0.3, name="pruned")
    r.evaluate(progress=False)
    return r


def _table_of(payload: dict) -> pd.DataFrame:
    """The payload's table back as a DataFrame (None back to NaN in the float columns)."""
    table = pd.DataFrame(payload["table"])
    floats = ["proxy", "quality_restored", "recovered", "kl_restored"]
    for c in floats:
        table[c] = table[c].astype(float)
    return table


@pytest.mark.parametrize("groups", ["auto", "module"])
def test_damage_payload_is_the_sensitivity_table(damaged, groups):
    heat = cnc.ActivationHeatmap(damaged, "base", ["damaged", "pruned"])
    assert heat._damage == {}  # nothing measured until the mode asks
    heat._damage_request = {"model": "damaged", "groups": groups, "at": 7}
    payload = heat._damage
    assert "error" not in payload and payload["at"] == 7 and not heat.busy
    expected = damaged.compare("base", "damaged").sensitivity(groups=groups)
    got = _table_of(payload)
    pd.testing.assert_frame_equal(got[list(expected.columns)], expected, check_dtype=False)
    attrs = payload["attrs"]
    assert attrs["n_rows"] == len(expected.attrs["rows"]) == N
    for key in ["metric", "better", "quality_a", "quality_b", "restore_runs", "top"]:
        assert attrs[key] == expected.attrs[key]
    # The qualities on the rows, directly: accuracy of a and b on the N instances.
    x, y = damaged.data.inputs, damaged.data.labels
    with torch.no_grad():
        for name, key in [("base", "quality_a"), ("damaged", "quality_b")]:
            acc = float((damaged.model(name)(x).argmax(1).numpy() == np.asarray(y)).mean())
            assert attrs[key] == pytest.approx(acc)
    # Each layer row points at the first (worst) group that holds it.
    rows = heat.layers["rows"]
    for row, index in zip(rows, payload["module_group"], strict=True):
        holding = [i for i, mods in enumerate(expected["modules"]) if row in mods]
        assert index == (holding[0] if holding else -1)
    worst = payload["worst"]
    assert worst == 0 and "features.3" in expected.loc[0, "modules"]
    assert payload["suggest"] == {"ok": True, "why": ""}
    spec = payload["spec"]
    assert [v["group"] for v in next(iter(spec["datasets"].values()))] == list(
        expected.loc[expected["recovered"].notna(), "group"]
    )


def test_damage_request_for_an_unknown_model_or_grouping_is_ignored(damaged):
    heat = cnc.ActivationHeatmap(damaged, "base", "damaged")
    heat._damage_request = {"model": "ghost", "groups": "auto"}
    heat._damage_request = {"model": "damaged", "groups": "by-magic"}
    assert heat._damage == {}


@pytest.mark.filterwarnings("ignore:Sequential. the input of its last")
def test_damage_error_is_shown_not_lost(damaged):
    # A comparison whose weights do not pair: the error travels in the answer.
    other = cnc.ModelRegistry()
    other.set_data(damaged.data.inputs, damaged.data.labels, batch_size=64)
    other.add("base", damaged.model("base"))
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    other.add("alien", mlp, parent="base", operation="edit")
    other.evaluate(progress=False)
    heat = cnc.ActivationHeatmap(other, "base", "alien")
    heat._damage_request = {"model": "alien", "groups": "auto", "at": 1}
    assert "error" in heat._damage and heat._damage["model"] == "alien"
    assert not heat.busy


def test_suggest_request_makes_restore_children_the_views_show(damaged):
    heat = cnc.ActivationHeatmap(damaged, "base", "damaged")
    graph = cnc.show_provenance(damaged)
    before = set(damaged.metrics().index)
    heat._suggest_request = {"model": "damaged", "at": 3}
    answer = heat._suggest
    assert "error" not in answer and answer["at"] == 3 and answer["made"]
    made = answer["made"]
    assert set(damaged.metrics().index) - before == set(made)
    for name in made:
        assert damaged.record(name).parent == "damaged"
        assert answer["quality"][name] == pytest.approx(damaged.metrics().at[name, "accuracy"])
    # The provenance graph follows the registry: the children are in its payload now.
    assert set(made) <= set(json.dumps(graph.get_state()).split('"')), made
    # A pair whose reference is not the parent: the reason, from suggest_restores itself.
    heat2 = cnc.ActivationHeatmap(damaged, "pruned", "damaged")
    heat2._suggest_request = {"model": "damaged", "at": 4}
    assert "parent" in heat2._suggest["error"]
    heat2._damage_request = {"model": "damaged", "groups": "module"}
    assert heat2._damage["suggest"]["ok"] is False
