"""Why a model has its size: bytes by dtype and what an operation changed or left."""

from __future__ import annotations

import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.evaluate.sizes import bytes_by_dtype, what_changed


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Embedding(50, 16), nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)
    )


def test_bytes_by_dtype_counts_each_element_once():
    m = model()
    assert bytes_by_dtype(m) == {"float32": 4 * (50 * 16 + 64 * 8 + 8 + 8 * 3 + 3)}
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight
    assert bytes_by_dtype(tied) == {"float32": 4 * 40}
    assert bytes_by_dtype(m.half()) == {"float16": 2 * (50 * 16 + 64 * 8 + 8 + 8 * 3 + 3)}


def test_int8_child_explains_its_size_in_the_record():
    x, y = torch.randint(0, 50, (20, 4)), torch.randint(0, 3, (20,))
    reg = cnc.ModelRegistry()
    reg.set_data(x, y)
    reg.add("base", model())
    sizes = reg.record(reg.compress("base", "quantize_dynamic", name="int8")).info["sizes"]
    assert set(sizes["changed"]) == {"2", "4"}
    assert all(v.startswith("quantized") for v in sizes["changed"].values())
    assert sizes["unchanged"] == ["0"]  # the embedding stays float32
    assert sizes["added"] == [] and sizes["removed"] == []
    # float32 left: the embedding (3,200 bytes), biases and scales; int8: the two weights.
    assert sizes["bytes_by_dtype"]["qint8"] == 64 * 8 + 8 * 3
    assert sizes["bytes_by_dtype"]["float32"] >= 50 * 16 * 4
    assert sizes["parent_bytes_by_dtype"] == bytes_by_dtype(reg.model("base"))


def test_pruned_and_replaced_modules_are_named():
    m = model()
    pruned = cnc.compress.apply_operation(m, "prune", amount=0.3, scope="tensor")
    report = what_changed(m, pruned)
    assert report["changed"] and all(v.startswith("pruned") for v in report["changed"].values())
    low = cnc.compress.apply_operation(m, "low_rank", rank=2)
    report = what_changed(m, low)
    assert report["changed"]["2"].startswith("replaced by")
    assert report["added"] == [] and report["removed"] == []
    assert what_changed(m, m)["changed"] == {}


def test_details_explain_the_size_and_the_latency_spread():
    from cnc_widgets.widgets.details import details_state

    x, y = torch.randint(0, 50, (20, 4)), torch.randint(0, 3, (20,))
    reg = cnc.ModelRegistry()
    reg.set_data(x, y)
    reg.add("base", model())
    reg.compress("base", "quantize_dynamic", name="int8")
    reg.evaluate(progress=False)
    state = details_state(reg, ["int8"])
    sizes = state["sizes"]
    assert sizes["bytes_by_dtype"][0]["dtype"] == "float32"
    assert "2 modules quantized" in sizes["lines"]
    assert any(line.startswith("1 left as they were: 0") for line in sizes["lines"])
    latency = next(r for r in state["metrics"] if r["metric"] == "latency_ms")
    assert "IQR" in latency["text"]
    assert details_state(reg, ["base"])["sizes"] is None  # a root: nothing to explain
