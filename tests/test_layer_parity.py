"""What Compress and Compare shows per module, in our layer table: each number against NumPy.

Mean absolute change of weights and activations, the distribution of per-element relative
weight change, mean |w| and |x|, rows for modules without parameters, and histograms on
bins both models share. Models: an MLP and the digits CNN trained on digits, and a token
model (nn.TransformerEncoder, padded sequences) trained on digit pixels as tokens.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.metrics.cka import linear_cka
from cnc_widgets.metrics.histograms import activation_histograms, nice_edges, weight_histograms
from cnc_widgets.metrics.layers import layer_table
from cnc_widgets.metrics.weights import ELEMENT_CHANGE_COLUMNS, element_change_fractions

N = 192  # instances: three batches of 64
OLD_COLUMNS = [
    "kind",
    "params",
    "zero_both",
    "zero_a_only",
    "zero_b_only",
    "sparsity_a",
    "sparsity_b",
    "weight_rel_change",
    "activation_rel_change",
    "cka",
    "module_b",
    "status",
    "note",
]


def _fit(model: nn.Module, x, y, steps: int = 40) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for i in range(steps):
        s = (i * 128) % (len(y) - 128)
        batch = {k: v[s : s + 128] for k, v in x.items()} if isinstance(x, dict) else x[s : s + 128]
        out = model(**batch) if isinstance(batch, dict) else model(batch)
        opt.zero_grad()
        nn.functional.cross_entropy(out, y[s : s + 128]).backward()
        opt.step()
    return model.eval()


def _compressed(model: nn.Module) -> nn.Module:
    """Half the weights of each tensor zeroed, the rest rounded to a coarse grid: every
    bin of the element change gets some elements."""
    child = copy.deepcopy(model)
    with torch.no_grad():
        for p in child.parameters():
            cut = p.abs().flatten().kthvalue(max(p.numel() // 2, 1)).values
            p.copy_(torch.where(p.abs() <= cut, 0.0, torch.round(p * 8) / 8))
    return child


def _outputs(model: nn.Module, name: str, inputs, batch_size: int = 64) -> np.ndarray:
    got = []
    handle = model.get_submodule(name).register_forward_hook(
        lambda _m, _i, o: got.append(o.detach().double().numpy().copy())
    )
    n = len(inputs["input_ids"]) if isinstance(inputs, dict) else len(inputs)
    with torch.inference_mode():
        for s in range(0, n, batch_size):
            if isinstance(inputs, dict):
                model(**{k: v[s : s + batch_size] for k, v in inputs.items()})
            else:
                model(inputs[s : s + batch_size])
    handle.remove()
    return np.concatenate(got)


def _vector(model: nn.Module, name: str) -> np.ndarray:
    params = dict(model.get_submodule(name).named_parameters(recurse=False))
    return np.concatenate([params[k].detach().double().numpy().ravel() for k in sorted(params)])


def _cnc_fractions(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Compress and Compare's rule, written out: 0/0 -> 0, x/0 -> 1e9, bins [lo, hi)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(b - a) / np.abs(a)
    r = np.where(np.isinf(r), 1e9, np.where(np.isnan(r), 0.0, r))
    edges = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1e12]
    return np.array([np.mean((r >= lo) & (r < hi)) for lo, hi in itertools.pairwise(edges)])


@pytest.fixture(scope="module")
def mlp(digits):
    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(32, 32),
        nn.GELU(),
        nn.Linear(32, 10),
    )
    return _fit(net, digits.train_inputs, digits.train_labels)


@pytest.fixture(scope="module")
def mlp_table(mlp, digits):
    return layer_table(mlp, _compressed(mlp), digits.test_inputs[:N], batch_size=64)


def test_element_change_known_answers():
    a = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, -2.0, 0.0, 0.0, 4.0, 1.0])
    b = torch.tensor([1.1, 0.7, 1.5, 0.35, 0.1, -4.0, 0.0, 3.0, 0.0, 1.2])
    # changes: .1 .3 .5 .65 .9 1 | 0 (0 -> 0) inf (0 -> 3) | 1 (pruned) .2 (on an edge)
    got = element_change_fractions(a, b)
    np.testing.assert_array_equal(got, [0.2, 0.2, 0.1, 0.1, 0.1, 0.3])
    np.testing.assert_array_equal(got, _cnc_fractions(a.double().numpy(), b.double().numpy()))


def test_weight_measures_match_numpy(mlp, mlp_table):
    b = _compressed(mlp)
    for name in ["1", "4", "6"]:
        va, vb = _vector(mlp, name), _vector(b, name)
        row = mlp_table.loc[name]
        assert row["row_type"] == "parameters"
        assert row["weight_mean_abs_change"] == pytest.approx(np.abs(vb - va).mean(), rel=1e-12)
        assert row["weight_mean_abs_a"] == pytest.approx(np.abs(va).mean(), rel=1e-12)
        assert row["weight_mean_abs_b"] == pytest.approx(np.abs(vb).mean(), rel=1e-12)
        fractions = row[ELEMENT_CHANGE_COLUMNS].to_numpy(dtype=float)
        np.testing.assert_allclose(fractions, _cnc_fractions(va, vb), atol=1e-15)
        assert fractions.sum() == pytest.approx(1.0)
        # Half of each tensor pruned: at least that share changed by 100%.
        assert fractions[-1] >= 0.5 - 1 / va.size


def test_activation_measures_and_rows_without_parameters(mlp, mlp_table, digits):
    b = _compressed(mlp)
    x = digits.test_inputs[:N]
    table = mlp_table
    assert list(table.index) == ["0", "1", "2", "3", "4", "5", "6"]
    kinds = dict(zip(table.index, table["row_type"], strict=True))
    assert [k for k, v in kinds.items() if v == "activation only"] == ["0", "2", "3", "5"]
    for name in ["1", "2", "3", "5", "6"]:
        oa, ob = _outputs(mlp, name, x), _outputs(b, name, x)
        row = table.loc[name]
        assert row["activation_mean_abs_change"] == pytest.approx(np.abs(ob - oa).mean(), rel=1e-5)
        assert row["activation_mean_abs_a"] == pytest.approx(np.abs(oa).mean(), rel=1e-5)
        assert row["activation_mean_abs_b"] == pytest.approx(np.abs(ob).mean(), rel=1e-5)
        rel = np.linalg.norm(ob - oa) / np.linalg.norm(oa)
        assert row["activation_rel_change"] == pytest.approx(rel, rel=1e-5)
        assert row["cka"] == pytest.approx(linear_cka(torch.tensor(oa), torch.tensor(ob)), abs=1e-6)
    free = table[table["row_type"] == "activation only"]
    assert (free["params"] == 0).all() and free["note"].str.contains("no parameters").all()
    weight_cells = ["zero_both", "sparsity_a", "weight_rel_change", "weight_mean_abs_a"]
    assert free[weight_cells + ELEMENT_CHANGE_COLUMNS].isna().all().all()
    # The Dropout hands on ReLU's tensor in eval mode: its row repeats ReLU's, to the bit.
    measures = ["activation_rel_change", "activation_mean_abs_change", "cka"]
    assert table.loc["3", measures].tolist() == table.loc["2", measures].tolist()


def test_existing_rows_and_columns_unchanged(mlp, mlp_table, digits):
    old = layer_table(
        mlp, _compressed(mlp), digits.test_inputs[:N], batch_size=64, activation_only=False
    )
    assert list(old.index) == ["1", "4", "6"]
    params = mlp_table[mlp_table["row_type"] == "parameters"]
    pd.testing.assert_frame_equal(params[OLD_COLUMNS], old[OLD_COLUMNS])


def test_cnn_pooling_relu_and_flatten_rows(digits, digits_cnn):
    b = _compressed(digits_cnn)
    x = digits.test_inputs[:N]
    table = layer_table(digits_cnn, b, x, batch_size=64)
    free = table.index[table["row_type"] == "activation only"].tolist()
    assert free == ["features.2", "features.5", "features.6", "classifier.0", "classifier.2"]
    for name in ["features.5", "features.6", "classifier.0"]:
        oa, ob = _outputs(digits_cnn, name, x), _outputs(b, name, x)
        row = table.loc[name]
        assert row["activation_mean_abs_change"] == pytest.approx(np.abs(ob - oa).mean(), rel=1e-5)
        assert row["activation_mean_abs_a"] == pytest.approx(np.abs(oa).mean(), rel=1e-5)
        fa, fb = oa.reshape(len(oa), -1), ob.reshape(len(ob), -1)
        assert row["cka"] == pytest.approx(linear_cka(torch.tensor(fa), torch.tensor(fb)), abs=1e-6)
    # Flatten reshapes MaxPool's output: the same elements, the same numbers.
    assert table.loc["classifier.0", "activation_mean_abs_a"] == pytest.approx(
        table.loc["features.6", "activation_mean_abs_a"], rel=1e-6
    )


class TokenModel(nn.Module):
    """Digit pixels (0..16) as 16 tokens of a padded sequence, a TransformerEncoder, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(17, 16)
        block = nn.TransformerEncoderLayer(
            16, 2, 32, dropout=0.1, activation=nn.GELU(), batch_first=True
        )
        self.encoder = nn.TransformerEncoder(block, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 10)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.emb(input_ids), src_key_padding_mask=attention_mask == 0)
        m = attention_mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1))


def _tokens(images: torch.Tensor) -> dict[str, torch.Tensor]:
    ids = images.reshape(len(images), -1)[:, 24:40].round().long().clamp(0, 16)
    lengths = 8 + torch.arange(len(ids)) % 9  # 8..16 real tokens, the rest padding
    mask = (torch.arange(16) < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def test_token_model_means_leave_out_padding(digits):
    x = _tokens(digits.train_inputs * 16)
    model = _fit(TokenModel(), x, digits.train_labels, steps=30)
    b = _compressed(model)
    test = _tokens(digits.test_inputs[:N] * 16)
    table = layer_table(model, b, test, batch_size=64)
    real = test["attention_mask"].numpy().astype(bool)
    assert table.loc["encoder.layers.0.activation", "row_type"] == "activation only"
    names = ["encoder.layers.0.linear1", "encoder.layers.0.activation", "encoder.layers.1.norm2"]
    for name in names:
        oa, ob = _outputs(model, name, test)[real], _outputs(b, name, test)[real]
        row = table.loc[name]
        assert row["activation_mean_abs_change"] == pytest.approx(np.abs(ob - oa).mean(), rel=1e-5)
        assert row["activation_mean_abs_a"] == pytest.approx(np.abs(oa).mean(), rel=1e-5)
        assert row["activation_mean_abs_b"] == pytest.approx(np.abs(ob).mean(), rel=1e-5)


def test_nice_edges_known_answers():
    np.testing.assert_allclose(nice_edges(-0.9, 1.0, 5), [-1.25, -0.75, -0.25, 0.25, 0.75, 1.25])
    # Ten bins allowed: a step of 0.2 needs exactly ten, centred on -0.8 .. 1.0.
    np.testing.assert_allclose(nice_edges(-0.9, 1.0, 10), np.arange(-4.5, 5.6) * 0.2)
    edges = nice_edges(-0.0731, 0.0642, 31)
    step = edges[1] - edges[0]
    assert step == pytest.approx(0.005) and len(edges) - 1 <= 31
    assert edges[0] <= -0.0731 and edges[-1] >= 0.0642
    centres = (edges[:-1] + edges[1:]) / 2
    assert np.min(np.abs(centres)) == pytest.approx(0.0, abs=1e-15)  # 0 is a bin's centre
    constant = nice_edges(0.3, 0.3)  # one value: a padded range around it
    assert constant[0] < 0.3 < constant[-1] and len(constant) - 1 <= 31
    assert np.histogram([0.3], constant)[0].sum() == 1
    with pytest.raises(ValueError, match="finite range"):
        nice_edges(0.0, np.inf)


def test_weight_histograms_on_nice_shared_bins(mlp):
    b = _compressed(mlp)
    wa = dict(mlp[4].named_parameters())
    wb = dict(b[4].named_parameters())
    hist = weight_histograms(wa, wb, bins=31, nice=True)
    va, vb = _vector(mlp, "4"), _vector(b, "4")
    edges = np.append(hist["left"].to_numpy(), hist["right"].iloc[-1])
    assert len(hist) <= 31
    np.testing.assert_array_equal(hist["a"], np.histogram(va.astype(np.float32), edges)[0])
    np.testing.assert_array_equal(hist["b"], np.histogram(vb.astype(np.float32), edges)[0])
    assert hist["a"].sum() == va.size == hist["b"].sum()


def test_activation_histograms_rebinned_exactly_or_left_per_model():
    rng = np.random.default_rng(0)
    fine = np.linspace(-1.0, 1.0, 65)
    values = rng.normal(0, 0.5, 4000)
    counts = np.histogram(values, np.concatenate([[-np.inf], fine, [np.inf]]))[0]
    coarse = fine[::2]  # b's 32 bins: every other edge of a's
    counts_b = np.histogram(values, np.concatenate([[-np.inf], coarse, [np.inf]]))[0]
    got = activation_histograms((fine, counts), (coarse, counts_b), shared=True)
    assert got.attrs["bins"] == "shared"
    np.testing.assert_array_equal(got.loc["a", "count"], got.loc["b", "count"])
    assert got.loc["a", "count"].sum() == 4000
    other = np.linspace(-1.3, 0.9, 65)
    counts_c = np.histogram(values, np.concatenate([[-np.inf], other, [np.inf]]))[0]
    per_model = activation_histograms((fine, counts), (other, counts_c), shared=True)
    assert per_model.attrs["bins"] == "per-model" and "own bins" in per_model.attrs["note"]
    np.testing.assert_array_equal(per_model.loc["b", "count"], counts_c)


def test_comparison_histograms_shared_and_for_a_relu(digits, digits_cnn):
    reg = cnc.ModelRegistry()
    reg.set_data(digits.test_inputs[:N], digits.test_labels[:N], batch_size=64)
    reg.add("base", copy.deepcopy(digits_cnn))
    reg.compress("base", "prune", amount=0.5, name="p50")
    reg.evaluate(progress=False)
    cmp = reg.compare("base", "p50")
    plain = cmp.histograms("classifier.1", bins=20)
    assert len(plain["weights"]) == 20
    shared = cmp.histograms("classifier.1", bins=31, shared=True)
    w = shared["weights"]
    assert len(w) <= 31 and w["a"].sum() == w["b"].sum() == 32 * 16 * 64 + 64
    relu = cmp.histograms("features.2", shared=True)
    assert relu["weights"].empty
    assert relu["activations"].attrs["bins"] in ("shared", "per-model")
    assert set(relu["activations"].index.get_level_values("model")) == {"a", "b"}
    chart = cmp.histogram_chart("features.2")
    assert chart.to_dict()["title"]["text"].startswith("activations of features.2")
