"""Compressed children of torch's own transformer modules run: quantized and factorised
encoder layers are kept off the fused fast path, per module, without touching the global
``torch.backends.mha`` switch, after replay and when called outside the library."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.compress import apply_operation
from cnc_widgets.compress.fastpath import slow_path_layers

from .tweet_encoder import trained

OPERATIONS = {
    "quantize_dynamic": {},
    "low_rank": {"rank": 8},
    "quantize": {"config": "int8_dynamic_activation_int8_weight"},
}


def _slow_reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output with torch's global switch off (what a user would write by hand)."""
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode():
            return model(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)


@pytest.fixture(scope="module")
def tweets():
    return trained()


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_compress_of_transformer_encoder_runs(tweets, operation, tmp_path):
    model, x, y, _ = tweets
    reg = cnc.ModelRegistry(store=tmp_path / "s")
    reg.set_data(x, y, classes=["negative", "neutral", "positive"])
    reg.add("base", copy.deepcopy(model))
    child_name = reg.compress("base", operation, name="child", **OPERATIONS[operation])
    child = reg.model(child_name)
    assert torch.backends.mha.get_fastpath_enabled()  # no global switch left off
    # Called directly, outside the library, on a padded batch (the nested-tensor path).
    with torch.inference_mode():
        got = child(x[:64])
    torch.testing.assert_close(got, _slow_reference(child, x[:64]), rtol=0, atol=0)
    # The parent keeps torch's fast path: nothing in it is marked.
    assert slow_path_layers(reg.model("base")) == []
    assert reg.model("base").encoder.use_nested_tensor
    if operation != "quantize":  # torchao's tensor subclasses make torch choose the slow path
        assert slow_path_layers(child) == ["encoder.layers.0", "encoder.layers.1"]
        assert child.encoder.use_nested_tensor is False

    # Reopened store, base added again: the child is rebuilt by replay and runs the same.
    again = cnc.ModelRegistry(store=tmp_path / "s")
    again.add("base", copy.deepcopy(model))
    replayed = again.model("child")
    with torch.inference_mode():
        torch.testing.assert_close(replayed(x[:64]), got, rtol=0, atol=0)
    # A deep copy (what a user saves or hands on) keeps the marks.
    with torch.inference_mode():
        torch.testing.assert_close(copy.deepcopy(child)(x[:64]), got, rtol=0, atol=0)


class _Attention(nn.Module):
    """nn.MultiheadAttention on its own, or inside a decoder layer (self-attention)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.inp = nn.Linear(8, 16)
        if kind == "mha":
            self.block = nn.MultiheadAttention(16, 2, batch_first=True)
        else:
            self.block = nn.TransformerDecoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.reshape(x.shape[0], 8, 8))
        h = self.block(h, h, h)[0] if self.kind == "mha" else self.block(h, h)
        return self.head(h.mean(1))


@pytest.mark.parametrize("kind", ["mha", "decoder"])
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_attention_and_decoder_children_run(digits, kind, operation):
    torch.manual_seed(0)
    parent = _Attention(kind).eval()
    params = {"rank": 2} if operation == "low_rank" else OPERATIONS[operation]
    child = apply_operation(parent, operation, **params)
    x = digits.test_inputs[:32]
    with torch.inference_mode():
        got = child(x)
    # MultiheadAttention keeps its own fast path (it reads only float tensors): rounding only.
    torch.testing.assert_close(got, _slow_reference(child, x))
    # Every Linear the operation can change was changed (the test is not vacuous).
    assert type(child.inp) is not nn.Linear or operation == "quantize"


def test_failed_operation_hint_does_not_blame_a_float32_parent(tweets):
    model, x, y, _ = tweets
    reg = cnc.ModelRegistry(store=None)
    reg.set_data(x, y)
    reg.add("base", copy.deepcopy(model))

    def widen_head(m: nn.Module) -> nn.Module:
        m.head = nn.Linear(65, 3)
        return m

    with pytest.raises(ValueError, match="fails on the evaluation data") as err:
        reg.compress("base", widen_head)
    assert "float32 one" not in str(err.value)
    assert "another operation" in str(err.value)
