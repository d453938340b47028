"""reg.filters: metric ranges every view follows; out = a filtered metric missing or outside."""

from __future__ import annotations

import json

import numpy as np
import pytest
import traitlets

import cnc_widgets as cnc
from cnc_widgets.registry.filters import check_filters, outside


@pytest.fixture
def reg(tmp_path):
    rng = np.random.default_rng(0)
    models = [
        {
            "id": "root",
            "base": None,
            "operation": {"name": "train", "parameters": {}},
            "metrics": {"Top-1 Accuracy": 0.9, "Model Size": 1000},
        }
    ]
    for i in range(1, 40):
        metrics = {"Top-1 Accuracy": float(rng.random()), "Model Size": int(rng.integers(1, 1000))}
        if i % 7 == 0:
            del metrics["Top-1 Accuracy"]  # never measured
        models.append(
            {
                "id": f"m{i}",
                "base": "root",
                "operation": {"name": "prune", "parameters": {"amount": i / 40}},
                "metrics": metrics,
            }
        )
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"metrics": [], "operations": [], "models": models}))
    return cnc.ModelRegistry.from_cnc_json(path)


def expected_out(reg, filters):
    table = reg.metrics()
    out = []
    for name in table.index:
        for metric, (low, high) in filters.items():
            v = table.loc[name, metric]
            if (
                v is None
                or v != v
                or (low is not None and v < low)
                or (high is not None and v > high)
            ):
                out.append(name)
                break
    return out


def test_filters_leave_out_missing_and_outside(reg):
    assert reg.filtered_out() == []
    filters = {"accuracy": (0.25, 0.75), "size_bytes": (100, None)}
    reg.filters = filters
    assert reg.filters == {"accuracy": (0.25, 0.75), "size_bytes": (100.0, None)}
    out = reg.filtered_out()
    assert out == expected_out(reg, filters)
    assert "m7" in out and "m14" in out  # accuracy missing
    assert 0 < len(out) < len(reg)
    inside = reg.metrics(filtered=True)
    assert sorted(inside.index) == sorted(set(reg.names) - set(out))
    assert ((inside["accuracy"] >= 0.25) & (inside["accuracy"] <= 0.75)).all()
    assert (inside["size_bytes"] >= 100).all()
    # Without filtered=True nothing is dropped; clearing the filter brings every model back.
    assert len(reg.metrics()) == len(reg)
    reg.filters = {}
    assert reg.filtered_out() == [] and len(reg.metrics(filtered=True)) == len(reg)


def test_bounds_are_inclusive(reg):
    reg.filters = {"accuracy": (0.9, 0.9)}
    assert reg.metrics(filtered=True).index.tolist() == ["root"]


def test_bad_filters_name_the_problem(reg):
    with pytest.raises(traitlets.TraitError, match=r"no such metric.*accuracy"):
        reg.filters = {"acuracy": (0, 1)}
    with pytest.raises(traitlets.TraitError, match="swap them"):
        reg.filters = {"accuracy": (1, 0)}
    with pytest.raises(traitlets.TraitError, match="pair"):
        reg.filters = {"accuracy": 0.5}
    with pytest.raises(traitlets.TraitError, match="not a number"):
        reg.filters = {"accuracy": ("low", 1)}
    assert reg.filters == {}


def test_views_follow_the_filter(reg):
    graph = cnc.show_provenance(reg)
    reg.filters = {"size_bytes": (500, None)}
    assert graph.filtered_out == reg.filtered_out() and graph.filtered_out
    assert graph.filters == {"size_bytes": (500.0, None)}
    graph.filters = {"size_bytes": [None, 500]}  # what the browser sends
    assert reg.filters == {"size_bytes": (None, 500.0)}
    assert graph.filtered_out == expected_out(reg, {"size_bytes": (None, 500)})


def test_pure_functions():
    import pandas as pd

    table = pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0]}, index=list("wxyz"))
    assert outside(table, check_filters({"a": (2, 3)})) == ["w", "y", "z"]
    assert outside(table, {}) == []


def test_evaluated_registry(digits, digits_cnn):
    reg = cnc.ModelRegistry()
    reg.set_data(digits.test_inputs[:200], digits.test_labels[:200])
    reg.add("base", digits_cnn)
    reg.compress("base", "prune", amount=0.9, name="p90")
    reg.compress("base", "prune", amount=0.3, name="p30")
    reg.evaluate(progress=False)
    reg.filters = {"sparsity": (0.5, 1.0)}
    sparsity = reg.metrics()["sparsity"]
    assert reg.metrics(filtered=True).index.tolist() == sparsity[sparsity >= 0.5].index.tolist()
    assert "p90" not in reg.filtered_out() and "base" in reg.filtered_out()
