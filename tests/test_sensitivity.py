"""Which modules did the damage (issue 26): ranking, restoring and suggested restores, on real
models trained in seconds (digits MLP, CNN and transformer; a tiny Llama), every number checked
against a direct computation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.compress import apply_operation
from cnc_widgets.evaluate.efficiency import size_bytes
from cnc_widgets.metrics.sensitivity import default_rows, module_kind, restore_group


def train(model: nn.Module, data, *, epochs: int, lr: float = 3e-3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = data.train_inputs, data.train_labels
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def digits_mlp(data) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)
    )
    return train(model, data, epochs=6)


class DigitsTransformer(nn.Module):
    """Each of the 8 pixel rows of a digit is a token: a 2-layer post-norm encoder."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.position = nn.Parameter(torch.zeros(1, 8, width))
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.reshape(-1, 8, 8)) + self.position
        return self.head(self.encoder(tokens).mean(1))


def noise_module(model: nn.Module, *, module: str, scale: float) -> nn.Module:
    """Damage one layer on purpose: Gaussian noise of ``scale`` times its weights' std."""
    torch.manual_seed(0)
    weight = model.get_submodule(module).weight
    with torch.no_grad():
        weight.add_(torch.randn_like(weight) * weight.std() * scale)
    return model


def accuracy_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def registry(data, base: nn.Module) -> cnc.ModelRegistry:
    reg = cnc.ModelRegistry()
    reg.set_data(data.test_inputs, data.test_labels, classes=data.classes, batch_size=128)
    reg.add("base", base)
    return reg


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_a_layer_damaged_on_purpose_ranks_first(kind, digits, digits_cnn):
    base = digits_mlp(digits) if kind == "mlp" else digits_cnn
    damaged = {"mlp": "3", "cnn": "features.3"}[kind]
    reg = registry(digits, base)
    reg.compress("base", "prune", amount=0.3, name="pruned")  # every layer changes a little
    reg.compress("pruned", noise_module, module=damaged, scale=1.5, name="damaged")
    reg.evaluate(progress=False)
    cmp = reg.compare("base", "damaged")
    table = cmp.sensitivity(groups="module")
    assert table.loc[0, "group"] == damaged
    assert table.loc[0, "modules"] == [damaged]
    assert table.loc[0, "recovered"] > 0.5
    # Every number against a direct computation on the same rows.
    rows = np.asarray(table.attrs["rows"])
    assert rows.tolist() == default_rows(len(digits.test_labels)).tolist()
    x, y = digits.test_inputs[rows], digits.test_labels[rows]
    a, b = reg.model("base"), reg.model("damaged")
    qa, qb = accuracy_on(a, x, y), accuracy_on(b, x, y)
    assert table.attrs["quality_a"] == pytest.approx(qa)
    assert table.attrs["quality_b"] == pytest.approx(qb)
    for _, row in table.dropna(subset=["kl_restored"]).iterrows():
        by_hand = restore_group(b, a, row["pattern"])
        for name, value in by_hand.state_dict().items():
            module = name.rpartition(".")[0]
            source = a if module in row["modules"] else b
            assert torch.equal(value, source.state_dict()[name]), name
        q = accuracy_on(by_hand, x, y)
        assert row["quality_restored"] == pytest.approx(q)
        assert row["recovered"] == pytest.approx((q - qb) / (qa - qb))
        with torch.no_grad():
            la, lr = torch.log_softmax(a(x).double(), 1), torch.log_softmax(by_hand(x).double(), 1)
        assert row["kl_restored"] == pytest.approx(float((la.exp() * (la - lr)).sum(1).mean()))
        wa, wb = (
            torch.cat([p.detach().flatten().double() for p in m.parameters()])
            for m in (a.get_submodule(row["group"]), b.get_submodule(row["group"]))
        )
        assert row["proxy"] == pytest.approx(float((wb - wa).norm() / wa.norm()))


def test_attrs_say_what_was_measured_and_restore_runs_are_cached(digits, digits_cnn):
    reg = registry(digits, digits_cnn)
    reg.compress("base", "prune", amount=0.3, name="pruned")
    reg.compress("pruned", noise_module, module="classifier.1", scale=1.0, name="damaged")
    reg.evaluate(progress=False)
    calls = [0]
    # Restored models are copies of b: the hook travels with them, so it counts every run.
    reg.model("damaged").register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    cmp = reg.compare("base", "damaged")
    first = cmp.sensitivity(groups="module", rows=100, top=3)
    assert set(first.attrs) >= {"quality_a", "quality_b", "rows", "restore_runs", "runs_made"}
    assert len(first.attrs["rows"]) == 100 and first.attrs["restore_runs"] == 3
    assert first.attrs["runs_made"] == 2 + 3  # a and b on the rows, then three restores
    assert first["recovered"].notna().sum() >= 3
    assert calls[0] > 0
    seen = calls[0]
    again = reg.compare("base", "damaged").sensitivity(groups="module", rows=100, top=3)
    assert calls[0] == seen and again.attrs["runs_made"] == 0
    assert again.equals(first)
    # Another metric of the same runs needs no run either; bad input says what to pass.
    with pytest.raises(ValueError, match="choose one of"):
        cmp.sensitivity(metric="perplexity")
    with pytest.raises(ValueError, match="matches no parameter"):
        cmp.sensitivity(groups=["^nothing"])
    chart = cmp.sensitivity_chart(groups="module", rows=100, top=3).to_dict()
    assert chart["mark"]["type"] == "bar"
    assert calls[0] == seen


def test_regex_groups_and_kinds():
    assert module_kind("encoder.layer.0.attention.output.LayerNorm", nn.LayerNorm(4)) == "norms"
    assert module_kind("encoder.layers.1.linear1", nn.Linear(2, 2)) == "feed_forward"
    assert module_kind("encoder.layer.2.output.dense", nn.Linear(2, 2)) == "feed_forward"
    assert module_kind("model.layers.0.mlp.down_proj", nn.Linear(2, 2)) == "feed_forward"
    assert module_kind("encoder.layers.0.self_attn", nn.MultiheadAttention(4, 2)) == "attention"
    assert module_kind("model.embed_tokens", nn.Embedding(3, 2)) == "embeddings"
    assert module_kind("lm_head", nn.Linear(2, 2)) == "head"
    assert module_kind("classifier.1", nn.Linear(2, 2)) == "head"
    assert module_kind("features.0", nn.Conv2d(1, 2, 3)) == "other"


@pytest.fixture(scope="module")
def transformer_reg(digits):
    base = train(DigitsTransformer(), digits, epochs=8)
    reg = registry(digits, base)
    reg.compress("base", "prune", amount=0.3, scope="tensor", include_norms=True, name="pruned")
    reg.evaluate(progress=False)
    return reg


def test_pruned_norms_rank_top_and_the_first_suggestion_recovers_them(transformer_reg):
    reg = transformer_reg
    acc = reg.metrics()["accuracy"]
    assert acc["pruned"] < acc["base"] - 0.05  # the damage is real
    table = reg.compare("base", "pruned").sensitivity()
    assert table.loc[0, "group"] == "norms"
    assert set(table["by"]) == {"kind", "block"}
    suggested = reg.suggest_restores("base", "pruned", target=0.99, max_runs=3)
    assert 1 <= len(suggested) <= 3
    assert reg.record(suggested[0]).operation == "restore"
    assert reg.record(suggested[0]).parent == "pruned"
    hand = reg.compress("pruned", "restore", pattern=r"norm", name="norms-by-hand")
    reg.evaluate(progress=False)
    acc = reg.metrics()["accuracy"]
    gained, by_hand = acc[suggested[0]] - acc["pruned"], acc[hand] - acc["pruned"]
    assert by_hand > 0 and gained >= 0.9 * by_hand
    # Never every changed tensor: the last suggestion still differs from a somewhere.
    last = reg.model(suggested[-1])
    assert any(
        not torch.equal(v, reg.model("base").state_dict()[k]) for k, v in last.state_dict().items()
    )
    with pytest.raises(ValueError, match="copy from its parent"):
        reg.suggest_restores(suggested[0], "pruned")


def noise_and_prune(model: nn.Module, *, module: str, scale: float, amount: float) -> nn.Module:
    """Noise one head layer and prune the features a little: two changes, one child."""
    model = noise_module(model, module=module, scale=scale)
    with torch.no_grad():
        for p in model.features.parameters():
            p.mul_((p.abs() > p.abs().flatten().quantile(amount)).to(p.dtype))
    return model


def test_ties_go_to_fewer_params_and_suggestions_stop_at_the_target(digits, digits_cnn):
    reg = registry(digits, digits_cnn)
    reg.compress(
        "base", noise_and_prune, module="classifier.3", scale=3.0, amount=0.1, name="damaged"
    )
    reg.evaluate(progress=False)
    groups = [r"^classifier\.", r"^classifier\.3\.", r"^features\."]
    table = reg.compare("base", "damaged").sensitivity(groups=groups)
    by_group = table.set_index("group")
    # Restoring the whole head or only its last layer recovers within one instance: the
    # smaller group (650 parameters, not 33,482) comes first.
    one = table.attrs["tolerance"]
    assert abs(by_group.at[groups[0], "recovered"] - by_group.at[groups[1], "recovered"]) <= one
    assert table["group"].tolist()[:2] == [groups[1], groups[0]]
    assert by_group.at[groups[1], "params"] == 650
    made = reg.suggest_restores("base", "damaged", target=0.95, groups=groups)
    assert made == ["damaged-restore-" + groups[1]]
    assert reg.record(made[0]).params["pattern"] == f"(?:{groups[1]})"
    acc = reg.metrics()["accuracy"]
    assert acc[made[0]] >= 0.95 * acc["base"] > acc["damaged"]
    # Only the head was damaged: restoring it and the features is every changed tensor,
    # so even an unreachable target never gets there (that would be a again).
    made = reg.suggest_restores("base", "damaged", target=1.0, groups=groups[1:], max_runs=5)
    assert made == ["damaged-restore-" + groups[1]]


def test_int8_restore_takes_modules_back_in_float(digits, digits_cnn):
    reg = registry(digits, digits_cnn)
    reg.compress("base", "quantize_dynamic", name="int8")
    child = reg.compress("int8", "restore", pattern=r"^classifier\.1\.", name="int8-fc1")
    reg.evaluate(progress=False)
    model, base, int8 = reg.model(child), reg.model("base"), reg.model("int8")
    assert type(model.classifier[1]) is nn.Linear
    assert torch.equal(model.classifier[1].weight, base.classifier[1].weight)
    assert type(model.classifier[3]) is type(int8.classifier[3])  # still int8
    assert torch.equal(model.classifier[3].weight(), int8.classifier[3].weight())
    sizes = reg.metrics()["size_bytes"]
    params = base.classifier[1].weight.numel()
    # float32 weights in place of int8 ones: about three more bytes per weight.
    assert sizes[child] - sizes["int8"] == pytest.approx(3 * params, rel=0.05)
    assert sizes[child] == size_bytes(model)
    # The sensitivity of an int8 model restores through the same swap.
    table = reg.compare("base", "int8").sensitivity(groups="module", top=2, rows=64)
    top = table.loc[table["kl_restored"].notna()].iloc[0]  # measured by a restore run
    restored = restore_group(int8, base, top["pattern"])
    x, y = digits.test_inputs[table.attrs["rows"]], digits.test_labels[table.attrs["rows"]]
    assert top["quality_restored"] == pytest.approx(accuracy_on(restored, x, y))


def test_torchao_restore_takes_modules_back_in_float(digits, digits_cnn):
    pytest.importorskip("torchao")
    from cnc_widgets.compress.tensor_subclass import is_tensor_subclass

    q = apply_operation(digits_cnn, "quantize", config="int8_weight_only")
    back = apply_operation(q, "restore", pattern=r"^classifier\.3\.weight$", source=digits_cnn)
    assert torch.equal(back.classifier[3].weight, digits_cnn.classifier[3].weight)
    assert not is_tensor_subclass(back.classifier[3].weight)
    assert is_tensor_subclass(back.classifier[1].weight)
    assert size_bytes(back) > size_bytes(q)
    with pytest.raises(ValueError, match="quantized tensors cannot be copied"):
        apply_operation(digits_cnn, "restore", pattern=r"^classifier\.1\.weight$", source=q)


def tiny_llama_trained(steps: int = 30):
    from .lm_builders import tiny_llama

    model = tiny_llama(97)

    # Sequences that step by a fixed stride mod 97: learnable in a few seconds, so the
    # model has a quality to lose.
    def sequences(n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, 97, (n, 1), generator=g)
        stride = torch.randint(1, 4, (n, 1), generator=g)
        return (start + stride * torch.arange(12)) % 97

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        ids = sequences(32, step)
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    ids = sequences(24, 10_000)
    return model.eval(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_causal_lm_rmsnorm_weights_rank_top():
    model, enc = tiny_llama_trained()
    reg = cnc.ModelRegistry()
    reg.set_data(enc, task="causal_lm", batch_size=8)
    reg.add("base", model)
    reg.compress("base", "prune", amount=0.3, scope="tensor", include_norms=True, name="pruned")
    reg.evaluate(progress=False)
    ppl = reg.metrics()["perplexity"]
    assert ppl["pruned"] > ppl["base"] * 1.2
    table = reg.compare("base", "pruned").sensitivity()
    assert table.attrs["metric"] == "perplexity" and table.attrs["better"] == "lower"
    assert table.loc[0, "group"] == "norms"
    assert all("norm" in m for m in table.loc[0, "modules"])
    assert "kl_restored" not in table.columns
    # perplexity of the restored model by hand, with the model's own loss.
    rows = table.attrs["rows"]
    restored = restore_group(reg.model("pruned"), reg.model("base"), table.loc[0, "pattern"])
    ids = enc["input_ids"][rows]
    with torch.no_grad():
        loss = restored(input_ids=ids, labels=ids).loss
    assert table.loc[0, "quality_restored"] == pytest.approx(float(torch.exp(loss)), rel=1e-4)
    assert table.loc[0, "recovered"] > 0.5
    assert re.search(table.loc[0, "pattern"], "model.norm.weight")
    # The suggestion is a registry child evaluated under the task: perplexity goes down.
    made = reg.suggest_restores("base", "pruned", target=0.9, max_runs=1)
    assert len(made) == 1 and reg.metrics().at[made[0], "perplexity"] < ppl["pruned"]
