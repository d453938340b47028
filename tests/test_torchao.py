"""Models quantized with torchao: added, made by ``compress``, evaluated and compared.

A small MLP trained on the digits here; MiniLM in test_torchao_minilm.py. Every size is
checked against bytes computed from the layers' shapes, every layer measure against the
int8 data and scales the quantized weights store.
"""

from __future__ import annotations

import copy
import io
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torchao.quantization import (
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    IntxWeightOnlyConfig,
    quantize_,
)
from torchao.quantization.granularity import PerGroup

import cnc_widgets as cnc
from cnc_widgets.compress import apply_operation, operation_record, operations
from cnc_widgets.compress.tensor_subclass import (
    dequantized,
    is_tensor_subclass,
    stored_bytes,
    stored_tensors,
)
from cnc_widgets.evaluate.efficiency import efficiency, size_bytes
from cnc_widgets.evaluate.fingerprint import model_fingerprint
from cnc_widgets.metrics.adversarial import has_gradients

from .digits_mlp import train_digits_mlp

# name -> (params of the "quantize" operation, the torchao config a user would write,
#          input columns per scale (None: one scale per output row))
CONFIGS = {
    "int8_weight_only": ({}, Int8WeightOnlyConfig, None),
    "int8_dynamic_activation_int8_weight": (
        {"config": "int8_dynamic_activation_int8_weight"},
        Int8DynamicActivationInt8WeightConfig,
        None,
    ),
    "intx_int4_weight_only": (
        {"config": "intx_int4_weight_only", "group_size": 32},
        lambda: IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32)),
        32,
    ),
}


@pytest.fixture(scope="module")
def mlp(digits):
    return train_digits_mlp(digits, hidden=64)


@pytest.fixture(scope="module")
def reg(digits, mlp):
    r = cnc.ModelRegistry(store=None)
    r.set_data(digits.test_inputs, digits.test_labels, classes=digits.classes)
    r.add("fp32", mlp)
    for name, (params, make_config, _) in CONFIGS.items():
        r.compress("fp32", "quantize", name=name, **params)
        user = copy.deepcopy(mlp)
        quantize_(user, make_config())
        r.add(f"user-{name}", user, parent="fp32", operation="torchao")
    r.evaluate(progress=False)
    return r


def expected_bytes(model: nn.Module, group: int | None) -> int:
    """What the quantized model stores, from the float model's shapes alone.

    Each Linear: one int8 per weight, a float32 scale and an int8 zero point per output row
    (or per group of ``group`` input columns), a float32 bias.
    """
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            scales = m.out_features * (1 if group is None else m.in_features // group)
            total += m.out_features * m.in_features + scales * (4 + 1) + 4 * m.out_features
    return total


@pytest.mark.parametrize("config", list(CONFIGS))
def test_compress_and_add_give_the_same_model(reg, config):
    made, user = reg.model(config), reg.model(f"user-{config}")
    for model in (made, user):
        assert all(is_tensor_subclass(m.weight) for m in model if isinstance(m, nn.Linear))
    # The built-in operation is what a user writes with torchao: same weights, same hash.
    assert reg.record(config).fingerprint == reg.record(f"user-{config}").fingerprint
    record = reg.record(config)
    assert record.operation == "quantize"
    assert record.params["config"] == config
    assert record.info["versions"]["torchao"] == "0.18.0"


@pytest.mark.parametrize("config", list(CONFIGS))
def test_metrics_against_shapes(reg, mlp, config):
    table = reg.metrics()
    group = CONFIGS[config][2]
    for name in (config, f"user-{config}"):
        row = table.loc[name]
        model = reg.model(name)
        # The payload: int8 weights (a quarter of fp32), scales, zero points, float biases.
        payload = sum(stored_bytes(v) for v in model.state_dict().values())
        assert payload == expected_bytes(mlp, group)
        fp32_weights = sum(4 * m.weight.numel() for m in mlp if isinstance(m, nn.Linear))
        int8_weights = sum(
            inner.numel()
            for m in model
            if isinstance(m, nn.Linear)
            for part, inner in stored_tensors(m.weight)
            if part == "qdata"
        )
        assert int8_weights == fp32_weights // 4
        # size_bytes is the torch.save file: the payload plus pickle framing, which an
        # independent save of the plain parts bounds (a few hundred bytes per subclass).
        plain = {
            f"{k}.{p}": t.clone()
            for k, v in model.state_dict().items()
            for p, t in stored_tensors(v)
        }
        buffer = io.BytesIO()
        torch.save(plain, buffer)
        assert payload < row["size_bytes"] <= buffer.getbuffer().nbytes + 2 * 600
        assert row["size_bytes"] < 0.5 * table.loc["fp32", "size_bytes"]
        # Counts and work are those of the float model; zeros are read dequantized.
        assert row["params"] == table.loc["fp32", "params"]
        assert row["macs"] == table.loc["fp32", "macs"] == 64 * 64 + 64 * 10
        zeros = sum(int((dequantized(p) == 0).sum()) for p in model.parameters())
        assert row["nonzero_params"] == row["params"] - zeros
        assert row["accuracy"] > 0.9


def test_int8_configs_quantize_within_half_a_step(reg, mlp):
    for config in ("int8_weight_only", "int8_dynamic_activation_int8_weight"):
        for float_layer, layer in zip(mlp, reg.model(config), strict=True):
            if not isinstance(layer, nn.Linear):
                continue
            w = float_layer.weight.detach()
            parts = dict(stored_tensors(layer.weight))
            assert parts["qdata"].dtype == torch.int8
            scale = parts["scale"]
            # Symmetric per row: the largest weight of each row maps near +-127.
            assert torch.allclose(scale.squeeze(1), w.abs().amax(1) / 127.5, rtol=1e-5)
            rebuilt = parts["qdata"].float() * scale
            assert (rebuilt - w).abs().le(scale / 2 + 1e-7).all()
            assert torch.equal(dequantized(layer.weight), rebuilt)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_agreement_and_layers_against_the_float_parent(reg, mlp, digits, config):
    cmp = reg.compare("fp32", config)
    model = reg.model(config)
    with torch.no_grad():
        pred_a = mlp(digits.test_inputs).argmax(1).numpy()
        pred_b = model(digits.test_inputs).argmax(1).numpy()
    assert cmp.agreement == pytest.approx(float(np.mean(pred_a == pred_b)))
    assert cmp.agreement > 0.95
    layers = cmp.layers
    layers = layers[layers["row_type"] == "parameters"]  # ReLU: an activation-only row
    assert list(layers.index) == ["1", "3"]
    for name in ("1", "3"):
        a = torch.cat([mlp.get_submodule(name).weight.flatten(), mlp.get_submodule(name).bias])
        q = model.get_submodule(name)
        weight = dict(stored_tensors(q.weight))
        groups = (weight["scale"].shape[1], -1)  # one scale per row, or per group of columns
        centred = weight["qdata"].float() - weight["zero_point"].float().repeat_interleave(
            64 // groups[0], dim=1
        )
        rebuilt = (centred.unflatten(1, groups) * weight["scale"].unsqueeze(-1)).flatten(1)
        b = torch.cat([rebuilt.flatten(), q.bias.detach()]).double()
        a = a.detach().double()
        row = layers.loc[name]
        assert row["weight_rel_change"] == pytest.approx(float((b - a).norm() / a.norm()), rel=1e-6)
        assert 0 < row["weight_rel_change"] < 0.1
        assert row["zero_b_only"] == pytest.approx(float(((b == 0) & (a != 0)).double().mean()))
        assert row["cka"] > 0.99
        assert 0 < row["activation_rel_change"] < 0.1
    hist = cmp.histograms("1")["weights"]
    assert hist["a"].sum() == hist["b"].sum() == 64 * 64 + 64


def test_transfer_attack_from_the_float_parent(reg):
    for config in CONFIGS:
        assert not has_gradients(reg.model(config))
    assert has_gradients(reg.model("fp32"))
    cmp = reg.compare("fp32", "int8_dynamic_activation_int8_weight")
    details = cmp.adversarial_details(max_instances=128, steps=3)
    assert 0.0 <= details["value"] <= 1.0
    assert details["source_a"] == "direct"
    assert details["source_b"] == "transfer from fp32"
    assert details["flipped_b"] > 0


def test_fingerprint_follows_the_stored_weights(reg, mlp):
    model = reg.model("int8_weight_only")
    before = model_fingerprint(model)
    assert model_fingerprint(copy.deepcopy(model)) == before
    # A checkpoint of the quantized state_dict, loaded into a fresh float model.
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    loaded = copy.deepcopy(mlp)
    loaded.load_state_dict(torch.load(buffer, weights_only=False), assign=True)
    assert model_fingerprint(loaded) == before
    # Same int8 data and scales, other computation (activations quantized): another model.
    assert reg.record("int8_dynamic_activation_int8_weight").fingerprint != before
    changed = copy.deepcopy(model)
    changed[1].weight.qdata[0, 0] += 1
    assert model_fingerprint(changed) != before
    rescaled = copy.deepcopy(model)
    rescaled[3].weight.scale[0, 0] *= 2
    assert model_fingerprint(rescaled) != before
    assert model_fingerprint(model) == before  # the copies were changed, not the model


def test_store_replays_quantize_and_skips_safetensors(tmp_path, digits, mlp):
    reg = cnc.ModelRegistry(store=tmp_path / "s", keep_weights=True)
    reg.set_data(digits.test_inputs, digits.test_labels)
    reg.add("fp32", mlp)
    reg.compress("fp32", "quantize", name="int8")
    reg.evaluate(progress=False)
    # safetensors holds plain tensors only: the torchao model is rebuilt by replay.
    assert reg.record("int8").info["weights_saved"] is False
    again = cnc.ModelRegistry(store=tmp_path / "s")
    again.set_data(digits.test_inputs, digits.test_labels)
    again.add("fp32", mlp)
    rebuilt = again.model("int8")
    assert model_fingerprint(rebuilt) == reg.record("int8").fingerprint
    assert again.metrics().loc["int8", "size_bytes"] == reg.metrics().loc["int8", "size_bytes"]


def test_int4_weight_only_works_or_names_what_is_missing(mlp):
    try:
        child = apply_operation(mlp, "quantize", config="int4_weight_only", group_size=32)
    except RuntimeError as exc:
        message = str(exc)
        assert "int4_weight_only" in message and "intx_int4_weight_only" in message
        # This CPU build: mslk for the plain formats, CUDA for the tiled one.
        assert "mslk" in message and "CUDA" in message
    else:
        assert is_tensor_subclass(child[1].weight)
        stats = efficiency(child, torch.zeros(2, 64), latency=False, memory=False)
        assert stats["size_bytes"] < size_bytes(mlp) / 4


def test_parameter_checks(mlp):
    assert operations()["quantize"]["params"] == {"config": "int8_weight_only", "group_size": None}
    with pytest.raises(ValueError, match="config must be one of"):
        apply_operation(mlp, "quantize", config="int3")
    with pytest.raises(ValueError, match="group_size applies to"):
        apply_operation(mlp, "quantize", group_size=32)
    with pytest.raises(RuntimeError, match=r"input widths \[64\] are not multiples"):
        apply_operation(mlp, "quantize", config="intx_int4_weight_only", group_size=48)
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        apply_operation(nn.Sequential(nn.Conv1d(1, 1, 3)), "quantize")
    assert "torchao" not in operation_record("prune", {"amount": 0.5})["versions"]
    # The parent is never modified.
    assert not any(is_tensor_subclass(p) for p in mlp.parameters())


def test_without_torchao_the_operation_says_how_to_install(monkeypatch, mlp):
    for name in [m for m in sys.modules if m == "torchao" or m.startswith("torchao.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'cnc-widgets\[torchao\]'"):
        apply_operation(mlp, "quantize")
    assert "quantize" in operations()  # listed either way; only running it needs torchao
