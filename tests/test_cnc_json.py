"""Compress and Compare experiment files become metric-only models with provenance."""

from __future__ import annotations

import json

import pytest

import cnc_widgets as cnc

from .conftest import CNC_FIXTURE

needs_fixture = pytest.mark.skipif(not CNC_FIXTURE.exists(), reason="../shared/fixtures is absent")


@needs_fixture
def test_tutorial_file():
    reg = cnc.ModelRegistry.from_cnc_json(CNC_FIXTURE)
    doc = json.loads(CNC_FIXTURE.read_text())
    assert len(reg) == 5
    edges = {(n, reg.record(n).parent) for n in reg if reg.record(n).parent is not None}
    assert len(edges) == 4
    for entry in doc["models"]:
        assert reg.record(entry["id"]).parent == entry["base"]
        assert reg.record(entry["id"]).operation == entry["operation"]["name"]
    table = reg.metrics()
    for metric in [
        "Top-1 Accuracy",
        "Top-5 Accuracy",
        "Latency",
        "Model Size",
        "Sparsity",
        "Epochs",
    ]:
        assert metric in table.columns
    root = "resnet50trained"
    assert table.loc[root, "Top-1 Accuracy"] == pytest.approx(0.8031923448054037)
    assert table.loc[root, "accuracy"] == table.loc[root, "Top-1 Accuracy"]
    assert table.loc[root, "size_bytes"] == 95246447
    with pytest.raises(KeyError, match="no weights"):
        reg.model(root)


@needs_fixture
def test_tutorial_file_in_a_store(tmp_path):
    cnc.ModelRegistry.from_cnc_json(CNC_FIXTURE, store=tmp_path / "s")
    again = cnc.ModelRegistry(store=tmp_path / "s")
    assert len(again) == 5
    assert again.metrics().loc["resnet50trained", "Epochs"] == 90


def _write(tmp_path, models):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"metrics": [], "operations": [], "models": models}))
    return path


def test_unknown_base_and_cycle(tmp_path):
    unknown = _write(tmp_path, [{"id": "a", "base": "missing", "metrics": {}}])
    with pytest.raises(ValueError, match="unknown parent"):
        cnc.ModelRegistry.from_cnc_json(unknown)
    cycle = _write(tmp_path, [{"id": "a", "base": "b"}, {"id": "b", "base": "a"}])
    with pytest.raises(ValueError, match="cycle"):
        cnc.ModelRegistry.from_cnc_json(cycle)


def test_not_a_cnc_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="no 'models' list"):
        cnc.ModelRegistry.from_cnc_json(path)
    path.write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        cnc.ModelRegistry.from_cnc_json(path)


@needs_fixture
def test_units_are_converted_to_the_library_columns(tmp_path):
    # The paper's tutorial file, rewritten the way other tools write it: size in MB,
    # accuracy in %, latency in seconds, sparsity in % without a unit but with max 100.
    doc = json.loads(CNC_FIXTURE.read_text())
    specs = {m["name"]: m for m in doc["metrics"]}
    specs["Model Size"]["unit"] = "MB"
    specs["Top-1 Accuracy"].update(unit="%", format=".1f", max=100)
    specs["Latency"]["unit"] = "s"
    specs["Sparsity"].update(max=100, format=".0f")
    originals = {}
    for entry in doc["models"]:
        m = entry["metrics"]
        originals[entry["id"]] = dict(m)
        m["Model Size"] = m["Model Size"] / 1e6
        m["Top-1 Accuracy"] = m["Top-1 Accuracy"] * 100
        m["Latency"] = m["Latency"] / 1e3
        m["Sparsity"] = m["Sparsity"] * 100
    path = tmp_path / "units.json"
    path.write_text(json.dumps(doc))
    table = cnc.ModelRegistry.from_cnc_json(path).metrics()
    for name, m in originals.items():
        assert table.loc[name, "size_bytes"] == pytest.approx(m["Model Size"], rel=1e-12)
        assert table.loc[name, "accuracy"] == pytest.approx(m["Top-1 Accuracy"], rel=1e-12)
        assert table.loc[name, "latency_ms"] == pytest.approx(m["Latency"], rel=1e-12)
        assert table.loc[name, "sparsity"] == pytest.approx(m["Sparsity"], abs=1e-12)
        # The file's own columns keep the file's units.
        assert table.loc[name, "Model Size"] == pytest.approx(m["Model Size"] / 1e6)

    # A unit this library does not know is not aliased: no wrong number under its name.
    specs["Model Size"]["unit"] = "parameters"
    path.write_text(json.dumps(doc))
    table = cnc.ModelRegistry.from_cnc_json(path).metrics()
    assert table["size_bytes"].isna().all()
