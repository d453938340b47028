"""compressed-tensors checkpoints (llm-compressor's format): made here with compressed-tensors'
own API (W8A16 and W4A16 round-to-nearest of the tiny causal LM), saved, loaded back with
transformers' compressed-tensors integration and compared with their float parent.

llm-compressor's ``oneshot`` would make the same checkpoints, but it needs transformers <= 5.17
and does not install beside the pinned stack: the test does what its round-to-nearest
``QuantizationModifier`` does (min-max scales per group, then compress and save).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from compressed_tensors.compressors import ModelCompressor
from compressed_tensors.quantization import (
    QuantizationArgs,
    QuantizationConfig,
    QuantizationScheme,
    QuantizationStatus,
    apply_quantization_config,
)
from compressed_tensors.quantization.utils import calculate_qparams
from safetensors import safe_open
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.compress.compressed_tensors import checkpoint_sizes, load_compressed_tensors
from cnc_widgets.evaluate.efficiency import parameter_counts, size_bytes
from cnc_widgets.evaluate.fingerprint import model_fingerprint

from .test_task_causal_lm import batch, tiny_llama

GROUP = 32  # the tiny LM's Linears have 32 or 64 inputs


def rtn_checkpoint(model: nn.Module, bits: int, folder: Path) -> Path:
    """A W{bits}A16 round-to-nearest checkpoint of ``model`` (lm_head left float)."""
    model = copy.deepcopy(model)
    args = QuantizationArgs(
        num_bits=bits, type="int", symmetric=True, strategy="group", group_size=GROUP
    )
    config = QuantizationConfig(
        config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=args)},
        ignore=["lm_head"],
        quantization_status=QuantizationStatus.INITIALIZED,
    )
    apply_quantization_config(model, config, show_progress=False)
    for module in model.modules():
        if hasattr(module, "weight_scale"):
            w = module.weight.detach()
            groups = w.unflatten(-1, (w.shape[-1] // GROUP, GROUP))
            scale, zero = calculate_qparams(groups.amin(-1), groups.amax(-1), args)
            module.weight_scale.data.copy_(scale)
            if hasattr(module, "weight_zero_point"):
                module.weight_zero_point.data.copy_(zero)
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    model.save_pretrained(folder)
    compressor.update_config(folder)
    return folder


def direct_rtn(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric round-to-nearest per group of GROUP inputs, written out."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    g = w.detach().unflatten(-1, (w.shape[-1] // GROUP, GROUP))
    scale = g.abs().amax(-1, keepdim=True) / ((hi - lo) / 2)
    return (torch.clamp(torch.round(g / scale), lo, hi) * scale).flatten(-2)


def direct_token_kl(a: nn.Module, b: nn.Module, enc: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        la = torch.log_softmax(a(**enc).logits[:, :-1].double(), -1)
        lb = torch.log_softmax(b(**enc).logits[:, :-1].double(), -1)
    scored = (enc["attention_mask"][:, :-1] * enc["attention_mask"][:, 1:]).bool()
    return float((la.exp() * (la - lb)).sum(-1)[scored].mean())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    model = tiny_llama()
    with torch.no_grad():  # wider than the default init, so that logits are not all flat
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    root = tmp_path_factory.mktemp("ct")
    return model, {bits: rtn_checkpoint(model, bits, root / f"w{bits}") for bits in (8, 4)}


def test_checkpoint_stores_packed_weights_and_scales(checkpoints):
    model, folders = checkpoints
    quant = json.loads((folders[4] / "config.json").read_text())["quantization_config"]
    assert quant["quant_method"] == "compressed-tensors" and quant["format"] == "pack-quantized"
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    for bits, folder in folders.items():
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            stored = {k: f.get_tensor(k) for k in f.keys()}
        expected = 0
        for name, p in model.named_parameters():
            module = name.rsplit(".", 1)[0]
            if module in linears and module != "lm_head":
                out, inp = p.shape
                assert stored[f"{module}.weight_packed"].dtype == torch.int32
                assert f"{module}.weight" not in stored
                # bits per weight packed into int32 words, a float32 scale per group, and
                # the int64 logical shape.
                expected += out * inp * bits // 8 + out * (inp // GROUP) * 4 + 2 * 8
            else:
                expected += p.numel() * 4
        on_disk = sum(t.numel() * t.element_size() for t in stored.values())
        assert on_disk == expected
        sizes = checkpoint_sizes(folder)
        assert sizes["size_bytes"] == expected
        assert sizes["quantized_modules"] == len(linears) - 1
        assert sizes["schemes"] == {"group_0": f"int{bits} group {GROUP} symmetric"}
        assert sizes["ignore"] == ["lm_head"]


def test_loaded_weights_are_round_to_nearest(checkpoints):
    model, folders = checkpoints
    for bits, folder in folders.items():
        child = load_compressed_tensors(folder)
        assert parameter_counts(child)[0] == parameter_counts(model)[0]
        for name, module in model.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            got = child.get_submodule(name).weight.detach()
            want = module.weight.detach() if name == "lm_head" else direct_rtn(module.weight, bits)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        assert size_bytes(child) == checkpoint_sizes(folder)["size_bytes"]


def test_registry_compares_them_with_the_float_parent(checkpoints):
    model, folders = checkpoints
    enc = batch()
    reg = cnc.ModelRegistry()
    reg.set_data(enc, task="causal_lm", batch_size=5)
    reg.add("f32", model)
    children = {}
    for bits, folder in folders.items():
        children[bits] = load_compressed_tensors(folder)
        reg.add(f"w{bits}a16", children[bits], parent="f32", operation="compressed-tensors")
    reg.evaluate(progress=False)
    metrics = reg.metrics()
    kl = {}
    for bits, child in children.items():
        name = f"w{bits}a16"
        stats = reg.compare("f32", name).token_stats
        kl[bits] = direct_token_kl(model, child, enc)
        assert stats["kl_mean"] == pytest.approx(kl[bits], rel=1e-4, abs=1e-9)
        assert metrics.loc[name, "size_bytes"] == checkpoint_sizes(folders[bits])["size_bytes"]
        assert metrics.loc[name, "params"] == metrics.loc["f32", "params"]
    assert 0 < kl[8] < 1e-3 < kl[4]
    sizes = metrics["size_bytes"]
    assert sizes["w4a16"] < sizes["w8a16"] < 0.6 * sizes["f32"]
    assert reg.record("w4a16").parent == "f32"


def test_fingerprint_is_stable_across_reloads(checkpoints):
    _, folders = checkpoints
    prints = {bits: model_fingerprint(load_compressed_tensors(f)) for bits, f in folders.items()}
    assert prints[8] != prints[4]
    again = load_compressed_tensors(folders[4])
    assert model_fingerprint(again) == prints[4]
    reg = cnc.ModelRegistry()
    reg.add("w4", load_compressed_tensors(folders[4]))
    reg.add("w4", again)  # a re-run cell: the same weights, a no-op
    assert reg.record("w4").fingerprint == prints[4]


def test_other_folders_are_refused_with_the_reason(tmp_path, checkpoints):
    model, _ = checkpoints
    model.save_pretrained(tmp_path / "float")
    with pytest.raises(ValueError, match="not a compressed-tensors checkpoint"):
        load_compressed_tensors(tmp_path / "float")
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        load_compressed_tensors(tmp_path)
