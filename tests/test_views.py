"""The views' Python side: the Pareto frontier, what travels to the browser, and errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import traitlets

import cnc_widgets as cnc
from cnc_widgets.metrics.pareto import pareto_front
from cnc_widgets.widgets._previews import previews
from cnc_widgets.widgets._wire import pack, unpack
from cnc_widgets.widgets.diff import class_summary, instance_columns

from .conftest import CNC_FIXTURE


def brute_front(x, y, x_better="lower", y_better="higher"):
    gx = np.where(x_better == "lower", x, -np.asarray(x, float))
    gy = np.where(y_better == "higher", -np.asarray(y, float), y)
    ok = np.isfinite(gx) & np.isfinite(gy)
    front = []
    for i in np.flatnonzero(ok):
        dominated = any(
            gx[j] <= gx[i] and gy[j] <= gy[i] and (gx[j] < gx[i] or gy[j] < gy[i])
            for j in np.flatnonzero(ok)
        )
        if not dominated:
            front.append(int(i))
    return sorted(front)


@pytest.mark.parametrize("x_better", ["lower", "higher"])
@pytest.mark.parametrize("y_better", ["lower", "higher"])
def test_pareto_front_matches_brute_force(x_better, y_better):
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(1, 40))
        # Few distinct values: many ties in x, in y and whole duplicate points.
        x = rng.integers(0, 6, n).astype(float)
        y = rng.integers(0, 6, n).astype(float)
        if trial % 3 == 0:
            x[rng.integers(0, n)] = np.nan
        got = pareto_front(x, y, x_better=x_better, y_better=y_better)
        assert sorted(got.tolist()) == brute_front(x, y, x_better, y_better)
        assert np.all(np.diff(x[got]) >= 0)  # ordered by x


def test_pareto_front_example_and_errors():
    assert pareto_front([1, 2, 3, 2], [0.5, 0.9, 0.95, 0.7]).tolist() == [0, 1, 2]
    assert pareto_front([], []).tolist() == []
    with pytest.raises(ValueError, match="x_better must be 'lower' or 'higher'"):
        pareto_front([1], [1], x_better="smaller")


def test_registry_pareto_on_cnc_file():
    reg = cnc.ModelRegistry.from_cnc_json(CNC_FIXTURE)
    table = reg.metrics()
    got = reg.pareto("Model Size", "Top-1 Accuracy")
    idx = brute_front(table["Model Size"].to_numpy(float), table["Top-1 Accuracy"].to_numpy(float))
    assert sorted(got) == sorted(table.index[idx])
    assert reg.pareto("size_bytes", "accuracy") == got  # the aliases give the same answer
    sizes = table.loc[got, "Model Size"].to_numpy()
    assert np.all(np.diff(sizes) >= 0)
    with pytest.raises(ValueError, match="no metric 'speed'"):
        reg.pareto("speed", "accuracy")


def test_pack_round_trip_and_size():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    packed = pack(a)
    assert packed["dtype"] == "float32" and packed["shape"] == [3, 4]
    assert isinstance(packed["data"], bytes) and len(packed["data"]) == a.nbytes
    assert np.array_equal(unpack(packed), a)
    with pytest.raises(ValueError, match="cannot send dtype"):
        pack(np.array(["a"]))


@pytest.fixture(scope="module")
def reg(digits, digits_cnn):
    reg = cnc.ModelRegistry()
    reg.set_data(
        digits.test_inputs,
        digits.test_labels,
        classes=digits.classes,
        instances=digits.test_instances,
    )
    reg.add("base", digits_cnn)
    reg.compress("base", "prune", amount=0.8, name="pruned")
    reg.compress("base", "prune", amount=0.6, name="pruned-60")
    reg.evaluate(progress=False)
    return reg


def test_instance_columns_match_comparison(reg):
    cols = instance_columns(reg, ["base", "pruned", "pruned-60"])
    inst = reg.compare("base", "pruned").instances
    pred, conf = unpack(cols["pred"]), unpack(cols["conf"])
    assert cols["n"] == len(inst) and cols["ids"] is None
    assert np.array_equal(unpack(cols["label"]), inst["label"])
    assert np.array_equal(pred[0], inst["pred_a"]) and np.array_equal(pred[1], inst["pred_b"])
    np.testing.assert_allclose(conf[1], inst["conf_true_b"], rtol=1e-6)
    np.testing.assert_allclose(unpack(cols["kl"])[0], inst["kl"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(unpack(cols["mse"])[0], inst["mse"], rtol=1e-5)
    third = reg.compare("base", "pruned-60").instances
    np.testing.assert_allclose(unpack(cols["kl"])[1], third["kl"], rtol=1e-5, atol=1e-7)
    assert cols["pred"]["dtype"] == "int8"  # ten classes fit in one byte


def test_class_summary_matches_comparison(reg):
    summary = class_summary(reg, ["base", "pruned"])
    cmp = reg.compare("base", "pruned")
    assert np.array_equal(unpack(summary["change"])[0], cmp.change_matrix.to_numpy())
    groups = cmp.group_accuracy()
    acc = unpack(summary["accuracy"])
    np.testing.assert_allclose(acc[0], groups["accuracy_a"])
    np.testing.assert_allclose(acc[1], groups["accuracy_b"])
    # Top changes of a class: counted directly from the instance table.
    inst = cmp.instances
    for c, changes in enumerate(summary["top_changes"][0]):
        moved = inst[(inst["label"] == c) & (inst["pred_a"] != inst["pred_b"])]
        counts = moved.groupby(["pred_a", "pred_b"]).size()
        for a, b, k in changes:
            assert counts[(a, b)] == k
        if changes:
            assert changes[0][2] == counts.max()


def test_binary_state_is_much_smaller_than_json(reg):
    names = ["base", "pruned", "pruned-60"]
    cols = instance_columns(reg, names)
    binary = sum(len(v["data"]) for v in cols.values() if isinstance(v, dict))
    as_json = len(
        json.dumps({k: unpack(v).tolist() for k, v in cols.items() if isinstance(v, dict)})
    )
    assert binary < 0.25 * as_json


def test_previews_images_and_text(reg, digits):
    payload, buffers = previews(reg.data, [0, 5, 10_000])
    assert payload["kind"] == "image" and payload["rows"] == [0, 5]
    block = np.frombuffer(buffers[0], np.uint8).reshape(2, *payload["shape"])
    assert np.array_equal(block, digits.test_instances[[0, 5]])
    other = cnc.ModelRegistry()
    texts = [f"t{i}" for i in range(len(digits.test_labels))]
    texts[1] = "<b>x</b>" * 1000
    other.set_data(digits.test_inputs, digits.test_labels, instances=texts)
    payload, buffers = previews(other.data, [1, 2])
    assert payload["kind"] == "text" and buffers == []
    assert payload["texts"][0].startswith("<b>x</b>") and len(payload["texts"][0]) == 2000


def test_diff_follows_selection_and_says_what_to_do(reg):
    diff = cnc.PredictionDiff(reg)
    reg.selected = []
    assert diff.status.startswith("Select two models")
    reg.selected = ["pruned"]
    assert "Select a second model to compare with 'pruned'" in diff.status
    reg.selected = ["base", "pruned", "pruned-60"]
    assert diff.status == "" and diff.reference == "base"
    assert diff.compared == ["pruned", "pruned-60"]
    rows = {r["name"]: r for r in diff.summary}
    cmp = reg.compare("base", "pruned")
    assert rows["pruned"]["agreement"] == pytest.approx(cmp.agreement)
    assert rows["pruned"]["knn"] == pytest.approx(cmp.knn_agreement(10))
    assert rows["pruned"]["ood"] == pytest.approx(cmp.ood_agreement())
    reg.selected = []


def test_diff_errors_name_the_fix(reg, digits_cnn):
    with pytest.raises(KeyError, match="no model named 'nope'"):
        cnc.PredictionDiff(reg, a="base", b="nope")
    with pytest.raises(ValueError, match="at most 4"):
        cnc.PredictionDiff(reg, a="base", b=["pruned"] * 5)
    fresh = copy.deepcopy(digits_cnn)
    with torch.no_grad():
        for p in fresh.parameters():
            p.mul_(0.9)
    reg.add("fresh", fresh, parent="base", operation="scale")
    try:
        with pytest.raises(ValueError, match=r"'fresh' has not been evaluated.*reg.evaluate\(\)"):
            cnc.PredictionDiff(reg, a="base", b="fresh")
    finally:
        reg.evaluate("fresh", progress=False)
    imported = cnc.ModelRegistry.from_cnc_json(CNC_FIXTURE)
    diff = cnc.PredictionDiff(imported)
    imported.selected = imported.names[:2]
    assert "has metrics only (read from cnc_imagenet_tutorial.json)" in diff.status


def test_scatter_state_and_refresh(reg, digits_cnn):
    scatter = cnc.EfficiencyScatter(reg, color="sparsity")
    assert scatter.log_x and not scatter.log_y
    values = unpack(scatter.values)
    j = scatter.metrics.index("accuracy")
    np.testing.assert_allclose(values[:, j], reg.metrics()["accuracy"].to_numpy())
    assert scatter.pareto() == reg.pareto("size_bytes", "accuracy")
    scatter.x = "latency_ms"
    assert scatter.log_x
    scatter.x = "sparsity"
    assert not scatter.log_x
    with pytest.raises(ValueError, match="not a numeric metric"):
        cnc.EfficiencyScatter(reg, x="speed")
    before = len(scatter.models)
    reg.compress("base", "prune", amount=0.3, name="pruned-30")
    assert len(scatter.models) == before + 1


def test_dashboard_links_views(reg):
    board = cnc.dashboard(reg)
    assert set(board.views) == {"provenance", "scatter", "filters", "details", "diff", "heatmap"}
    reg.selected = ["base", "pruned"]
    assert board.scatter.selected == ["base", "pruned"]
    assert board.diff.compared == ["pruned"]
    board.views["scatter"].selected = ["pruned"]
    assert reg.selected == ["pruned"] and board.views["provenance"].selected == ["pruned"]
    reg.selected = []


def _registry_handlers(reg):
    return sum(len(h) for kinds in reg._trait_notifiers.values() for h in kinds.values())


@pytest.mark.parametrize(
    "make",
    [
        cnc.ProvenanceGraph,
        cnc.EfficiencyScatter,
        cnc.FilterPanel,
        cnc.SelectionDetails,
        cnc.PredictionDiff,
        lambda r: cnc.ActivationHeatmap(r, lazy=True),
    ],
)
def test_every_view_links_selection_and_filters_and_close_undoes_it(reg, make):
    reg.selected, reg.filters = [], {}
    before = _registry_handlers(reg)
    view = make(reg)
    assert _registry_handlers(reg) > before
    reg.selected = ["pruned"]
    reg.filters = {"accuracy": (2.0, None)}  # nothing reaches 200%: every model is out
    assert view.selected == ["pruned"] and view.filters == {"accuracy": (2.0, None)}
    assert sorted(view.filtered_out) == sorted(reg.names)
    view.selected = ["base"]
    assert reg.selected == ["base"]
    view.close()
    assert _registry_handlers(reg) == before  # no link, no observer left on the registry
    reg.selected = ["pruned-60"]
    reg.filters = {}
    assert view.selected == ["base"]  # it no longer follows the registry
    reg.selected = []


def test_one_list_of_numeric_metrics_for_scatter_filters_and_details(reg):
    from cnc_widgets.widgets._metrics import BOOKKEEPING

    scatter, panel, details = (
        cnc.EfficiencyScatter(reg),
        cnc.FilterPanel(reg),
        cnc.SelectionDetails(reg),
    )
    reg.selected = ["base"]
    shown = [row["metric"] for row in details.details["metrics"]]
    assert scatter.metrics == list(panel.table["metrics"]) == shown
    table = reg.metrics()
    assert BOOKKEEPING & set(table.columns)  # the settings are in the table ...
    assert not BOOKKEEPING & set(scatter.metrics)  # ... and no view offers them as metrics
    assert scatter.metrics[:2] == ["accuracy", "size_bytes"]
    for view in (scatter, panel, details):
        view.close()
    reg.selected = []


def test_selected_instances_take_ints_and_strings(reg):
    diff = cnc.PredictionDiff(reg, a="base", b="pruned")
    diff.selected_instances = [5, np.int64(7), "9"]
    assert diff.selected_instances == ["5", "7", "9"]
    row = int(diff.selected_instances[0])
    assert reg.data.ids[row] == "5"
    with pytest.raises(traitlets.TraitError, match=r"no instance with id \['100000'\]"):
        diff.selected_instances = [100_000]
    with pytest.raises(traitlets.TraitError, match="instance ids"):
        diff.selected_instances = [1.5]
    diff.close()


def test_diff_shows_a_cached_adversarial_overlap_without_attacking(reg):
    diff = cnc.PredictionDiff(reg, a="base", b="pruned-60")
    row = {r["name"]: r for r in diff.summary}["pruned-60"]
    assert row["adversarial"] is None  # never computed: the view does not attack on its own
    assert "adversarial_info" not in row
    cmp = reg.compare("base", "pruned-60")
    value = cmp.adversarial_overlap()
    again = cnc.PredictionDiff(reg, a="base", b="pruned-60")
    row = {r["name"]: r for r in again.summary}["pruned-60"]
    assert row["adversarial"] == pytest.approx(value)
    assert row["adversarial_info"]["flipped_b"] == cmp.adversarial_details()["flipped_b"]
    diff.close()
    again.close()
