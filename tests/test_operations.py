"""Compression operations on the real digits CNN and MiniLM: children change, parents never."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import nn

from cnc_widgets import examples
from cnc_widgets.compress import apply_operation, operation_record, operations
from cnc_widgets.compress.low_rank import LowRankLinear
from cnc_widgets.compress.pruning import prunable_tensors
from cnc_widgets.evaluate.efficiency import efficiency


def state_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def stats(model: nn.Module, inputs) -> dict:
    return efficiency(model, inputs, latency=False, memory=False)


@pytest.fixture(scope="module")
def cnn_input(digits):
    return digits.test_inputs[:16]


@pytest.fixture(scope="module")
def cnn_stats(digits_cnn, cnn_input):
    return stats(digits_cnn, cnn_input)


@pytest.fixture(scope="module")
def minilm():
    encoder, tokenizer = examples.load_minilm()
    torch.manual_seed(0)
    model = examples.TextClassifier(encoder, 3).eval()
    batch = tokenizer(
        ["what a lovely morning", "the worst service I have ever had"],
        padding="max_length",
        max_length=16,
        return_tensors="pt",
    )
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    return model, inputs


@pytest.fixture(scope="module")
def minilm_stats(minilm):
    model, inputs = minilm
    return stats(model, inputs)


def scale_weights(model: nn.Module, factor: float = 2.0) -> nn.Module:
    # Modifies its argument in place, as user code often does.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)
    return model


CNN_OPS = [
    ("prune", {"amount": 0.5}),
    ("prune", {"amount": 0.3, "scope": "tensor", "include_norms": True}),
    ("quantize_dynamic", {}),
    ("half", {}),
    ("bfloat16", {}),
    ("low_rank", {"rank": 8}),
    (scale_weights, {"factor": 3.0}),
]


@pytest.mark.parametrize(("operation", "params"), CNN_OPS, ids=lambda v: getattr(v, "__name__", v))
def test_parent_is_never_modified_cnn(digits_cnn, cnn_input, operation, params):
    before = state_hash(digits_cnn)
    child = apply_operation(digits_cnn, operation, **params)
    assert state_hash(digits_cnn) == before
    assert state_hash(child) != before
    assert child(cnn_input).shape == digits_cnn(cnn_input).shape


def test_operations_catalogue():
    ops = operations()
    assert set(ops) == {
        "prune",
        "prune_structured",
        "quantize_dynamic",
        "quantize",
        "gguf",
        "quanto",
        "bnb",
        "half",
        "bfloat16",
        "low_rank",
        "drop_layers",
        "restore",
    }
    assert ops["prune"]["params"] == {
        "amount": "<required>",
        "scope": "global",
        "include_norms": False,
        "modules": None,
        "biases": False,
        "include": None,
        "exclude": None,
    }
    assert ops["low_rank"]["params"] == {"rank": None, "energy": None}
    assert ops["restore"]["needs"] == ["source"]
    assert all(isinstance(o["description"], str) and o["description"] for o in ops.values())


def test_prune_global_is_permanent_and_exact(digits_cnn, cnn_input, cnn_stats):
    child = apply_operation(digits_cnn, "prune", amount=0.5, scope="global")
    assert list(child.state_dict()) == list(digits_cnn.state_dict())
    assert not any(m._forward_pre_hooks for m in child.modules())
    chosen = [p for _, p in prunable_tensors(child)]
    total = sum(p.numel() for p in chosen)
    zeros = sum(int((p == 0).sum()) for p in chosen)
    assert abs(zeros - total / 2) <= 1
    # BatchNorm is excluded by default.
    assert torch.equal(child.features[1].weight, digits_cnn.features[1].weight)
    s = stats(child, cnn_input)
    assert s["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert s["sparse_size_bytes"] < 0.7 * cnn_stats["sparse_size_bytes"]
    assert s["effective_macs"] < 0.75 * s["macs"]
    assert s["size_bytes"] == cnn_stats["size_bytes"]


def test_prune_tensor_scope_norms_and_module_filter(digits_cnn):
    # Every tensor, biases and the head included, only on request (the default leaves them).
    child = apply_operation(
        digits_cnn,
        "prune",
        amount=0.25,
        scope="tensor",
        include_norms=True,
        biases=True,
        include=".*",
    )
    for p in child.parameters():
        assert abs(int((p == 0).sum()) - 0.25 * p.numel()) <= 1
    only_conv = apply_operation(digits_cnn, "prune", amount=0.5, modules=["Conv2d"])
    assert torch.equal(only_conv.classifier[1].weight, digits_cnn.classifier[1].weight)
    assert (only_conv.features[0].weight == 0).any()


def test_prune_structured_cnn(digits_cnn, cnn_input, cnn_stats):
    before = state_hash(digits_cnn)
    child = apply_operation(digits_cnn, "prune_structured", amount=0.5, example_input=cnn_input)
    assert state_hash(digits_cnn) == before
    assert child.features[0].out_channels == 8
    assert child(cnn_input).shape == (16, 10)
    s = stats(child, cnn_input)
    assert s["macs"] < 0.5 * cnn_stats["macs"]
    assert s["size_bytes"] < 0.5 * cnn_stats["size_bytes"]
    with pytest.raises(ValueError, match="example_input"):
        apply_operation(digits_cnn, "prune_structured", amount=0.5)
    int8 = apply_operation(digits_cnn, "quantize_dynamic")
    with pytest.raises(ValueError, match="quantized"):
        apply_operation(int8, "prune_structured", amount=0.5, example_input=cnn_input)


def test_prune_structured_minilm(minilm, minilm_stats):
    model, inputs = minilm
    before = state_hash(model)
    child = apply_operation(model, "prune_structured", amount=0.5)
    assert state_hash(model) == before
    attention = child.encoder.encoder.layer[0].attention.self
    assert attention.num_attention_heads == 6 and attention.query.out_features == 192
    assert child.encoder.config.intermediate_size == 768
    assert model.encoder.config.intermediate_size == 1536
    assert child(**inputs).shape == (2, 3)
    s = stats(child, inputs)
    assert s["macs"] < 0.6 * minilm_stats["macs"]
    assert s["size_bytes"] < 0.85 * minilm_stats["size_bytes"]


def test_quantize_dynamic_minilm(minilm, minilm_stats):
    model, inputs = minilm
    before = state_hash(model)
    child = apply_operation(model, "quantize_dynamic", dtype="qint8")
    assert state_hash(model) == before
    s = stats(child, inputs)
    assert s["size_bytes"] <= 0.7 * minilm_stats["size_bytes"]
    assert s["params"] == minilm_stats["params"]
    assert s["macs"] == minilm_stats["macs"]
    out, ref = child(**inputs), model(**inputs)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="dtype"):
        apply_operation(model, "quantize_dynamic", dtype="qint4")


def test_half_keeps_float32_interface(digits_cnn, cnn_input, cnn_stats, minilm):
    for op, dtype in (("half", torch.float16), ("bfloat16", torch.bfloat16)):
        child = apply_operation(digits_cnn, op)
        assert child.features[0].weight.dtype == dtype
        assert list(child.state_dict()) == list(digits_cnn.state_dict())
        out = child(cnn_input)
        assert out.dtype == torch.float32
        assert torch.allclose(out, digits_cnn(cnn_input), atol=0.1)
    ratio = stats(child, cnn_input)["size_bytes"] / cnn_stats["size_bytes"]
    assert 0.45 < ratio < 0.56
    model, inputs = minilm
    with torch.no_grad():
        text_out = apply_operation(model, "half")(**inputs)
        assert text_out.dtype == torch.float32
        assert torch.allclose(text_out, model(**inputs), atol=1e-2)


def test_low_rank(digits_cnn, cnn_input, cnn_stats):
    child = apply_operation(digits_cnn, "low_rank", rank=8)
    factored = child.classifier[1]
    assert isinstance(factored, LowRankLinear) and factored.rank == 8
    # The product of the factors is the best rank-8 approximation of the parent weight.
    u, s, vh = torch.linalg.svd(digits_cnn.classifier[1].weight.detach().double())
    best = (u[:, :8] * s[:8]) @ vh[:8]
    product = (factored[1].weight @ factored[0].weight).double()
    assert torch.allclose(product, best, atol=1e-4)
    assert stats(child, cnn_input)["params"] < 0.4 * cnn_stats["params"]
    by_energy = apply_operation(digits_cnn, "low_rank", energy=0.9)
    assert stats(by_energy, cnn_input)["params"] < cnn_stats["params"]
    with pytest.raises(ValueError, match="exactly one of rank"):
        apply_operation(digits_cnn, "low_rank", rank=4, energy=0.5)
    with pytest.raises(ValueError, match="energy"):
        apply_operation(digits_cnn, "low_rank", energy=1.5)


def test_drop_layers_halves_encoder_macs(minilm):
    model, inputs = minilm
    before = state_hash(model)
    child = apply_operation(model, "drop_layers", layers=[3, 4, 5])
    assert state_hash(model) == before
    assert len(child.encoder.encoder.layer) == 3 and len(model.encoder.encoder.layer) == 6
    assert child.encoder.config.num_hidden_layers == 3
    assert model.encoder.config.num_hidden_layers == 6
    ratio = stats(child.encoder, inputs)["macs"] / stats(model.encoder, inputs)["macs"]
    assert ratio == pytest.approx(0.5, rel=0.1)
    assert child(**inputs).shape == (2, 3)
    with pytest.raises(ValueError, match=r"layers \[7\]"):
        apply_operation(model, "drop_layers", layers=[7])


def test_drop_layers_needs_encoder_layers(digits_cnn):
    with pytest.raises(ValueError, match="no encoder layers"):
        apply_operation(digits_cnn, "drop_layers", layers=[0])


def test_restore_copies_parent_tensors(digits_cnn, cnn_input):
    pruned = apply_operation(digits_cnn, "prune", amount=0.8)
    before = state_hash(pruned)
    child = apply_operation(pruned, "restore", pattern=r"^classifier\.", source=digits_cnn)
    assert state_hash(pruned) == before
    for name, value in child.state_dict().items():
        if name.startswith("classifier."):
            assert torch.equal(value, digits_cnn.state_dict()[name])
        else:
            assert torch.equal(value, pruned.state_dict()[name])
    with pytest.raises(ValueError, match="matches no tensor"):
        apply_operation(pruned, "restore", pattern="^nothing", source=digits_cnn)
    with pytest.raises(ValueError, match="source"):
        apply_operation(pruned, "restore", pattern="classifier")
    narrow = apply_operation(digits_cnn, "prune_structured", amount=0.5, example_input=cnn_input)
    with pytest.raises(ValueError, match=r"features\.0\.weight: child \(8, 1, 3, 3\)"):
        apply_operation(narrow, "restore", pattern=r"features\.0\.", source=digits_cnn)


def test_callable_operation_and_record(digits_cnn):
    child = apply_operation(digits_cnn, scale_weights, factor=2.0)
    assert torch.equal(child.classifier[3].bias, 2 * digits_cnn.classifier[3].bias)
    record = operation_record(scale_weights, {"factor": 2.0})
    assert record["operation"] == f"{scale_weights.__module__}.scale_weights"
    assert record["callable"] is True and record["params"] == {"factor": 2.0}
    with pytest.raises(TypeError, match=r"not an nn\.Module"):
        apply_operation(digits_cnn, lambda model: None)


def test_operation_record_is_json():
    record = operation_record("prune", {"amount": 0.5, "modules": (nn.Linear, "Conv2d")})
    assert json.loads(json.dumps(record)) == record
    assert record["operation"] == "prune" and record["callable"] is False
    assert record["params"]["modules"] == ["torch.nn.modules.linear.Linear", "Conv2d"]
    assert record["versions"]["torch"] == torch.__version__
    assert set(record["versions"]) == {"torch", "transformers", "cnc_widgets"}


@pytest.mark.parametrize(
    ("operation", "params", "message"),
    [
        ("prune", {"amount": 1.5}, r"amount must be a number in \[0, 1\]"),
        ("prune", {"amount": 0.5, "scope": "layer"}, "scope must be 'global' or 'tensor'"),
        ("prune", {"amount": 0.5, "include_norms": "yes"}, "include_norms"),
        ("prune", {"amount": 0.5, "modules": [3]}, "modules must be"),
        ("prune", {"amount": 0.5, "biases": "no"}, "biases must be True or False"),
        ("prune", {"amount": 0.5, "exclude": "["}, "exclude must be module names or regular"),
        ("prune", {}, r"missing required parameter\(s\) \['amount'\]"),
        (
            "prune",
            {"amont": 0.5},
            r"unknown parameter\(s\) \['amont'\]; accepted parameters are "
            r"\['amount', 'biases', 'exclude', 'include', 'include_norms', 'modules', 'scope'\]",
        ),
        ("half", {"dtype": "float16"}, r"unknown parameter\(s\) \['dtype'\]"),
        ("prune_structured", {"amount": 1.0}, r"amount must be a number in \[0, 1\)"),
        ("low_rank", {"rank": 0}, "rank must be an integer"),
        ("drop_layers", {"layers": 2}, "layers must be a list"),
        ("squash", {}, "unknown operation 'squash'; built-in operations are"),
    ],
)
def test_bad_params_raise_clear_errors(digits_cnn, operation, params, message):
    before = state_hash(digits_cnn)
    with pytest.raises(ValueError, match=message):
        apply_operation(digits_cnn, operation, **params)
    assert state_hash(digits_cnn) == before
