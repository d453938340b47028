"""Common models and inputs that used to crash: MLPs, the digits CNN and token classifiers.

Each either works or fails at compress() with a message naming the problem and the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.compress.precision import half


class MaskPooled(nn.Module):
    """Token classifier that pools with ``mask.float()``, as much user code does."""

    def __init__(self, vocab: int = 30, dim: int = 16, classes: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        m = attention_mask.unsqueeze(-1).float()
        return self.head((self.emb(input_ids) * m).sum(1) / m.sum(1).clamp_min(1.0))


class PlainIds(nn.Module):
    """Token classifier called as ``model(ids)`` with a plain LongTensor."""

    def __init__(self, vocab: int = 30, dim: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids).mean(1))


class OtherKeys(MaskPooled):
    """The same classifier with its own argument names, returning a dict."""

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"logits": super().forward(ids, mask)}


class TwoFloats(nn.Module):
    """Takes a dict of two float feature tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([left, right], 1))


def token_task(n: int = 160, length: int = 8, seed: int = 0):
    """Label 1 when more than half of the real tokens come from the lower half of the vocab."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 30, (n, length), generator=gen)
    lengths = torch.randint(3, length + 1, (n,), generator=gen)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    low = ((ids < 15) & (ids > 0) & mask.bool()).sum(1).float()
    labels = (low > lengths.float() / 2).long()
    return ids, mask, labels


def fit(model: nn.Module, call, labels: torch.Tensor, steps: int = 150) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        out = call(model)
        logits = out["logits"] if isinstance(out, dict) else out
        nn.functional.cross_entropy(logits, labels).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def tokens():
    return token_task()


@pytest.fixture(scope="module")
def mask_pooled(tokens):
    ids, mask, y = tokens
    torch.manual_seed(1)
    return fit(MaskPooled(), lambda m: m(ids, mask), y)


def mlp(inputs: int = 4, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(inputs, 32), nn.ReLU(), nn.Linear(32, classes))


def registry_with(inputs, labels, model, **data) -> cnc.ModelRegistry:
    reg = cnc.ModelRegistry()
    reg.set_data(inputs, labels, **data)
    reg.add("base", model)
    return reg


# -- 1: adversarial_overlap on token ids and dicts of any shape ---------------------------


def test_adversarial_overlap_attacks_plain_token_ids_in_embedding_space(tokens):
    ids, _mask, y = tokens
    torch.manual_seed(2)
    model = fit(PlainIds(), lambda m: m(ids), y)
    reg = registry_with(ids, y, model)
    reg.compress("base", "prune", amount=0.5, name="p", include=".*")
    reg.evaluate(progress=False)
    table = reg.compare_many("base")
    cmp = reg.compare("base", "p")
    value = cmp.adversarial_overlap()
    assert table.loc["p", "adversarial_overlap"] == value
    details = cmp.adversarial_details()
    assert details["embedding_module"] is None and details["eps"] == 0.5
    assert details["flipped_a"] > 0  # a real attack on a trained model flips some
    # Jaccard of the two flipped sets, from the per-model outcomes
    assert 0.0 <= value <= 1.0


def test_adversarial_overlap_token_dict_under_any_key_names(tokens):
    ids, mask, y = tokens
    torch.manual_seed(3)
    model = fit(OtherKeys(), lambda m: m(ids, mask), y)
    reg = registry_with({"ids": ids, "mask": mask}, y, model)
    reg.compress("base", "prune", amount=0.3, name="p", include=".*")
    reg.evaluate(progress=False)
    cmp = reg.compare("base", "p")
    assert 0.0 <= cmp.adversarial_overlap() <= 1.0
    assert cmp.adversarial_details()["flipped_a"] > 0
    # the same model through its own embedding module, named explicitly
    again = cmp.adversarial_details(embedding_module="emb")
    assert again["value"] == cmp.adversarial_overlap()
    assert again["embedding_module"] == "emb"


def test_adversarial_overlap_perturbs_every_float_entry_of_a_dict():
    gen = torch.Generator().manual_seed(0)
    left, right = torch.rand(120, 4, generator=gen), torch.rand(120, 4, generator=gen) * 2
    y = ((left.sum(1) - right.sum(1) / 2) > 0).long()
    torch.manual_seed(0)
    model = fit(TwoFloats(), lambda m: m(left, right), y, steps=200)
    reg = registry_with({"left": left, "right": right}, y, model)
    reg.compress("base", "prune", amount=0.5, name="p")
    reg.evaluate(progress=False)
    cmp = reg.compare("base", "p")
    value = cmp.adversarial_overlap()
    lo = min(float(left.min()), float(right.min()))
    hi = max(float(left.max()), float(right.max()))
    details = cmp.adversarial_details()
    assert details["value"] == value
    assert details["eps"] == pytest.approx(0.05 * (hi - lo))
    assert details["flipped_a"] > 0 and 0.0 <= value <= 1.0


def test_integer_inputs_without_an_embedding_name_the_argument_that_helps():
    class OneHot(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(10, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.proj(nn.functional.one_hot(x, 10).float()).mean(1))

    x = torch.randint(0, 10, (40, 5), generator=torch.Generator().manual_seed(0))
    y = (x.sum(1) > 22).long()
    reg = registry_with(x, y, OneHot())
    reg.compress("base", "prune", amount=0.5, name="p")
    reg.evaluate(progress=False)
    cmp = reg.compare("base", "p")
    with pytest.raises(ValueError, match="embedding_module="):
        cmp.adversarial_overlap()
    assert 0.0 <= cmp.adversarial_overlap(embedding_module="proj") <= 1.0


# -- 2: one logit is a binary classifier ---------------------------------------------------


@pytest.mark.parametrize("squeeze", [False, True])
def test_a_one_logit_binary_classifier_evaluates_as_two_classes(squeeze):
    class Binary(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.body(x)
            return z.squeeze(1) if squeeze else z

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(80, 4, generator=gen)
    y = (x[:, 0] > x[:, 1]).long()
    torch.manual_seed(0)
    model = Binary()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        z = model(x).reshape(-1)
        nn.functional.binary_cross_entropy_with_logits(z, y.float()).backward()
        opt.step()
    reg = registry_with(x, y, model.eval(), classes=["no", "yes"])
    reg.compress("base", "prune", amount=0.5, name="p")
    reg.evaluate(progress=False)
    with torch.no_grad():
        z = model(x).reshape(-1)
    expected = float(((z > 0).long() == y).float().mean())
    assert reg.metrics().loc["base", "accuracy"] == pytest.approx(expected)
    assert expected > 0.8
    probs = torch.softmax(torch.from_numpy(reg.result("base")["logits"]), 1)[:, 1]
    torch.testing.assert_close(probs, torch.sigmoid(z), atol=1e-6, rtol=1e-5)
    assert 0.0 <= reg.compare("base", "p").adversarial_overlap() <= 1.0


# -- 3: float64 data and float64 models -----------------------------------------------------


def test_float64_data_evaluates_a_float32_model_and_its_half_child(digits, digits_cnn):
    x = digits.test_inputs[:100].double()
    reg = registry_with(x, digits.test_labels[:100], digits_cnn)
    reg.compress("base", "half", name="h")
    reg.evaluate(progress=False)
    with torch.no_grad():
        expected = (digits_cnn(x.float()).argmax(1) == digits.test_labels[:100]).float().mean()
    assert reg.metrics().loc["base", "accuracy"] == pytest.approx(float(expected))
    assert reg.metrics().loc["h", "accuracy"] > 0.8


def test_a_float64_model_passes_evaluation_and_efficiency(digits, digits_cnn):
    import copy

    model = copy.deepcopy(digits_cnn).double()
    reg = registry_with(digits.test_inputs[:64], digits.test_labels[:64], model)
    reg.evaluate(progress=False)
    row = reg.metrics().loc["base"]
    assert row["accuracy"] > 0.8 and row["latency_ms"] > 0 and row["macs"] > 0


# -- 4: half / bfloat16 of a model that makes float32 tensors in forward ---------------------


@pytest.mark.parametrize("operation", ["half", "bfloat16"])
def test_cast_keeps_mask_float_pooling_working(tokens, mask_pooled, operation):
    ids, mask, y = tokens
    reg = registry_with({"input_ids": ids, "attention_mask": mask}, y, mask_pooled)
    child = reg.compress("base", operation)
    reg.evaluate(progress=False)
    assert reg.model(child).head.weight.dtype != torch.float32
    cmp = reg.compare("base", child)
    assert cmp.agreement > 0.95
    assert reg.metrics().loc["base", "accuracy"] > 0.8
    # the cast model itself still speaks float32 to its caller
    with torch.no_grad():
        assert reg.model(child)(ids[:3], mask[:3]).dtype == torch.float32


# -- 6: chains that compress() accepted and evaluate() could not run --------------------------


@pytest.mark.parametrize("cast", ["half", "bfloat16"])
def test_low_rank_of_a_cast_model_runs(cast):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(60, 64, generator=gen)
    y = (x[:, :32].sum(1) > x[:, 32:].sum(1)).long()
    reg = registry_with(x, y, mlp(64, 2))
    low = reg.compress(reg.compress("base", cast), "low_rank", rank=4)
    reg.evaluate(progress=False)
    first = reg.model(low)[0]
    assert type(first).__name__ == "LowRankLinear"
    assert first[0].weight.dtype == {"half": torch.float16, "bfloat16": torch.bfloat16}[cast]
    # the same factorisation in float32, rounded to the cast dtype: nearly the same answers
    reg.compress("base", "low_rank", rank=4, name="low32")
    reg.evaluate(progress=False)
    assert reg.compare("low32", low).agreement > 0.9


def test_low_rank_of_a_cast_mask_pooled_model_runs(tokens, mask_pooled):
    ids, mask, y = tokens
    reg = registry_with({"input_ids": ids, "attention_mask": mask}, y, mask_pooled)
    reg.compress(reg.compress("base", "half"), "low_rank", rank=1, name="low")
    reg.evaluate(progress=False)
    assert reg.metrics().loc["low", "accuracy"] > 0.5


def test_quantizing_a_cast_model_is_refused_at_compress_with_the_reason():
    reg = registry_with(torch.rand(20, 4), torch.randint(0, 3, (20,)), mlp())
    reg.compress("base", "half", name="h")
    with pytest.raises(ValueError, match=r"needs float32 Linears.*quantize the float32 model"):
        reg.compress("h", "quantize_dynamic")
    assert reg.names == ["base", "h"]


def test_half_of_an_int8_cnn_runs(digits, digits_cnn):
    reg = registry_with(digits.test_inputs[:100], digits.test_labels[:100], digits_cnn)
    reg.compress(reg.compress("base", "quantize_dynamic", name="int8"), "half", name="int8-half")
    reg.evaluate(progress=False)
    assert reg.model("int8-half").features[0].weight.dtype == torch.float16
    assert reg.compare("int8", "int8-half").agreement > 0.95


def test_a_child_that_cannot_run_on_the_data_is_refused_at_compress():
    def widen(model: nn.Module) -> nn.Module:
        model[0] = nn.Linear(5, 32)  # no longer takes the data's 4 features
        return model

    reg = registry_with(torch.rand(20, 4), torch.randint(0, 3, (20,)), mlp())
    with pytest.raises(ValueError, match=r"fails on the evaluation data.*it was not added"):
        reg.compress("base", widen)
    assert reg.names == ["base"]


# -- 7, 8: parameters that replay; example_input before set_data -----------------------------


def test_prune_by_module_type_replays_after_reopening(tmp_path):
    x, y = torch.rand(30, 4), torch.randint(0, 3, (30,))
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    reg = cnc.ModelRegistry(tmp_path)
    reg.set_data(x, y)
    reg.add("base", model)
    name = reg.compress("base", "prune", amount=0.5, modules=[nn.Linear])
    assert reg.record(name).params["modules"] == ["torch.nn.modules.linear.Linear"]
    again = cnc.ModelRegistry(tmp_path)
    again.add("base", model)
    rebuilt = again.model(name)  # replays the recorded operation; checks the fingerprint
    assert float((rebuilt[0].weight == 0).float().mean()) > 0.3
    assert bool((rebuilt[1].weight != 0).all())  # the LayerNorm was not pruned


def test_prune_structured_before_set_data_takes_example_input():
    reg = cnc.ModelRegistry()
    reg.add("base", mlp())
    with pytest.raises(ValueError, match="pass example_input="):
        reg.compress("base", "prune_structured", amount=0.5)
    name = reg.compress("base", "prune_structured", amount=0.5, example_input=torch.rand(2, 4))
    assert name == "base-prune_structured-0.5"
    assert reg.record(name).params == {"amount": 0.5}
    assert reg.model(name)[0].out_features < 32


# -- 9: a reopened store without set_data says what to call ------------------------------------


def test_reopened_store_without_data_says_to_call_set_data(tmp_path):
    x, y = torch.rand(30, 4), torch.randint(0, 3, (30,))
    model = mlp()
    reg = cnc.ModelRegistry(tmp_path)
    reg.set_data(x, y)
    reg.add("base", model)
    reg.compress("base", "prune", amount=0.5, name="p")
    reg.evaluate(progress=False)
    again = cnc.ModelRegistry(tmp_path)
    again.add("base", model)
    cmp = again.compare("base", "p")
    assert cmp.agreement == reg.compare("base", "p").agreement  # cached results still work
    for call in (lambda: cmp.layers, cmp.cka_matrix, cmp.adversarial_overlap):
        with pytest.raises(ValueError, match=r"call reg\.set_data\(inputs, labels\)"):
            call()


# -- 10: default names and numpy numbers --------------------------------------------------------


def test_default_names_tell_list_and_type_parameters_apart():
    reg = cnc.ModelRegistry()
    # A head after the Conv1d: prune leaves the output head out by default.
    layers = [nn.Linear(4, 8), nn.ReLU(), nn.Conv1d(1, 1, 1), nn.Linear(8, 2)]
    reg.add("base", nn.Sequential(*layers))
    a = reg.compress("base", "prune", amount=0.5, modules=[nn.Linear])
    b = reg.compress("base", "prune", amount=0.5, modules=["Conv1d"])
    c = reg.compress("base", "prune", amount=0.5, modules=[nn.Linear, nn.Conv1d])
    assert (a, b, c) == (
        "base-prune-0.5-Linear",
        "base-prune-0.5-Conv1d",
        "base-prune-0.5-Linear+Conv1d",
    )
    # the same call again (a re-run cell) is the same model, not a new one
    assert reg.compress("base", "prune", amount=0.5, modules=[nn.Linear]) == a
    # a variant that no value tells apart gets a numbered name instead of an error
    d = reg.compress("base", "prune", amount=0.5, modules=[nn.Linear], include_norms=True)
    assert d == "base-prune-0.5-Linear-2"
    assert len(reg) == 5


def test_numpy_numbers_are_plain_numbers():
    reg = cnc.ModelRegistry()
    reg.set_data(torch.rand(20, 64), np.arange(20) % 3, batch_size=np.int64(8))
    assert reg.data.batch_size == 8
    reg.add("base", mlp(64))
    names = [
        reg.compress("base", "prune", amount=a) for a in np.linspace(0.1, 0.3, 3, dtype=np.float32)
    ]
    assert names == ["base-prune-0.1", "base-prune-0.2", "base-prune-0.3"]
    assert reg.record(names[0]).params["amount"] == 0.1
    assert reg.compress("base", "low_rank", rank=np.int64(4)) == "base-low_rank-4"
    reg.evaluate(progress=False)


# -- 11: modes, missing groups, a half model's weights in a float skeleton ----------------------


def test_adversarial_overlap_restores_the_models_modes(digits, digits_cnn):
    import copy

    model = copy.deepcopy(digits_cnn)
    reg = registry_with(digits.test_inputs[:40], digits.test_labels[:40], model)
    reg.compress("base", "prune", amount=0.3, name="p")
    reg.compress("base", "quantize_dynamic", name="int8")
    reg.evaluate(progress=False)
    model.train()
    reg.model("p").eval()
    reg.model("int8").train()
    reg.compare("base", "p").adversarial_overlap(max_instances=16, steps=2)
    reg.compare("p", "int8").adversarial_overlap(max_instances=16, steps=2)  # by transfer
    assert model.training and all(m.training for m in model.modules())
    assert not reg.model("p").training
    assert reg.model("int8").training


def test_group_accuracy_counts_instances_without_a_group(digits, digits_cnn):
    reg = registry_with(digits.test_inputs[:40], digits.test_labels[:40], digits_cnn)
    reg.compress("base", "prune", amount=0.7, name="p")
    reg.evaluate(progress=False)
    cmp = reg.compare("base", "p")
    groups = ["x"] * 10 + [None] * 10 + ["y"] * 10 + [np.nan] * 10
    table = cmp.group_accuracy(groups)
    assert int(table["count"].sum()) == 40
    missing = table[table.index.isna()]
    assert len(missing) == 1 and int(missing["count"].iloc[0]) == 20
    correct = cmp.pred_b[np.r_[10:20, 30:40]] == cmp.labels[np.r_[10:20, 30:40]]
    assert missing["accuracy_b"].iloc[0] == pytest.approx(correct.mean())


def test_half_weights_into_a_float_skeleton_say_how_to_load_them(tmp_path):
    reg = cnc.ModelRegistry(tmp_path, keep_weights=True)
    reg.add("base", mlp())
    reg.compress("base", "half", name="h")
    again = cnc.ModelRegistry(tmp_path)
    with pytest.raises(ValueError, match="float32 tensors where the saved ones are float16") as e:
        again.load("h", mlp())
    assert "replace=True" not in str(e.value)
    loaded = again.load("h", half(mlp()))
    assert loaded[0].weight.dtype == torch.float16


# -- 13: ten instances or fewer --------------------------------------------------------------


def test_compare_many_and_knn_clip_k_on_few_instances():
    x, y = torch.rand(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    reg = registry_with(x, y, mlp())
    reg.compress("base", "prune", amount=0.5, name="p")
    reg.evaluate(progress=False)
    cmp = reg.compare("base", "p")
    assert cmp.knn_agreement(10) == cmp.knn_agreement(7)
    assert cmp.knn_k(10) == 7
    table = reg.compare_many("base", adversarial=False)
    assert table.loc["p", "knn_k"] == 7
    assert table.loc["p", "knn_agreement@10"] == cmp.knn_agreement(7)


# -- 14: the reference is attacked once for all the variants -----------------------------------


def test_compare_many_attacks_each_model_once(digits, digits_cnn):
    import copy

    model = copy.deepcopy(digits_cnn)
    reg = registry_with(digits.test_inputs[:64], digits.test_labels[:64], model)
    for amount in (0.2, 0.4, 0.6):
        reg.compress("base", "prune", amount=amount)
    reg.evaluate(progress=False)
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        reg.compare("base", "base-prune-0.2").adversarial_overlap()
        one = len(calls)
        reg.compare_many("base")  # three variants: the reference is not attacked again
        assert len(calls) == one
        calls.clear()
        reg.compare_many("base")
        assert calls == []
    finally:
        handle.remove()
    assert one > 0
