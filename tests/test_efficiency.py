"""Efficiency numbers checked against direct computation on small known models."""

from __future__ import annotations

import io
import time
import warnings

import pytest
import torch
from torch import nn

from cnc_widgets.evaluate.efficiency import (
    efficiency,
    macs,
    parameter_counts,
    peak_memory_bytes,
    size_bytes,
    sparse_size_bytes,
)

KEYS = {
    "params",
    "nonzero_params",
    "sparsity",
    "param_sparsity",
    "size_bytes",
    "sparse_size_bytes",
    "macs",
    "effective_macs",
    "latency_ms",
    "latency_batch_size",
    "latency_threads",
    "peak_memory_bytes",
}


def quantized(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def test_linear_counts_and_macs():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    s = efficiency(layer, torch.randn(1, 4), latency=False, memory=False)
    assert set(s) == KEYS
    assert (s["params"], s["nonzero_params"], s["sparsity"]) == (15, 15, 0.0)
    assert s["macs"] == 12 and s["effective_macs"] == 12
    assert macs(layer, torch.randn(5, 4)) == (60, 60)


def test_known_zeros_give_known_sparsity_and_effective_macs():
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.weight[:, :2] = 0.0  # 6 of 12 weights
        layer.bias.fill_(0.5)
    s = efficiency(layer, torch.randn(2, 4), latency=False, memory=False)
    assert s["nonzero_params"] == 9
    # sparsity counts weights only (Compress and Compare's definition, #25); the bias is not
    # a weight. param_sparsity keeps every parameter.
    assert s["sparsity"] == pytest.approx(6 / 12)
    assert s["param_sparsity"] == pytest.approx(6 / 15)
    assert s["macs"] == 24 and s["effective_macs"] == 12


class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.parts = nn.ModuleList(
            [nn.Embedding(10, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.Conv1d(4, 4, 3, padding=1)]
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        embed, norm, linear, conv = self.parts
        h = linear(norm(embed(ids)))  # (B, 4, 8)
        return conv(h).mean(-1)


def test_sparsity_counts_the_multidimensional_weights():
    torch.manual_seed(0)
    mixed = _Mixed()
    model = mixed.parts
    with torch.no_grad():
        model[0].weight[:3] = 0.0  # 24 of 80
        model[1].bias.zero_()  # 8, not weights
        model[2].weight[:, :4] = 0.0  # 32 of 64
        model[2].bias[:2] = 0.0  # 2, not weights
        model[3].weight[0] = 0.0  # 12 of 48
    s = efficiency(mixed, torch.zeros(1, 4, dtype=torch.long), latency=False, memory=False)
    weights = [p for p in model.parameters() if p.dim() >= 2]
    assert sum(p.numel() for p in weights) == 80 + 64 + 48
    assert s["sparsity"] == pytest.approx((24 + 32 + 12) / (80 + 64 + 48))
    total = sum(p.numel() for p in model.parameters())
    assert s["param_sparsity"] == pytest.approx((24 + 8 + 32 + 2 + 12) / total)


def test_size_bytes_is_the_serialized_state_dict():
    model = nn.Sequential(nn.Linear(100, 50), nn.BatchNorm1d(50))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert size_bytes(model) == len(buffer.getvalue())
    # 10,000 more float32 weights cost 40,000 bytes, give or take torch.save's 64-byte alignment.
    grown = size_bytes(nn.Linear(300, 50)) - size_bytes(nn.Linear(100, 50))
    assert abs(grown - 40_000) <= 128


def test_sparse_size_encoding():
    layer = nn.Linear(100, 100)
    dense = size_bytes(layer)
    assert sparse_size_bytes(layer) == dense  # nothing is zero: dense is cheapest
    with torch.no_grad():
        layer.weight.view(-1)[::2] = 0.0  # half zero: bitmap 1,250 + 5,000 values x 4 bytes
    assert sparse_size_bytes(layer) == dense - (40_000 - (1_250 + 20_000))
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 0] = 1.0  # one nonzero: coordinates, 4 bytes value + 4 bytes index
    assert sparse_size_bytes(layer) == dense - (40_000 - 8)


def test_conv_macs():
    conv = nn.Conv2d(2, 4, 3, padding=1)
    # 4 x 5 x 5 outputs, each 2 x 3 x 3 multiply-accumulates.
    assert macs(conv, torch.randn(1, 2, 5, 5)) == (1800, 1800)
    grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)
    assert macs(grouped, torch.randn(1, 4, 5, 5)) == (1800, 1800)


def test_int8_dynamic_linear_is_counted():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 8))
    q = quantized(model)
    x = torch.randn(3, 256)
    params, nonzero = parameter_counts(q)
    assert params == parameter_counts(model)[0] == 256 * 128 + 128 + 128 * 8 + 8
    assert nonzero <= params
    assert macs(q, x)[0] == macs(model, x)[0] == 3 * (256 * 128 + 128 * 8)
    # One byte per weight instead of four; float biases and pickle overhead remain.
    assert size_bytes(q) < 0.3 * size_bytes(model)


def test_int8_zeros_count_in_effective_macs():
    model = nn.Linear(16, 4)
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.weight[:2] = 0.0  # half the rows
    q = quantized(nn.Sequential(model))
    total, effective = macs(q, torch.randn(1, 16))
    assert (total, effective) == (64, 32)
    s = efficiency(q, torch.randn(1, 16), latency=False, memory=False)
    assert s["nonzero_params"] == 32 + 4 - int((model.bias == 0).sum())


def test_bert_attention_macs_are_counted():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    ids = torch.randint(0, 50, (2, 8))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    batch, seq, h, inter, heads = 2, 8, 32, 64, 4
    attention = 2 * batch * heads * seq * seq * (h // heads)  # scores and weighted values
    per_layer = batch * seq * (4 * h * h + 2 * h * inter) + attention
    expected = 2 * per_layer + batch * h * h  # + pooler
    for implementation in ("sdpa", "eager"):
        config._attn_implementation = implementation
        model = BertModel(config).eval()
        assert macs(model, inputs)[0] == expected, implementation


def test_dict_input_latency_and_threads():
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 4), nn.Linear(6, 4)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(y)

    inputs = {"x": torch.randn(7, 8), "y": torch.randn(7, 6)}
    s = efficiency(TwoInputs(), inputs, warmup=1, repeats=5, threads=1, memory=False)
    assert s["macs"] == 7 * (32 + 24)
    assert s["latency_batch_size"] == 7 and s["latency_threads"] == 1
    assert 0 < s["latency_ms"] < 1000
    assert s["params"] == 36 + 28


def test_peak_memory_counts_live_activations():
    model = nn.Sequential(nn.Linear(1000, 2000), nn.ReLU(), nn.Linear(2000, 10))
    # The hidden layer (64 x 2000 float32) and its ReLU copy are alive together.
    expected = 2 * 64 * 2000 * 4
    peak = peak_memory_bytes(model, torch.randn(64, 1000))
    assert expected <= peak <= 1.1 * expected
    assert peak_memory_bytes(model, torch.randn(8, 1000)) < peak / 4


class DigitsLSTM(nn.Module):
    """Reads an 8x8 digit row by row: an LSTM over 8 steps of 8 pixels, then a head."""

    def __init__(self, hidden: int = 24) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.reshape(-1, 8, 8))
        return self.head(out[:, -1])


def _train(model: nn.Module, digits, steps: int = 40) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = digits.train_inputs, digits.train_labels
    for i in range(steps):
        idx = torch.arange(i * 32, i * 32 + 32) % len(y)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def test_lstm_macs_are_counted_and_see_sparsity(digits):
    model = _train(DigitsLSTM(), digits)
    x = digits.test_inputs[:5]
    h = 24
    per_step = 4 * h * (8 + h)  # four gates over the input and the state
    expected = 5 * (8 * per_step + h * 10)
    assert macs(model, x) == (expected, expected)
    with torch.no_grad():
        model.lstm.weight_hh_l0[:, : h // 2] = 0.0  # half of the recurrent weights
    skipped = 5 * 8 * 4 * h * h // 2
    assert macs(model, x) == (expected, expected - skipped)
    # A GRU is counted from the same shapes (the FLOP counter sees it; no double count).
    gru = nn.GRU(8, h, batch_first=True)
    assert macs(gru, x.reshape(-1, 8, 8))[0] == 5 * 8 * 3 * h * (8 + h)


class SharedBlockMLP(nn.Module):
    """ALBERT-style cross-layer sharing on the digits: one hidden block applied twice."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(64, 32)
        self.block1 = nn.Linear(32, 32)
        self.block2 = nn.Linear(32, 32)
        self.block2.weight = self.block1.weight  # tied: one tensor under two names
        self.out = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.tanh(self.inp(x.flatten(1)))
        z = torch.tanh(self.block2(torch.tanh(self.block1(z))))
        return self.out(z)


def test_tied_weights_count_once_in_sparse_size(digits):
    model = _train(SharedBlockMLP(), digits)
    with torch.no_grad():
        w = model.block1.weight
        w[w.abs() < w.abs().quantile(0.95)] = 0.0
    dense = size_bytes(model)
    # Direct: every distinct tensor once, in its cheapest form.
    unique = {}
    for t in model.state_dict().values():
        unique[t.untyped_storage().data_ptr()] = t
    saved = 0
    for t in unique.values():
        nnz, b = int(torch.count_nonzero(t)), t.element_size()
        saved += t.numel() * b - min(t.numel() * b, -(-t.numel() // 8) + nnz * b, nnz * (b + 4))
    assert len(unique) == len(model.state_dict()) - 1
    assert sparse_size_bytes(model) == dense - saved
    assert 0 < sparse_size_bytes(model) < dense


def test_efficiency_leaves_a_train_mode_model_as_it_was(digits, digits_cnn):
    import copy

    model = copy.deepcopy(digits_cnn).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    efficiency(model, digits.test_inputs[:32], warmup=1, repeats=2)
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert all(m.training for m in model.modules())


def test_latency_of_a_slow_model_stops_at_the_budget():
    from cnc_widgets.evaluate.efficiency import latency_ms

    class Slow(nn.Module):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Slow.calls += 1
            time.sleep(0.3)
            return x

    ms, _ = latency_ms(Slow(), torch.zeros(2, 3), warmup=3, repeats=20, budget_s=0.8)
    assert Slow.calls == 1 + 3  # one warm-up pass (over a quarter of the budget), three timed
    assert ms >= 300

    class Fast(nn.Module):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Fast.calls += 1
            return x + 1

    latency_ms(Fast(), torch.zeros(2, 3), warmup=3, repeats=20)
    assert Fast.calls == 3 + 20
