"""Models quantized with optimum-quanto: the ``quanto`` operation and the user's own.

A small MLP trained on the digits. Sizes are checked against the bytes the layers' shapes
imply (int8: one byte per weight, int4: half a byte, plus a float scale per row or group),
layer measures against the int8 data and scales the weights store, agreement against the
two models' own predictions.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import optimum.quanto as oq
import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.compress import apply_operation, operations
from cnc_widgets.compress.tensor_subclass import dequantized, is_tensor_subclass, stored_tensors
from cnc_widgets.evaluate.efficiency import size_bytes
from cnc_widgets.evaluate.fingerprint import model_fingerprint
from cnc_widgets.metrics.adversarial import has_gradients

from .digits_mlp import LINEARS, train_digits_mlp


@pytest.fixture(scope="module")
def mlp(digits):
    return train_digits_mlp(digits, hidden=128)


def user_quantized(mlp: nn.Module, weights: str) -> nn.Module:
    """What a user writes with quanto."""
    model = copy.deepcopy(mlp)
    oq.quantize(model, weights=getattr(oq, weights))
    oq.freeze(model)
    return model


@pytest.fixture(scope="module")
def reg(digits, mlp):
    r = cnc.ModelRegistry(store=None)
    r.set_data(digits.test_inputs, digits.test_labels, classes=digits.classes)
    r.add("fp32", mlp)
    for weights in ("qint8", "qfloat8"):
        r.compress("fp32", "quanto", name=weights, weights=weights)
        r.add(f"user-{weights}", user_quantized(mlp, weights), parent="fp32", operation="quanto")
    r.evaluate(progress=False)
    return r


@pytest.mark.parametrize("weights", ["qint8", "qfloat8"])
def test_compress_is_what_a_user_writes(reg, weights):
    made = reg.model(weights)
    assert all(is_tensor_subclass(made.get_submodule(n).weight) for n in LINEARS)
    assert reg.record(weights).fingerprint == reg.record(f"user-{weights}").fingerprint
    record = reg.record(weights)
    assert record.operation == "quanto" and record.params["weights"] == weights
    assert record.info["versions"]["optimum-quanto"]
    assert operations()["quanto"]["params"]["activations"] is None


@pytest.mark.parametrize("weights", ["qint8", "qint4"])
def test_size_is_a_quarter_or_an_eighth_plus_scales(mlp, weights):
    model = apply_operation(mlp, "quanto", weights=weights)
    numel = sum(mlp.get_submodule(n).weight.numel() for n in LINEARS)
    data = scales = 0
    for n in LINEARS:
        for part, inner in stored_tensors(model.get_submodule(n).weight):
            nbytes = inner.numel() * inner.element_size()
            if part.startswith("_data"):
                data += nbytes
            else:
                scales += nbytes
    # int8: one byte per weight (a quarter of fp32); int4: two per byte (an eighth).
    assert data == (numel if weights == "qint8" else numel // 2)
    # Scales: one float32 per output row (int8); int4 a scale and a shift per group of
    # inputs (the group is the row here: 64 and 128 inputs fit quanto's group of 128).
    rows = sum(mlp.get_submodule(n).out_features for n in LINEARS)
    assert scales == 4 * rows * (1 if weights == "qint8" else 2)
    state = model.state_dict()
    payload = sum(v.numel() * v.element_size() for v in state.values())
    biases = 4 * sum(mlp.get_submodule(n).out_features for n in LINEARS)
    quanto_scalars = 4 * sum(1 for k in state if k.endswith(("input_scale", "output_scale")))
    assert payload == data + scales + biases + quanto_scalars
    buffer = io.BytesIO()
    torch.save({k: v.clone() for k, v in state.items()}, buffer)
    # The state_dict's file: the plain tensors plus its version metadata (a few hundred bytes).
    assert buffer.getbuffer().nbytes <= size_bytes(model) <= buffer.getbuffer().nbytes + 600
    # Against the float payload (4 bytes per parameter): the data a quarter or an eighth,
    # plus float scales and the biases that stay float.
    fp32 = 4 * sum(p.numel() for p in mlp.parameters())
    assert payload < (0.3 if weights == "qint8" else 0.2) * fp32
    assert size_bytes(model) < (0.4 if weights == "qint8" else 0.3) * size_bytes(mlp)
    # A user's own quanto model is the same model.
    assert model_fingerprint(model) == model_fingerprint(user_quantized(mlp, weights))


def test_registry_sizes_against_the_float_parent(reg):
    table = reg.metrics()
    for weights in ("qint8", "qfloat8"):
        assert table.loc[weights, "size_bytes"] == size_bytes(reg.model(weights))
        assert table.loc[weights, "size_bytes"] < 0.4 * table.loc["fp32", "size_bytes"]
        assert table.loc[weights, "params"] == table.loc["fp32", "params"]


def test_int4_runs_outside_inference_mode_only(mlp, digits):
    # quanto's int4 weights dequantize through a fallback that returns a view of an
    # inference tensor, which torch 2.13 refuses under torch.inference_mode (where the
    # registry evaluates): the registry says so instead of adding a model it cannot run.
    model = apply_operation(mlp, "quanto", weights="qint4")
    with torch.no_grad():
        assert model(digits.test_inputs).shape == (len(digits.test_inputs), 10)
    reg = cnc.ModelRegistry()
    reg.set_data(digits.test_inputs, digits.test_labels)
    reg.add("fp32", mlp)
    with pytest.raises(ValueError, match=r"fails on the evaluation data.*inference tensor"):
        reg.compress("fp32", "quanto", weights="qint4")


@pytest.mark.parametrize("weights", ["qint8", "qfloat8"])
def test_agreement_and_layers_against_the_float_parent(reg, mlp, digits, weights):
    cmp = reg.compare("fp32", weights)
    model = reg.model(weights)
    with torch.no_grad():
        pred_a = mlp(digits.test_inputs).argmax(1).numpy()
        pred_b = model(digits.test_inputs).argmax(1).numpy()
    assert cmp.agreement == pytest.approx(float(np.mean(pred_a == pred_b)))
    assert cmp.agreement > 0.9
    layers = cmp.layers
    for n in LINEARS:
        q = model.get_submodule(n).weight
        parts = dict(stored_tensors(q))
        # Symmetric per row: data times its row's scale, computed here from the parts.
        values = parts["_data"].float() * parts["_scale"]
        assert torch.equal(dequantized(q), values)
        a = torch.cat([mlp.get_submodule(n).weight.flatten(), mlp.get_submodule(n).bias])
        b = torch.cat([values.flatten(), model.get_submodule(n).bias.detach()])
        a, b = a.detach().double(), b.double()
        row = layers.loc[n]
        assert row["weight_rel_change"] == pytest.approx(float((b - a).norm() / a.norm()), rel=1e-6)
        assert 0 < row["weight_rel_change"] < 0.15
        assert row["cka"] > 0.98
    assert row["zero_b_only"] == pytest.approx(float(((b == 0) & (a != 0)).double().mean()))


def test_activations_quantized_from_a_calibration_batch(reg, mlp, digits):
    # Activation scales are calibrated on the batch given. (quanto's activation quantization
    # fails under torch.inference_mode, where the registry evaluates: tested outside it.)
    w8a8 = apply_operation(
        mlp, "quanto", weights="qint8", activations="qint8", example_input=digits.test_inputs
    )
    for n in LINEARS:
        assert torch.equal(
            dequantized(w8a8.get_submodule(n).weight),
            dequantized(reg.model("qint8").get_submodule(n).weight),
        )
        assert float(w8a8.get_submodule(n).input_scale) != 1.0  # calibrated on the data
    assert model_fingerprint(w8a8) != reg.record("qint8").fingerprint
    with torch.no_grad():
        pred = w8a8(digits.test_inputs).argmax(1)
    assert float((pred == digits.test_labels).double().mean()) > 0.85
    with pytest.raises(ValueError, match="calibration batch"):
        apply_operation(mlp, "quanto", activations="qint8")
    with pytest.raises(ValueError, match="weights must be one of"):
        apply_operation(mlp, "quanto", weights="int8")


def test_fingerprint_follows_the_stored_weights(reg, mlp):
    # quanto's weights cannot be deep-copied (their clone is not implemented), so the
    # copies here are quantized again from the float model.
    before = reg.record("qint8").fingerprint
    assert model_fingerprint(user_quantized(mlp, "qint8")) == before
    changed = user_quantized(mlp, "qint8")
    changed[1].weight._data[0, 0] += 1
    assert model_fingerprint(changed) != before
    rescaled = user_quantized(mlp, "qint8")
    rescaled[3].weight._scale[0, 0] *= 2
    assert model_fingerprint(rescaled) != before
    assert model_fingerprint(reg.model("qint8")) == before


def test_transfer_attack_from_the_float_parent(reg):
    for weights in ("qint8", "qfloat8"):
        assert not has_gradients(reg.model(weights))
    cmp = reg.compare("fp32", "qint8")
    details = cmp.adversarial_details(max_instances=128, steps=3)
    assert 0.0 <= details["value"] <= 1.0
    assert details["source_a"] == "direct"
    assert details["source_b"] == "transfer from fp32"
    assert details["flipped_b"] > 0


def test_store_replays_quanto(tmp_path, digits, mlp):
    reg = cnc.ModelRegistry(store=tmp_path / "s", keep_weights=True)
    reg.set_data(digits.test_inputs, digits.test_labels)
    reg.add("fp32", mlp)
    reg.compress("fp32", "quanto", name="int8", weights="qint8")
    reg.evaluate(progress=False)
    again = cnc.ModelRegistry(store=tmp_path / "s")
    again.set_data(digits.test_inputs, digits.test_labels)
    again.add("fp32", mlp)
    rebuilt = again.model("int8")
    assert model_fingerprint(rebuilt) == reg.record("int8").fingerprint
    assert again.metrics().loc["int8", "size_bytes"] == reg.metrics().loc["int8", "size_bytes"]
