"""Comparisons on architectures beyond the digits CNN: attention, auxiliary heads, dict
outputs, renamed and factorised modules, and structured pruning where torch-pruning
cannot slice everything. Every number is checked against a direct computation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.compress import apply_operation
from cnc_widgets.evaluate.modules import batch_layout, per_instance
from cnc_widgets.evaluate.streaming import iter_activations
from cnc_widgets.metrics.cka import linear_cka
from cnc_widgets.provenance import ModelRecord, module_correspondence, rename_module

N_EVAL = 200


class RowTransformer(nn.Module):
    """Each 8x8 digit as 8 tokens of 8 pixels, a small nn.TransformerEncoder, mean pool."""

    def __init__(self, d: int = 16, layers: int = 4, batch_first: bool = True) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.inp = nn.Linear(8, d)
        block = nn.TransformerEncoderLayer(d, 2, 32, dropout=0.0, batch_first=batch_first)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.reshape(x.shape[0], 8, 8))
        if not self.batch_first:
            h = h.transpose(0, 1)
        h = self.encoder(h)
        if not self.batch_first:
            h = h.transpose(0, 1)
        return self.head(h.mean(1))


class WithAuxHead(nn.Module):
    """An MLP with an auxiliary head that forward() never calls (used only in training)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.aux = nn.Linear(32, 10)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class DictOutput(nn.Module):
    """Returns ``{"logits": ...}`` like many research codebases."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(x)}


def _train(model: nn.Module, digits, epochs: int, lr: float = 1e-2) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr)
    x, y = digits.train_inputs, digits.train_labels
    for _ in range(epochs):
        for s in range(0, len(y), 128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[s : s + 128]), y[s : s + 128]).backward()
            opt.step()
    return model.eval()


def _registry(digits, store=None) -> cnc.ModelRegistry:
    reg = cnc.ModelRegistry(store=store)
    reg.set_data(digits.test_inputs[:N_EVAL], digits.test_labels[:N_EVAL], classes=digits.classes)
    return reg


def _outputs(model: nn.Module, module: str, x: torch.Tensor, batch_first: bool = True):
    """The module's outputs on ``x``, run in the registry's batches of 64 (attention
    kernels round differently for other batch sizes)."""
    got = []
    handle = model.get_submodule(module).register_forward_hook(
        lambda _m, _i, o: got.append(o[0] if isinstance(o, tuple) else o)
    )
    with torch.inference_mode():
        for s in range(0, len(x), 64):
            model(x[s : s + 64])
    handle.remove()
    return torch.cat(got, dim=0 if batch_first else 1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return (torch.linalg.vector_norm(b - a) / torch.linalg.vector_norm(a)).item()


def _module_vector(model: nn.Module, name: str) -> torch.Tensor:
    params = dict(model.get_submodule(name).named_parameters(recurse=False))
    return torch.cat([params[k].detach().flatten() for k in sorted(params)])


@pytest.fixture(scope="module")
def transformer(digits):
    return _train(RowTransformer(), digits, epochs=3)


@pytest.fixture(scope="module")
def treg(digits, transformer, tmp_path_factory):
    reg = _registry(digits, store=tmp_path_factory.mktemp("arch"))
    reg.add("base", copy.deepcopy(transformer))
    reg.compress("base", "prune", amount=0.3, name="p30")
    reg.compress("base", "drop_layers", layers=[1], name="drop1")
    reg.compress("drop1", "prune", amount=0.5, name="drop1-p50")
    reg.compress("base", "drop_layers", layers=[2], name="drop2")
    reg.evaluate(progress=False)
    return reg


# -- modules that never run as modules (15.1, 17.12) -----------------------------------


def test_multihead_attention_out_proj_has_weights_but_no_activations(treg, digits):
    cmp = treg.compare("base", "p30")
    table = cmp.layers
    a, b = treg.model("base"), treg.model("p30")
    with_params = [
        n for n, m in a.named_modules() if next(m.parameters(recurse=False), None) is not None
    ]
    params = table[table["row_type"] == "parameters"]
    assert list(params.index) == with_params  # every parameterised module, in model order
    assert (table["status"] == "both").all()
    assert (table["module_b"] == table.index).all()
    row = table.loc["encoder.layers.0.self_attn.out_proj"]
    direct = _rel(
        _module_vector(a, "encoder.layers.0.self_attn.out_proj"),
        _module_vector(b, "encoder.layers.0.self_attn.out_proj"),
    )
    assert row["weight_rel_change"] == pytest.approx(direct, rel=1e-9)
    assert row["zero_b_only"] > 0
    assert np.isnan(row["activation_rel_change"]) and np.isnan(row["cka"])
    assert row["note"] == "not called as a module"
    # Modules that do run keep every cell, checked against their hooked outputs.
    x = digits.test_inputs[:N_EVAL]
    linear = table.loc["encoder.layers.1.linear1"]
    oa, ob = _outputs(a, "encoder.layers.1.linear1", x), _outputs(b, "encoder.layers.1.linear1", x)
    assert linear["activation_rel_change"] == pytest.approx(_rel(oa, ob), rel=1e-5)
    assert linear["cka"] == pytest.approx(linear_cka(oa.flatten(1), ob.flatten(1)), abs=1e-6)
    assert linear["note"] == ""
    filled = table[table["note"] == ""]
    assert filled[["activation_rel_change", "cka"]].notna().all().all()
    assert cmp.histograms("encoder.layers.0.self_attn.out_proj")["weights"]["a"].sum() > 0
    matrix = cmp.cka_matrix()
    assert matrix.shape == (4, 4) and matrix.notna().all().all()
    assert 0.0 <= cmp.adversarial_overlap(max_instances=64, steps=2) <= 1.0


def test_auxiliary_head_never_called(digits):
    model = _train(WithAuxHead(), digits, epochs=2)
    reg = _registry(digits)
    reg.add("base", model)
    reg.compress("base", "prune", amount=0.5, name="p50")
    reg.evaluate(progress=False)
    cmp = reg.compare("base", "p50")
    table = cmp.layers
    table = table[table["row_type"] == "parameters"]  # ReLU: an activation-only row
    assert list(table.index) == ["body.1", "aux", "head"]
    aux = table.loc["aux"]
    direct = _rel(_module_vector(model, "aux"), _module_vector(reg.model("p50"), "aux"))
    assert aux["weight_rel_change"] == pytest.approx(direct, rel=1e-9)
    assert np.isnan(aux["cka"]) and aux["note"] == "not called as a module"
    assert table.loc["head", "cka"] == pytest.approx(
        linear_cka(
            _outputs(model, "head", digits.test_inputs[:N_EVAL]),
            _outputs(reg.model("p50"), "head", digits.test_inputs[:N_EVAL]),
        ),
        abs=1e-6,
    )
    matrix = cmp.cka_matrix()  # default modules include the head that never runs
    assert matrix.loc["aux"].isna().all()
    assert matrix.loc["head", "head"] == pytest.approx(table.loc["head", "cka"], abs=1e-9)
    assert matrix.attrs["unavailable"]["a"] == {"aux": "not called as a module"}


def test_sequence_first_outputs_are_transposed_per_instance(digits):
    base = _train(RowTransformer(layers=2, batch_first=False), digits, epochs=2)
    pruned = apply_operation(base, "prune", amount=0.4)
    x = digits.test_inputs[:96]
    acts = list(iter_activations(base, x, ["encoder.layers.0.linear1"], batch_size=40))
    assert [a["encoder.layers.0.linear1"].shape for a in acts] == [(40, 256)] * 2 + [(16, 256)]
    reg = _registry(digits)
    reg.add("base", base)
    reg.add("p40", pruned, parent="base", operation="prune")
    reg.evaluate(progress=False)
    row = reg.compare("base", "p40").layers.loc["encoder.layers.0.linear1"]
    oa = _outputs(base, "encoder.layers.0.linear1", digits.test_inputs[:N_EVAL], False)
    ob = _outputs(pruned, "encoder.layers.0.linear1", digits.test_inputs[:N_EVAL], False)
    assert oa.shape[1] == N_EVAL  # (L, B, d): sequence first
    xa, xb = oa.transpose(0, 1).flatten(1), ob.transpose(0, 1).flatten(1)
    assert row["cka"] == pytest.approx(linear_cka(xa, xb), abs=1e-6)
    assert row["note"] == ""


def test_per_instance_rule():
    assert per_instance(torch.zeros(4, 3), 4).shape == (4, 3)
    assert per_instance(torch.zeros(7, 4, 3), 4).shape == (4, 7, 3)  # (L, B, d)
    assert per_instance(torch.zeros(1, 7, 3), 4) is None  # broadcast over the batch
    assert per_instance(torch.zeros(()), 4) is None
    assert per_instance(torch.zeros(5, 3), 4) is None
    # A last batch as long as the sequence keeps the layout of the first batch.
    assert batch_layout(torch.zeros(8, 64, 3), 64) == "sequence"
    assert per_instance(torch.zeros(8, 8, 3), 8, "sequence").shape == (8, 8, 3)
    x = torch.arange(8 * 8 * 3.0).reshape(8, 8, 3)
    assert torch.equal(per_instance(x, 8, "sequence"), x.transpose(0, 1))


# -- dict outputs in every path (15.3) ---------------------------------------------------


def test_dict_output_model_every_measure(digits, digits_cnn):
    reg = _registry(digits)
    reg.add("plain", copy.deepcopy(digits_cnn))
    reg.compress("plain", "prune", amount=0.6, name="plain-p60")
    reg.add("dict", DictOutput(copy.deepcopy(digits_cnn)))
    reg.add("dict-p60", DictOutput(copy.deepcopy(reg.model("plain-p60"))), parent="dict")
    reg.evaluate(progress=False)
    plain, wrapped = reg.compare("plain", "plain-p60"), reg.compare("dict", "dict-p60")
    assert wrapped.agreement == plain.agreement
    assert wrapped.knn_agreement(10) == pytest.approx(plain.knn_agreement(10))
    assert wrapped.ood_agreement() == pytest.approx(plain.ood_agreement())
    value = wrapped.adversarial_overlap(max_instances=64, steps=3)
    assert value == pytest.approx(plain.adversarial_overlap(max_instances=64, steps=3))
    flipped = [
        c.adversarial_details(max_instances=64, steps=3)["flipped_a"] for c in (wrapped, plain)
    ]
    assert flipped[0] == flipped[1] > 0
    layers = wrapped.layers
    assert list(layers.index) == ["net." + n for n in plain.layers.index]
    np.testing.assert_allclose(
        layers["weight_rel_change"].to_numpy(), plain.layers["weight_rel_change"].to_numpy()
    )
    np.testing.assert_allclose(layers["cka"].to_numpy(), plain.layers["cka"].to_numpy())
    assert wrapped.cka_matrix().shape == (6, 6)


# -- modules renamed by drop_layers, composed along provenance (15.4) ------------------------


def test_drop_layers_records_its_module_map(treg):
    info = treg.record("drop1").info
    assert info["module_map"] == {
        "encoder.layers.1": None,
        "encoder.layers.2": "encoder.layers.1",
        "encoder.layers.3": "encoder.layers.2",
    }


def test_kept_blocks_pair_with_their_origin(treg, digits):
    table = treg.compare("base", "drop1").layers
    kept = table.loc["encoder.layers.2.linear1"]
    assert kept["module_b"] == "encoder.layers.1.linear1" and kept["status"] == "both"
    assert kept["weight_rel_change"] == 0.0  # copied unchanged
    removed = table.loc["encoder.layers.1.linear1"]
    assert removed["status"] == "only_a" and removed["module_b"] is None
    assert removed["note"] == "removed by drop_layers"
    assert np.isnan(removed["weight_rel_change"]) and removed["sparsity_a"] == 0.0
    assert set(table.index[table["status"] == "only_a"].str[:16]) == {"encoder.layers.1"}
    # Block 0 runs on the same inputs in both: its outputs are identical.
    assert table.loc["encoder.layers.0.linear1", "activation_rel_change"] == pytest.approx(0.0)
    assert table.loc["encoder.layers.0.linear1", "cka"] == pytest.approx(1.0, abs=1e-6)
    weighted = table[(table["status"] == "both") & (table["row_type"] == "parameters")]
    assert (weighted["weight_rel_change"] == 0).all()
    # The reverse direction pairs the same modules.
    back = treg.compare("drop1", "base").layers
    assert back.loc["encoder.layers.1.linear1", "module_b"] == "encoder.layers.2.linear1"
    assert back.loc["encoder.layers.1.linear1 (b)", "status"] == "only_b"
    hist = treg.compare("base", "drop1").histograms("encoder.layers.3.linear2")
    assert (hist["weights"]["a"] == hist["weights"]["b"]).all()


def test_grandchild_and_sibling_pairing(treg):
    table = treg.compare("base", "drop1-p50").layers
    row = table.loc["encoder.layers.3.linear1"]
    assert row["module_b"] == "encoder.layers.2.linear1"
    a, b = treg.model("base"), treg.model("drop1-p50")
    direct = _rel(
        _module_vector(a, "encoder.layers.3.linear1"),
        _module_vector(b, "encoder.layers.2.linear1"),
    )
    assert row["weight_rel_change"] == pytest.approx(direct, rel=1e-9)
    wa = _module_vector(a, "encoder.layers.3.linear1")
    wb = _module_vector(b, "encoder.layers.2.linear1")
    assert row["zero_b_only"] == pytest.approx(((wa != 0) & (wb == 0)).double().mean().item())
    # Siblings: drop1 kept original block 2 as its 1, drop2 removed it.
    siblings = treg.compare("drop1", "drop2").layers
    assert siblings.loc["encoder.layers.0.linear1", "weight_rel_change"] == 0.0
    assert siblings.loc["encoder.layers.2.linear1", "module_b"] == "encoder.layers.2.linear1"
    gone = siblings.loc["encoder.layers.1.linear1"]
    assert gone["status"] == "only_a" and gone["note"] == "removed by drop_layers"
    extra = siblings.loc["encoder.layers.1.linear1 (b)"]  # drop2's block 1, dropped by drop1
    assert extra["status"] == "only_b" and extra["module_b"] == "encoder.layers.1.linear1"
    assert extra["note"] == "removed by drop_layers"
    assert siblings.index.is_unique


def test_layer_table_and_module_map_survive_the_store(treg):
    table = treg.compare("base", "drop1").layers
    reopened = cnc.ModelRegistry(store=treg._store.path)
    assert reopened.record("drop1").info["module_map"] == treg.record("drop1").info["module_map"]
    again = reopened.compare("base", "drop1").layers  # from the store, without the models
    assert list(again.columns) == list(table.columns)
    assert again.loc["encoder.layers.1.linear1", "module_b"] is None
    assert again.loc["encoder.layers.2.linear1", "module_b"] == "encoder.layers.1.linear1"
    assert list(again["note"]) == list(table["note"])


def _drop(n: int, i: int) -> dict[str, str | None]:
    return {f"l.{i}": None, **{f"l.{j}": f"l.{j - 1}" for j in range(i + 1, n)}}


def test_rename_and_compose():
    assert rename_module({"l.1": None, "l.2": "l.1"}, "l.2.fc") == "l.1.fc"
    assert rename_module({"l.1": None}, "l.10.fc") == "l.10.fc"
    assert rename_module({"l.1": None}, "l.1.fc") is None
    records = {
        "r": ModelRecord("r"),
        # r has blocks l.0-l.3; c drops r's 0, g drops c's 0 (r's 1), s drops r's 1.
        "c": ModelRecord("c", "r", "drop_layers", info={"module_map": _drop(4, 0)}),
        "g": ModelRecord("g", "c", "drop_layers", info={"module_map": _drop(3, 0)}),
        "s": ModelRecord("s", "r", "drop_layers", info={"module_map": _drop(4, 1)}),
        "other": ModelRecord("other"),
    }
    get = records.__getitem__
    assert module_correspondence(get, "r", "g").map("l.3.x") == ("l.1.x", "")
    assert module_correspondence(get, "r", "g").map("l.1.x") == (None, "removed by drop_layers")
    assert module_correspondence(get, "g", "r").map("l.1.x") == ("l.3.x", "")
    assert module_correspondence(get, "c", "s").map("l.0.x") == (None, "removed by drop_layers")
    assert module_correspondence(get, "s", "c").map("l.0.x") == (None, "removed by drop_layers")
    assert module_correspondence(get, "r", "other").map("l.1.x") == ("l.1.x", "")


# -- factorised modules (16.7) -------------------------------------------------------------


def test_low_rank_modules_compared_with_their_origin(digits):
    mlp = _train(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)),
        digits,
        epochs=3,
    )
    reg = _registry(digits)
    reg.add("mlp", mlp)
    reg.compress("mlp", "low_rank", rank=4, name="r4")
    reg.evaluate(progress=False)
    assert reg.record("r4").info["factorised"] == {"1": 4, "3": 4}  # every Linear
    table = reg.compare("mlp", "r4").layers
    table = table[table["row_type"] == "parameters"]  # ReLU: an activation-only row
    assert list(table.index) == ["1", "3"]
    assert (table["status"] == "both").all()
    assert (table["note"] == "factorised by low_rank").all()
    child = reg.model("r4")
    for name in ("1", "3"):
        original = torch.cat(
            [mlp.get_submodule(name).bias, mlp.get_submodule(name).weight.flatten()]
        )
        factors = child.get_submodule(name)
        product = factors[1].weight @ factors[0].weight
        rebuilt = torch.cat([factors[1].bias, product.flatten()])
        assert table.loc[name, "weight_rel_change"] == pytest.approx(
            _rel(original.detach(), rebuilt.detach()), rel=1e-5
        )
        x = digits.test_inputs[:N_EVAL]
        oa, ob = _outputs(mlp, name, x), _outputs(child, name, x)
        assert table.loc[name, "activation_rel_change"] == pytest.approx(_rel(oa, ob), rel=1e-5)
        assert table.loc[name, "cka"] == pytest.approx(linear_cka(oa, ob), abs=1e-6)
    assert table.loc["1", "params"] == 64 * 48 + 48


# -- structured pruning amounts and what it cannot slice (16.4, 17.5) ------------------------


@pytest.mark.parametrize("amount", [0.95, 0.97, 1e-4, 0.4])
def test_prune_structured_removes_the_fraction_asked(digits, digits_cnn, amount):
    report: dict = {}
    child = apply_operation(
        digits_cnn,
        "prune_structured",
        amount=amount,
        example_input=digits.test_inputs[:32],
        report=report,
    )
    for name, n in (("features.0", 16), ("features.3", 32), ("classifier.1", 64)):
        expected = n - min(round(amount * n), n - 1)
        assert child.get_submodule(name).weight.shape[0] == expected, name
        assert report["pruned"][name] == [n, expected]
    assert child.classifier[3].out_features == 10
    assert report["skipped"] == {}


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.lstm = nn.LSTM(16, 24, batch_first=True)
        self.fc = nn.Linear(24, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embed(x.reshape(x.shape[0], 8, 8)))
        return self.head(torch.relu(self.fc(h[:, -1])))


class FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(48, 64) * 0.1)
        self.fc = nn.Linear(48, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.linear(x.flatten(1), self.w)
        return self.head(torch.relu(self.fc(torch.relu(h))))


def test_prune_structured_skips_what_it_cannot_slice(digits):
    reg = _registry(digits)
    torch.manual_seed(0)
    reg.add("lstm", LSTMNet().eval())
    reg.add("functional", FunctionalNet().eval())
    with pytest.warns(UserWarning, match="unpruned.*lstm"):
        reg.compress("lstm", "prune_structured", amount=0.5, name="lstm-s50")
    info = reg.record("lstm-s50").info
    assert info["pruned"] == {"fc": [32, 16]}
    assert set(info["skipped"]) == {"embed", "lstm"}
    assert "recurrent" in info["skipped"]["lstm"]
    child = reg.model("lstm-s50")
    assert child.fc.out_features == 16 and child.head.in_features == 16
    with pytest.warns(UserWarning, match="unpruned"):
        reg.compress("functional", "prune_structured", amount=0.5, name="functional-s50")
    info = reg.record("functional-s50").info
    assert info["pruned"] == {"fc": [32, 16]} and info["skipped"] == {
        "w": "parameter used outside a module"
    }
    reg.evaluate(progress=False)
    table = reg.compare("lstm", "lstm-s50").layers
    assert np.isnan(table.loc["fc", "weight_rel_change"])
    assert "weights changed shape" in table.loc["fc", "note"]
    assert table.loc["lstm", "weight_rel_change"] == 0.0


def test_prune_structured_on_a_transformer_keeps_attention_whole(treg, digits):
    with pytest.warns(UserWarning, match="unpruned"):
        name = treg.compress("base", "prune_structured", amount=0.5, name="s50")
    child = treg.model(name)
    info = treg.record(name).info
    assert child.encoder.layers[0].linear1.out_features == 16  # FFN units halved
    assert child.encoder.layers[0].self_attn.embed_dim == 16  # heads kept whole
    assert info["pruned"]["encoder.layers.0.linear1"] == [32, 16]
    assert "encoder.layers.0.self_attn" in info["skipped"]
    assert child(digits.test_inputs[:8]).shape == (8, 10)
