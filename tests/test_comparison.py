"""reg.compare / compare_many on real models, checked against direct computations."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

import cnc_widgets as cnc
from cnc_widgets.metrics.cka import linear_cka


@pytest.fixture(scope="module")
def reg(tmp_path_factory, digits, digits_cnn):
    r = cnc.ModelRegistry(store=tmp_path_factory.mktemp("store"))
    r.set_data(
        digits.test_inputs,
        digits.test_labels,
        classes=digits.classes,
        instances=digits.test_instances,
    )
    r.add("base", copy.deepcopy(digits_cnn))
    r.compress("base", "prune", amount=0.6, name="p60")
    r.compress("base", "quantize_dynamic", name="int8")
    r.compress("base", "prune_structured", amount=0.4, name="s40")
    r.evaluate(progress=False)
    return r


def direct_logits(model, x):
    with torch.inference_mode():
        return model(x).float().numpy()


def test_predictions_and_errors_match_direct(reg, digits):
    cmp = reg.compare("base", "p60")
    la = direct_logits(reg.model("base"), digits.test_inputs)
    lb = direct_logits(reg.model("p60"), digits.test_inputs)
    pa, pb, y = la.argmax(1), lb.argmax(1), digits.test_labels.numpy()
    assert cmp.agreement == pytest.approx(np.mean(pa == pb))
    ea, eb = set(np.flatnonzero(pa != y)), set(np.flatnonzero(pb != y))
    assert cmp.error_jaccard == pytest.approx(len(ea & eb) / len(ea | eb))
    expected = pd.crosstab(pa, pb).reindex(index=range(10), columns=range(10), fill_value=0)
    np.testing.assert_array_equal(cmp.change_matrix.to_numpy(), expected.to_numpy())
    inst = cmp.instances
    assert {"label", "pred_a", "pred_b", "conf_true_a", "conf_true_b", "kl", "mse"} <= set(
        inst.columns
    )
    pa_soft = torch.softmax(torch.from_numpy(la).double(), 1).numpy()
    pb_soft = torch.softmax(torch.from_numpy(lb).double(), 1).numpy()
    kl = (pa_soft * (np.log(pa_soft) - np.log(pb_soft))).sum(1)
    np.testing.assert_allclose(inst["kl"].to_numpy(), kl, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(inst["mse"].to_numpy(), ((la - lb) ** 2).mean(1), rtol=1e-5)
    np.testing.assert_allclose(
        inst["conf_true_b"].to_numpy(), pb_soft[np.arange(len(y)), y], rtol=1e-5
    )
    groups = cmp.group_accuracy()
    assert groups["count"].sum() == len(y)


def test_knn_matches_sklearn(reg):
    cmp = reg.compare("base", "p60")
    ha, hb = cmp._embeddings()
    sets = []
    for h in (ha, hb):
        nn_ = NearestNeighbors(n_neighbors=11, metric="cosine", algorithm="brute").fit(h)
        idx = nn_.kneighbors(h, return_distance=False)
        sets.append([set(row[row != i][:10]) for i, row in enumerate(idx)])
    expected = np.mean([len(a & b) / len(a | b) for a, b in zip(*sets, strict=True)])
    assert cmp.knn_agreement(10) == pytest.approx(expected, abs=0.01)  # ties may differ
    sweep = cmp.knn_sweep((5, 10, 50))
    assert sweep.loc[10] == pytest.approx(cmp.knn_agreement(10))
    # k past the other instances is clipped to N - 1 (issue 17.13), and the k used is kept.
    assert cmp.knn_agreement(len(ha)) == pytest.approx(cmp.knn_agreement(len(ha) - 1))
    assert cmp.knn_k(len(ha)) == len(ha) - 1


def test_identity_comparison(reg):
    cmp = reg.compare("base", "base")
    assert cmp.agreement == 1.0 and cmp.error_jaccard == 1.0
    assert cmp.knn_agreement(10) == pytest.approx(1.0)
    assert cmp.ood_agreement() == 1.0
    assert cmp.adversarial_overlap(max_instances=64, steps=3) == 1.0
    assert cmp.instances["kl"].abs().max() < 1e-6
    layers = cmp.layers
    assert (layers.loc[layers["row_type"] == "parameters", "weight_rel_change"] == 0).all()
    assert np.allclose(layers["cka"], 1.0, atol=1e-6)
    assert np.allclose(layers["activation_rel_change"], 0.0)


def test_layers_and_cka(reg, digits):
    cmp = reg.compare("base", "p60")
    layers = cmp.layers
    a, b = reg.model("base"), reg.model("p60")
    wa, wb = a.classifier[1].weight.detach(), b.classifier[1].weight.detach()
    ba, bb = a.classifier[1].bias.detach(), b.classifier[1].bias.detach()
    va, vb = torch.cat([ba, wa.flatten()]).double(), torch.cat([bb, wb.flatten()]).double()
    row = layers.loc["classifier.1"]
    assert row["weight_rel_change"] == pytest.approx((torch.norm(vb - va) / torch.norm(va)).item())
    assert row["zero_b_only"] == pytest.approx(((va != 0) & (vb == 0)).double().mean().item())
    # CKA of one layer's outputs against a direct computation on all instances.
    outs = {}
    for name, model in (("a", a), ("b", b)):
        handle = model.classifier[1].register_forward_hook(
            lambda m, i, o, n=name: outs.__setitem__(n, o)
        )
        with torch.inference_mode():
            model(digits.test_inputs)
        handle.remove()
    assert row["cka"] == pytest.approx(linear_cka(outs["a"], outs["b"]), abs=1e-6)
    matrix = cmp.cka_matrix()
    assert matrix.shape == (6, 6)
    assert matrix.loc["classifier.1", "classifier.1"] == pytest.approx(row["cka"], abs=1e-6)
    int8 = reg.compare("base", "int8").layers
    assert "classifier.1" in int8.index and int8.loc["classifier.1", "weight_rel_change"] > 0
    structured = reg.compare("base", "s40").layers
    assert structured["weight_rel_change"].isna().any()  # shapes changed
    assert structured["cka"].between(0, 1).all()


def test_adversarial_transfer_for_int8(reg):
    cmp = reg.compare("base", "int8")
    value = cmp.adversarial_overlap(max_instances=64, steps=3)
    assert 0.0 <= value <= 1.0
    details = cmp.adversarial_details(max_instances=64, steps=3)
    assert details["value"] == value
    assert details["source_b"] == "transfer from base"
    assert details["source_a"] == "direct"
    assert details["attack"] == "pgd-linf" and details["eps"] > 0
    assert "classifies correctly" in details["success"]


def test_cached_in_store_and_reopened(reg, monkeypatch):
    cmp = reg.compare("base", "s40")
    value = cmp.knn_agreement(7)
    again = cnc.ModelRegistry(store=reg._store.path)
    from cnc_widgets.metrics import knn

    def forbidden(*args, **kwargs):
        raise AssertionError("recomputed a cached measure")

    monkeypatch.setattr(knn, "knn_search", forbidden)
    import cnc_widgets.comparison.core as comparison

    monkeypatch.setattr(comparison.m, "knn_agreement", forbidden)
    assert again.compare("base", "s40").knn_agreement(7) == value


def test_compare_many(reg):
    table = reg.compare_many("base", adversarial=False)
    assert list(table.index) == ["p60", "int8", "s40"]
    for column in ["agreement", "error_jaccard", "knn_agreement@10", "ood_agreement"]:
        assert table[column].between(0, 1).all()
    assert table.loc["s40", "agreement"] < table.loc["int8", "agreement"]


def test_bad_comparisons(reg, digits):
    with pytest.raises(KeyError, match="ghost"):
        reg.compare("base", "ghost")
    other = cnc.ModelRegistry()
    other.set_data(digits.test_inputs, digits.test_labels)
    other.add("ten", reg.model("base"))
    other.add("three", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)))
    with pytest.raises(ValueError, match="not been evaluated"):
        other.compare("ten", "three")
    with pytest.raises(cnc.EvaluationError, match="3 logits"):
        other.evaluate(progress=False)


def test_model_without_embedding_names_the_setting(digits):
    conv_only = torch.nn.Sequential(
        torch.nn.Conv2d(1, 10, 8), torch.nn.Flatten()
    )  # (N, 10) logits, no nn.Linear
    r = cnc.ModelRegistry()
    r.set_data(digits.test_inputs, digits.test_labels)
    r.add("conv", conv_only)
    with pytest.raises(Exception, match="embedding="):
        r.evaluate(progress=False)
    r.set_data(digits.test_inputs, digits.test_labels, embedding="0")
    r.evaluate(progress=False)
    assert r.result("conv")["embeddings"].shape[0] == len(digits.test_labels)


def test_histograms_for_views(reg):
    cmp = reg.compare("base", "p60")
    hist = cmp.histograms("classifier.1", bins=20)
    w = hist["weights"]
    params = sum(t.numel() for t in reg.model("base").classifier[1].parameters())
    assert len(w) == 20 and w["a"].sum() == params and w["b"].sum() == params
    # 60% of the pruned model's weights are zero: the bin holding 0 grows.
    zero_bin = w[(w["left"] <= 0) & (w["right"] >= 0)].index[0]
    assert w.loc[zero_bin, "b"] > w.loc[zero_bin, "a"]
    acts = hist["activations"]
    n = len(reg.data)
    assert acts.loc["a", "count"].sum() == min(n * 64, n * 128)  # sampled 128 of 64 outputs
    assert set(acts.index.get_level_values("model")) == {"a", "b"}


def test_compare_many_sixteen_variants(digits, digits_cnn):
    r = cnc.ModelRegistry()
    r.set_data(digits.test_inputs, digits.test_labels, classes=digits.classes)
    r.add("base", copy.deepcopy(digits_cnn))
    amounts = [round(0.05 * i, 2) for i in range(1, 17)]
    names = [r.compress("base", "prune", amount=a) for a in amounts]
    r.evaluate(progress=False)
    table = r.compare_many("base", adversarial=False)
    assert list(table.index) == names
    assert table[["agreement", "knn_agreement@10", "ood_agreement"]].stack().between(0, 1).all()
    sparsity = r.metrics().loc[names, "sparsity"].to_numpy()
    assert np.all(np.diff(sparsity) > 0)
    # Heavier pruning moves more neighbourhoods (compare the ends of the sweep).
    assert table["knn_agreement@10"].iloc[-1] < table["knn_agreement@10"].iloc[0]
