"""Efficiency of torch's own transformer modules and of their torchao children: MACs counted
through the fused attention kernel and nested tensors, torchao weights under the counter,
and one failing model leaving the others evaluated and stored."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.compress import apply_operation
from cnc_widgets.compress.tensor_subclass import dequantized
from cnc_widgets.evaluate.efficiency import efficiency, macs

from .tweet_encoder import LENGTH, WordEncoder, trained

D, FFN, CLASSES = 64, 128, 3


def _formula(batch: int, length: int) -> int:
    """MACs of WordEncoder written out: per layer and token the in-projection (3 d^2), the
    out-projection (d^2) and the two FFN Linears (2 d ffn); per layer and row Q K^T and the
    weighted sum of V (2 L^2 d); the head (d x classes) once per row."""
    tokens = batch * length
    per_layer = tokens * (4 * D * D + 2 * D * FFN) + 2 * batch * length * length * D
    return 2 * per_layer + batch * D * CLASSES


@pytest.mark.parametrize("padding_mask", [False, True])
def test_macs_count_the_fused_attention_and_nested_batches(padding_mask):
    torch.manual_seed(0)
    model = WordEncoder(padding_mask=padding_mask).eval()
    x = torch.randint(1, 100, (4, LENGTH))
    x[:, -5:] = 0  # padding: the encoder's fast path makes a nested tensor of it
    got = macs(model, x)
    assert got[0] == _formula(4, LENGTH)
    # torch's own counter over the unfused path (global switch off only here, in the test).
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        assert macs(model, x) == got
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert model.encoder.use_nested_tensor  # restored after counting


def test_torchao_child_of_transformer_encoder_is_measured():
    model, x, _, _ = trained()
    child = apply_operation(model, "quantize", config="int8_weight_only")
    stats = efficiency(child, x[:8], latency=False, memory=False)
    assert stats["macs"] == efficiency(model, x[:8], latency=False, memory=False)["macs"]
    assert stats["macs"] == _formula(8, LENGTH)
    # Zeros of the int8 weights (values rounded to 0) are skipped by a sparse kernel: per
    # Linear, its MACs times its dequantized weight's zero fraction. out_proj runs inside
    # attention, not as a module, so it is not discounted (as for the float model).
    skipped = 0.0
    for name, m in child.named_modules():
        if isinstance(m, nn.Linear) and not name.endswith("out_proj"):
            w = dequantized(m.weight.detach())
            rows = 8 if name == "head" else 8 * LENGTH
            skipped += rows * w.numel() * float((w == 0).double().mean())
    assert skipped > 0
    assert stats["effective_macs"] == round(stats["macs"] - skipped)


def test_one_failing_model_leaves_the_others_evaluated_and_stored(tmp_path):
    model, x, y, _ = trained()
    # Activation hooks cannot read the nested tensors the padding mask makes (an
    # evaluation limit outside this test's subject): the padding is pooled away instead.
    model = copy.deepcopy(model)
    model.padding_mask = False
    reg = cnc.ModelRegistry(store=tmp_path / "s")
    reg.set_data(x, y, classes=["negative", "neutral", "positive"])
    reg.add("base", copy.deepcopy(model))
    reg.compress("base", "quantize", name="ao")
    broken = copy.deepcopy(model)
    broken.head = nn.Linear(D + 1, CLASSES)  # fails on every batch
    reg.add("broken", broken, parent="base")
    with pytest.raises(Exception, match="broken") as err:
        reg.evaluate(progress=False)
    assert "'base'" not in str(err.value) and "'ao'" not in str(err.value)
    table = reg.metrics()
    with torch.inference_mode():
        preds = reg.model("ao")(x).argmax(1)
    assert table.loc["ao", "accuracy"] == pytest.approx(float((preds == y).double().mean()))
    assert table.loc["ao", "macs"] == table.loc["base", "macs"] == _formula(1, LENGTH)  # per row

    again = cnc.ModelRegistry(store=tmp_path / "s").metrics()
    assert again.loc["ao", "accuracy"] == table.loc["ao", "accuracy"]
    assert again.loc["base", "macs"] == table.loc["base", "macs"]
    assert again["accuracy"].isna()["broken"]
