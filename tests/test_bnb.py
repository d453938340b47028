"""Models quantized with bitsandbytes (the ``bnb`` operation) on its CPU backend.

A small MLP trained on the digits and the tiny language models. Weights are checked against
bitsandbytes' own quantize -> dequantize of the parent's weights and against a direct
decoding of the stored codes, sizes against the tensors the layers store, agreement and the
layer table against the two models' own predictions and weights.
"""

from __future__ import annotations

import io
import math
import sys

import bitsandbytes.functional as bnb_f
import numpy as np
import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets import examples
from cnc_widgets.compress import apply_operation, operations
from cnc_widgets.compress.bnb_weight import dequantized_weight, stored_parts
from cnc_widgets.compress.tensor_subclass import dequantized, stored_bytes
from cnc_widgets.evaluate.efficiency import efficiency, parameter_counts, size_bytes
from cnc_widgets.evaluate.fingerprint import model_fingerprint
from cnc_widgets.metrics.adversarial import has_gradients
from cnc_widgets.metrics.weights import module_weights

from .digits_mlp import LINEARS, train_digits_mlp

VARIANTS = {
    "int8": {"bits": 8},
    "nf4": {"bits": 4},
    "fp4-dq": {"bits": 4, "quant_type": "fp4", "double_quant": True, "blocksize": 32},
}


@pytest.fixture(scope="module")
def mlp(digits):
    return train_digits_mlp(digits, hidden=128)


@pytest.fixture(scope="module")
def reg(digits, mlp):
    r = cnc.ModelRegistry(store=None)
    r.set_data(digits.test_inputs, digits.test_labels, classes=digits.classes)
    r.add("base", mlp)
    for name, params in VARIANTS.items():
        r.compress("base", "bnb", name=name, **params)
    r.evaluate(progress=False)
    return r


def _reference(weight: torch.Tensor, params: dict) -> torch.Tensor:
    """bitsandbytes' own quantize -> dequantize of a float weight."""
    if params["bits"] == 8:
        # Int8Params quantizes the weight cast to float16, row-wise absmax to int8.
        codes, scales, _ = bnb_f.int8_vectorwise_quant(weight.detach().half())
        return bnb_f.int8_vectorwise_dequant(codes, scales)
    codes, state = bnb_f.quantize_4bit(
        weight.detach(),
        blocksize=params.get("blocksize", 64),
        quant_type=params.get("quant_type", "nf4"),
        compress_statistics=params.get("double_quant", False),
    )
    return bnb_f.dequantize_4bit(codes, state)


def _decoded(layer: nn.Module, params: dict) -> torch.Tensor:
    """The weight decoded here from the stored codes and scales, without bitsandbytes."""
    parts = dict(stored_parts(layer))
    rows, cols = layer.out_features, layer.in_features
    if params["bits"] == 8:
        return parts["CB"].float() * parts["SCB"][:, None] / 127
    packed = parts["data"].reshape(-1)
    codes = torch.stack([packed >> 4, packed & 0xF], dim=1).reshape(-1).long()
    absmax = parts["absmax"]
    if "nested_absmax" in parts:  # 8-bit scales of the scales, per block of 256, plus offset
        state = layer.weight.quant_state
        nested = parts["nested_code"][absmax.long()]
        per = state.state2.blocksize
        absmax = nested * parts["nested_absmax"].repeat_interleave(per)[: len(nested)]
        absmax = absmax + state.offset
    values = parts["code"][codes] * absmax.repeat_interleave(layer.weight.quant_state.blocksize)
    return values[: rows * cols].reshape(rows, cols)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_weights_are_bitsandbytes_own_quantization(reg, mlp, name):
    params = VARIANTS[name]
    model = reg.model(name)
    table = module_weights(model)
    for n in LINEARS:
        layer, parent = model.get_submodule(n), mlp.get_submodule(n)
        assert type(layer).__name__ == ("Linear8bitLt" if params["bits"] == 8 else "Linear4bit")
        expected = _reference(parent.weight, params)
        assert torch.equal(table[n]["weight"], expected)
        assert torch.equal(dequantized_weight(layer), expected)
        assert torch.allclose(_decoded(layer, params), expected, rtol=1e-6, atol=1e-7)
        assert torch.equal(table[n]["bias"], parent.bias.detach())
        # Close to the parent's weight, yet changed.
        w = parent.weight.detach()
        change = float((expected - w).norm() / w.norm())
        assert 0 < change < (0.02 if params["bits"] == 8 else 0.2)
    record = reg.record(name)
    assert record.operation == "bnb" and record.params["bits"] == params["bits"]
    assert record.info["versions"]["bitsandbytes"] == "0.50.2"
    assert operations()["bnb"]["params"]["threshold"] == 0.0


@pytest.mark.parametrize("name", list(VARIANTS))
def test_size_is_what_the_layers_store(mlp, name):
    params = VARIANTS[name]
    model = apply_operation(mlp, "bnb", **params)
    numel = sum(mlp.get_submodule(n).weight.numel() for n in LINEARS)
    rows = sum(mlp.get_submodule(n).out_features for n in LINEARS)
    parts: dict[str, int] = {}
    for n in LINEARS:
        for part, t in stored_parts(model.get_submodule(n)):
            parts[part] = parts.get(part, 0) + t.numel() * t.element_size()
        # The parameter read alone: the same codes (and, for 4 bit, the same scales).
        assert stored_bytes(model.get_submodule(n).weight) <= sum(
            t.numel() * t.element_size() for _, t in stored_parts(model.get_submodule(n))
        )
    if params["bits"] == 8:
        assert parts == {"CB": numel, "SCB": 4 * rows}  # a byte a weight, a float a row
    else:
        per_layer = [
            math.ceil(mlp.get_submodule(n).weight.numel() / params.get("blocksize", 64))
            for n in LINEARS
        ]
        blocks = sum(per_layer)
        assert parts["data"] == numel // 2  # two 4-bit codes a byte
        assert parts["code"] == 2 * 16 * 4  # the 16 grid values, per layer
        if params.get("double_quant"):
            assert parts["absmax"] == blocks  # one uint8 a block, and their own scales
            assert parts["nested_absmax"] == 4 * sum(math.ceil(b / 256) for b in per_layer)
        else:
            assert parts["absmax"] == 4 * blocks
    state = model.state_dict()
    payload = sum(v.numel() * v.element_size() for v in state.values())
    biases = 4 * rows
    # Besides the parts: the biases, and bitsandbytes' metadata (int8: a format byte per
    # layer; 4 bit: the quant_state's settings as a JSON byte tensor per layer).
    metadata = sum(
        v.numel() for k, v in state.items() if k.endswith("weight_format") or "quant_state" in k
    )
    assert payload == sum(parts.values()) + biases + metadata
    buffer = io.BytesIO()
    torch.save({k: v.clone() for k, v in state.items()}, buffer)
    assert buffer.getbuffer().nbytes <= size_bytes(model) <= buffer.getbuffer().nbytes + 600
    fp32 = 4 * sum(p.numel() for p in mlp.parameters())
    assert payload < (0.3 if params["bits"] == 8 else 0.25) * fp32
    assert parameter_counts(model)[0] == parameter_counts(mlp)[0]


def test_registry_metrics_against_the_float_parent(reg, digits, mlp):
    table = reg.metrics()
    for name in VARIANTS:
        assert table.loc[name, "size_bytes"] == size_bytes(reg.model(name))
        assert table.loc[name, "size_bytes"] < 0.4 * table.loc["base", "size_bytes"]
        assert table.loc[name, "params"] == table.loc["base", "params"]
    assert table.loc["nf4", "size_bytes"] < table.loc["int8", "size_bytes"]
    # MACs: bitsandbytes' matmuls counted as the float Linears they stand for.
    stats = efficiency(reg.model("nf4"), digits.test_inputs[:4], latency=False)
    assert stats["macs"] == efficiency(mlp, digits.test_inputs[:4], latency=False)["macs"]
    assert stats["macs"] == 4 * (64 * 128 + 128 * 10)


@pytest.mark.parametrize("name", ["int8", "nf4"])
def test_agreement_and_layers_against_the_float_parent(reg, mlp, digits, name):
    cmp = reg.compare("base", name)
    model = reg.model(name)
    with torch.no_grad():
        pred_a = mlp(digits.test_inputs).argmax(1).numpy()
        pred_b = model(digits.test_inputs).argmax(1).numpy()
    assert cmp.agreement == pytest.approx(float(np.mean(pred_a == pred_b)))
    assert cmp.agreement > (0.97 if name == "int8" else 0.85)
    layers = cmp.layers
    for n in LINEARS:
        w = _reference(mlp.get_submodule(n).weight, VARIANTS[name])
        a = torch.cat([mlp.get_submodule(n).weight.flatten(), mlp.get_submodule(n).bias])
        b = torch.cat([w.flatten(), model.get_submodule(n).bias.detach()])
        a, b = a.detach().double(), b.double()
        row = layers.loc[n]
        assert row["weight_rel_change"] == pytest.approx(float((b - a).norm() / a.norm()), rel=1e-6)
        assert 0 < row["weight_rel_change"] < (0.02 if name == "int8" else 0.2)
        assert row["cka"] > 0.9


def test_int8_forward_is_llm_int8(mlp, digits):
    # The forward quantizes each input row to int8 (from float16) and multiplies in int8;
    # with threshold > 0 the outlier input columns are multiplied in float16 instead.
    x = digits.test_inputs[:64].reshape(64, -1)
    x = x.clone()
    x[:, 5] = 40.0  # an outlier feature
    for threshold in (0.0, 6.0):
        model = apply_operation(mlp, "bnb", bits=8, threshold=threshold)
        layer = model.get_submodule("1")
        cb, scb = dict(stored_parts(layer))["CB"], dict(stored_parts(layer))["SCB"]
        xa, sa, outliers = bnb_f.int8_vectorwise_quant(x.half(), threshold=threshold)
        with torch.inference_mode():
            out = layer(x)
        if threshold == 0.0:
            ints = xa.int() @ cb.int().T  # exact integer products
            expected = ints.float() * (sa[:, None] * scb[None, :]) / (127 * 127)
            expected = expected + layer.bias
            assert outliers is None
            assert torch.allclose(out, expected, rtol=1e-3, atol=1e-3)
            plain = out
        else:
            assert outliers.tolist() == [5]
            # The outlier column's product is exact in float16: closer to the float layer.
            exact = x @ mlp.get_submodule("1").weight.T + mlp.get_submodule("1").bias
            assert (out - exact).abs().max() < (plain - exact).abs().max()
    assert model_fingerprint(model) != model_fingerprint(apply_operation(mlp, "bnb", bits=8))


def test_fingerprint_follows_the_stored_weights(reg, mlp, digits):
    before = reg.record("int8").fingerprint
    again = apply_operation(mlp, "bnb", bits=8)
    assert model_fingerprint(again) == before
    with torch.inference_mode():
        again(digits.test_inputs)  # the forward moves codes and scales into the layer's state
    assert model_fingerprint(again) == before
    again[1].weight.data[0, 0] += 1
    assert model_fingerprint(again) != before
    rescaled = apply_operation(mlp, "bnb", bits=8)
    rescaled[3].weight.SCB[0] *= 2
    assert model_fingerprint(rescaled) != before
    four = reg.record("nf4").fingerprint
    assert model_fingerprint(apply_operation(mlp, "bnb", bits=4)) == four
    assert model_fingerprint(apply_operation(mlp, "bnb", bits=4, quant_type="fp4")) != four
    scaled = apply_operation(mlp, "bnb", bits=4)
    scaled[1].weight.quant_state.absmax[0] *= 2
    assert model_fingerprint(scaled) != four
    assert model_fingerprint(reg.model("int8")) == before


def test_transfer_attack_from_the_float_parent(reg):
    for name in VARIANTS:
        assert not has_gradients(reg.model(name))
    cmp = reg.compare("base", "nf4")
    value = cmp.adversarial_overlap(max_instances=32, steps=3)
    details = cmp.adversarial_details(max_instances=32, steps=3)
    assert details["value"] == value and 0.0 <= value <= 1.0
    assert details["source_a"] == "direct"
    assert details["source_b"] == "transfer from base"
    assert details["flipped_b"] > 0


def test_compress_end_to_end(digits, mlp):
    reg = cnc.ModelRegistry(store=None)
    reg.set_data(digits.test_inputs, digits.test_labels)
    reg.add("base", mlp)
    reg.compress("base", "bnb", bits=4)
    reg.evaluate(progress=False)
    (name,) = [n for n in reg.metrics().index if n != "base"]
    cmp = reg.compare("base", name)
    assert cmp.agreement > 0.85
    assert set(LINEARS) <= set(cmp.layers.index)
    assert 0.0 <= cmp.adversarial_overlap(max_instances=32, steps=3) <= 1.0
    changed = reg.record(name).info["sizes"]["changed"]
    assert all(changed[n].startswith("quantized") for n in LINEARS)


def test_restore_takes_a_layer_back_whole(mlp):
    child = apply_operation(mlp, "bnb", bits=8)
    back = apply_operation(child, "restore", pattern="^3[.]", source=mlp)
    assert type(back[1]).__name__ == "Linear8bitLt" and type(back[3]) is nn.Linear
    assert torch.equal(back[3].weight, mlp[3].weight)


def test_store_replays_bnb(tmp_path, digits, mlp):
    reg = cnc.ModelRegistry(store=tmp_path / "s", keep_weights=True)
    reg.set_data(digits.test_inputs, digits.test_labels)
    reg.add("base", mlp)
    reg.compress("base", "bnb", name="nf4", bits=4)
    reg.evaluate(progress=False)
    again = cnc.ModelRegistry(store=tmp_path / "s")
    again.set_data(digits.test_inputs, digits.test_labels)
    again.add("base", mlp)
    rebuilt = again.model("nf4")
    assert model_fingerprint(rebuilt) == reg.record("nf4").fingerprint
    assert again.metrics().loc["nf4", "size_bytes"] == reg.metrics().loc["nf4", "size_bytes"]


def test_gpt2_conv1d_projections_are_quantized(tiny_gpt2, lm_tokenizer):
    child = apply_operation(tiny_gpt2, "bnb", bits=8)
    for block in child.transformer.h:
        for layer in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            assert type(layer).__name__ == "Linear8bitLt"
    # The tied head stays the embedding's float matrix.
    assert child.lm_head.weight is child.transformer.wte.weight
    assert parameter_counts(child)[0] == parameter_counts(tiny_gpt2)[0]
    name = "transformer.h.0.mlp.c_fc"
    parent_w = module_weights(tiny_gpt2)[name]["weight"]  # Conv1D: (in, out)
    child_w = module_weights(child)[name]["weight"]
    assert child_w.shape == parent_w.shape
    assert torch.equal(child_w, _reference(parent_w.T, {"bits": 8}).T)
    enc = examples.token_windows(lm_tokenizer, examples.lee_texts(), length=24, count=2)
    with torch.no_grad(), torch.inference_mode():
        same = child(**enc).logits.argmax(-1) == tiny_gpt2(**enc).logits.argmax(-1)
    assert same.float().mean() > 0.8


def test_tied_llama_keeps_its_head_tied(tiny_lm):
    for bits in (8, 4):
        child = apply_operation(tiny_lm, "bnb", bits=bits)
        assert child.lm_head.weight is child.model.embed_tokens.weight
        assert type(child.lm_head) is nn.Linear
        assert type(child.model.layers[0].mlp.up_proj).__name__.startswith("Linear")
        assert type(child.model.layers[0].mlp.up_proj) is not nn.Linear
        assert parameter_counts(child)[0] == parameter_counts(tiny_lm)[0]


def test_include_and_exclude(mlp):
    only = apply_operation(mlp, "bnb", include="3")
    assert type(only[1]) is nn.Linear and type(only[3]).__name__ == "Linear8bitLt"
    rest = apply_operation(mlp, "bnb", exclude=["3"])
    assert type(rest[1]).__name__ == "Linear8bitLt" and type(rest[3]) is nn.Linear


def test_clear_errors(mlp, monkeypatch):
    with pytest.raises(ValueError, match=r"bits must be 8 \(LLM.int8\) or 4"):
        apply_operation(mlp, "bnb", bits=2)
    with pytest.raises(ValueError, match="quant_type must be one of"):
        apply_operation(mlp, "bnb", bits=4, quant_type="int4")
    with pytest.raises(ValueError, match="blocksize must be one of"):
        apply_operation(mlp, "bnb", bits=4, blocksize=100)
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        apply_operation(mlp, "bnb", threshold=-1)
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        apply_operation(nn.Sequential(nn.Conv2d(1, 2, 3)), "bnb")
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight
    with pytest.raises(ValueError, match=r"are all tied or left out by include/exclude"):
        apply_operation(tied, "bnb")
    with pytest.raises(ValueError, match="left out by include/exclude"):
        apply_operation(mlp, "bnb", include="head*")
    with pytest.raises(ValueError, match="unknown parameter"):
        apply_operation(mlp, "bnb", weights="int8")
    # The package missing: the error gives the pip command.
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ImportError, match=r"pip install 'cnc-widgets\[bnb\]'"):
        apply_operation(mlp, "bnb")


def test_an_int8_weight_read_alone_after_a_forward_names_the_layer_reader(mlp, digits):
    model = apply_operation(mlp, "bnb", bits=8)
    assert torch.equal(dequantized(model[1].weight), dequantized_weight(model[1]))
    with torch.inference_mode():
        model(digits.test_inputs)
    with pytest.raises(TypeError, match=r"dequantized_weight\(layer\)"):
        dequantized(model[1].weight)
    assert torch.equal(module_weights(model)["1"]["weight"], _reference(mlp[1].weight, {"bits": 8}))
