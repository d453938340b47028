"""ModelRegistry: adding models, provenance checks, re-runs, selection, metrics."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import cnc_widgets as cnc


def scaled(model: nn.Module, factor: float) -> nn.Module:
    child = copy.deepcopy(model)
    with torch.no_grad():
        for p in child.parameters():
            p.mul_(factor)
    return child


@pytest.fixture
def reg(digits, digits_cnn):
    r = cnc.ModelRegistry()
    r.set_data(
        digits.test_inputs,
        digits.test_labels,
        classes=digits.classes,
        instances=digits.test_instances,
    )
    r.add("base", digits_cnn)
    return r


def snapshot(r: cnc.ModelRegistry):
    return (r.names, [r.record(n).to_dict() for n in r.names], r.revision)


def test_add_records_provenance(reg, digits_cnn):
    reg.add("child", scaled(digits_cnn, 0.5), parent="base", operation="scale", params={"f": 0.5})
    rec = reg.record("child")
    assert (rec.parent, rec.operation, rec.params) == ("base", "scale", {"f": 0.5})
    assert reg.names == ["base", "child"]
    prov = reg.provenance()
    assert prov.loc["child", "parent"] == "base"


def test_rerun_same_cell_is_noop(reg, digits_cnn):
    before = snapshot(reg)
    assert reg.add("base", copy.deepcopy(digits_cnn)) == "base"
    assert snapshot(reg) == before


def test_same_name_other_weights_raises_unless_replace(reg, digits_cnn):
    reg.evaluate(progress=False)
    before = snapshot(reg)
    other = scaled(digits_cnn, 0.5)
    with pytest.raises(
        ValueError, match=r"'base' already exists with different weights.*replace=True"
    ):
        reg.add("base", other)
    assert snapshot(reg) == before
    assert not np.isnan(reg.metrics().loc["base", "accuracy"])
    reg.add("base", other, replace=True)
    assert np.isnan(reg.metrics().loc["base", "accuracy"])  # cached results dropped
    reg.evaluate(progress=False)
    assert reg.metrics().loc["base", "accuracy"] < 1.0


def test_same_name_other_parent_raises(reg, digits_cnn):
    reg.add("a", scaled(digits_cnn, 0.9), parent="base")
    reg.add("b", scaled(digits_cnn, 0.8), parent="base")
    with pytest.raises(ValueError, match="different provenance"):
        reg.add("b", reg.model("b"), parent="a")
    assert reg.record("b").parent == "base"


def test_unknown_parent_raises_and_leaves_registry(reg, digits_cnn):
    before = snapshot(reg)
    with pytest.raises(
        ValueError, match=r"parent 'nope' of model 'x' is not in the registry.*add 'nope' first"
    ):
        reg.add("x", digits_cnn, parent="nope")
    assert snapshot(reg) == before


def test_cycle_raises(reg, digits_cnn):
    reg.add("a", scaled(digits_cnn, 0.9), parent="base")
    reg.add("b", scaled(digits_cnn, 0.8), parent="a")
    before = snapshot(reg)
    with pytest.raises(ValueError, match="cycle"):
        reg.add("a", reg.model("a"), parent="b", replace=True)
    with pytest.raises(ValueError, match="its own parent"):
        reg.add("a", reg.model("a"), parent="a", replace=True)
    assert snapshot(reg) == before


@pytest.mark.parametrize("bad", [None, "a string", torch.zeros(3), {"weight": torch.zeros(2)}])
def test_non_module_raises(reg, bad):
    before = snapshot(reg)
    with pytest.raises(ValueError, match=r"not a torch\.nn\.Module"):
        reg.add("x", bad)
    assert snapshot(reg) == before


def test_bad_params_and_names(reg, digits_cnn):
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        reg.add("x", digits_cnn, parent="base", params={"fn": object()})
    with pytest.raises(ValueError, match="non-empty string"):
        reg.add("", digits_cnn)
    assert "x" not in reg


def test_evaluate_accuracy_matches_direct(reg, digits, digits_cnn):
    reg.evaluate(progress=False)
    with torch.inference_mode():
        direct = (digits_cnn(digits.test_inputs).argmax(1) == digits.test_labels).double().mean()
    table = reg.metrics()
    assert table.loc["base", "accuracy"] == pytest.approx(float(direct), abs=1e-9)
    assert table.loc["base", "params"] == sum(p.numel() for p in digits_cnn.parameters())
    assert {"parent", "operation", "operation_params", "size_bytes"} <= set(table.columns)


def test_selection_validates_names(reg):
    reg.selected = ["base"]
    assert reg.selected == ["base"]
    with pytest.raises(Exception, match="not in the registry"):
        reg.selected = ["ghost"]
    assert reg.selected == ["base"]


def test_set_data_validation(digits):
    r = cnc.ModelRegistry()
    x, y = digits.test_inputs, digits.test_labels
    with pytest.raises(ValueError, match="labels has 3 entries but inputs has"):
        r.set_data(x, y[:3])
    with pytest.raises(ValueError, match="integer class indices"):
        r.set_data(x, np.full(len(y), 0.5))
    with pytest.raises(ValueError, match="only 2 classes"):
        r.set_data(x, y, classes=["a", "b"])
    with pytest.raises(ValueError, match="different numbers of rows"):
        r.set_data({"a": torch.zeros(4, 2), "b": torch.zeros(3, 2)}, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="instances has 2 entries"):
        r.set_data(x, y, instances=["a", "b"])
    with pytest.raises(ValueError, match="ids must be unique"):
        r.set_data(x, y, ids=["same"] * len(y))
    assert r.data is None


def test_revision_notifies_views(reg, digits_cnn):
    seen = []
    reg.observe(lambda change: seen.append(change["new"]), names="revision")
    reg.add("child", scaled(digits_cnn, 0.5), parent="base")
    reg.evaluate(progress=False)
    assert len(seen) >= 2


class NaNAfter(nn.Module):
    """Wraps a model; its ``poison`` module returns NaN from the second batch on."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.poison = nn.Identity()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = self.poison(x) * (float("nan") if self.calls >= 2 else 1.0)
        return self.inner(h)


class Raises(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 10)

    def forward(self, x):
        raise RuntimeError("boom")


def test_failing_models_are_named_and_others_kept(reg, digits_cnn):
    reg.add("nan", NaNAfter(copy.deepcopy(digits_cnn)), parent="base")
    reg.add("raises", Raises(), parent="base")
    reg.add("fine", scaled(digits_cnn, 0.9), parent="base")
    with pytest.raises(cnc.EvaluationError) as info:
        reg.evaluate(progress=False)
    message = str(info.value)
    assert "'nan'" in message and "batch 1" in message
    assert "'raises'" in message and "boom" in message
    table = reg.metrics()
    assert 0 < table.loc["fine", "accuracy"] <= 1 and 0 < table.loc["base", "accuracy"] <= 1
    assert np.isnan(table.loc["nan", "accuracy"]) and np.isnan(table.loc["raises", "accuracy"])


def test_wrong_input_shape_is_named(digits):
    r = cnc.ModelRegistry()
    r.set_data(digits.test_inputs, digits.test_labels)
    r.add("mlp", nn.Sequential(nn.Flatten(), nn.Linear(10, 10)))
    with pytest.raises(cnc.EvaluationError, match=r"'mlp'.*(shape|size)"):
        r.evaluate(progress=False)
