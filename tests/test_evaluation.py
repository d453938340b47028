"""evaluate_model, iter_activations and paired_activation_stats on real small models."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cnc_widgets import examples
from cnc_widgets.evaluate.inference import (
    EvaluationError,
    evaluate_model,
    extract_logits,
    merge_results,
)
from cnc_widgets.evaluate.modules import leaf_modules
from cnc_widgets.evaluate.streaming import iter_activations

from .reference_activations import paired_activation_stats

N_DIGITS = 100


@pytest.fixture(scope="module")
def cnn():
    data = examples.digits()
    model = examples.train_digits_cnn(data, epochs=1)
    return model, data.test_inputs[:N_DIGITS]


@pytest.fixture(scope="module")
def text():
    encoder, tokenizer = examples.load_minilm()
    tweets = examples.tweets(4, 64, max_length=32, tokenizer=tokenizer)
    torch.manual_seed(0)
    return examples.TextClassifier(encoder, 3).eval(), tweets.test_inputs


def capture(model: nn.Module, names: list[str], call) -> dict[str, torch.Tensor]:
    """Outputs of modules in one direct forward pass."""
    out: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(n).register_forward_hook(lambda _m, _a, o, n=n: out.__setitem__(n, o))
        for n in names
    ]
    with torch.inference_mode():
        call()
    for h in handles:
        h.remove()
    return out


def test_cnn_logits_and_default_embedding(cnn):
    model, x = cnn
    r = evaluate_model(model, x, batch_size=32, progress=False, activations=False)
    with torch.inference_mode():
        logits = model(x)
        hidden = model.classifier[:3](model.features(x))
    assert r.embedding_module == "classifier.3" and r.embedding_kind == "input"
    assert r.logits.dtype == np.float32 and r.logits.shape == (N_DIGITS, 10)
    np.testing.assert_allclose(r.logits, logits.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r.embeddings, hidden.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(r.predictions, logits.argmax(1).numpy())
    assert r.modules == []


def test_named_embedding_is_module_output(cnn):
    model, x = cnn
    r = evaluate_model(model, x, embedding="features", progress=False, activations=False)
    with torch.inference_mode():
        expected = model.features(x).flatten(1)
    assert r.embedding_kind == "output"
    np.testing.assert_allclose(r.embeddings, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_unknown_or_missing_embedding_module_is_explained(cnn):
    model, x = cnn
    with pytest.raises(ValueError, match="candidates"):
        evaluate_model(model, x, embedding="nope", progress=False)
    convnet = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    with pytest.raises(ValueError, match=r"embedding=.*\['0', '1'\]"):
        evaluate_model(convnet, x, progress=False)


@pytest.mark.parametrize("batch_size", [7, 64])
def test_activation_stats_match_full_activations(cnn, batch_size):
    model, x = cnn
    r = evaluate_model(model, x, batch_size=batch_size, progress=False, hist_sample=None)
    assert r.modules == leaf_modules(model)  # execution order = registration order here
    assert "classifier.0" not in r.modules  # Flatten only reshapes
    acts = capture(model, r.modules, lambda: model(x))
    for i, m in enumerate(r.modules):
        a = acts[m].double()
        assert r.act_count[i] == a.numel()
        np.testing.assert_allclose(r.act_mean[i], a.mean().item(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r.act_std[i], a.std(correction=0).item(), rtol=1e-5)
        np.testing.assert_allclose(r.act_zero_frac[i], (a == 0).double().mean().item(), atol=1e-9)
        np.testing.assert_allclose(r.act_min[i], a.min().item(), rtol=1e-6)
        np.testing.assert_allclose(r.act_max[i], a.max().item(), rtol=1e-6)
        edges = r.act_hist_edges[i]
        values = a.numpy().ravel()
        inner, _ = np.histogram(values, edges)
        expected = np.concatenate(
            [[np.sum(values < edges[0])], inner, [np.sum(values >= edges[-1])]]
        )
        assert r.act_hist[i].sum() == a.numel()
        # Float rounding may move an element sitting on a bin edge by one bin.
        assert np.abs(r.act_hist[i] - expected).sum() <= 2e-4 * a.numel() + 2
    relu = r.modules.index("features.2")
    assert 0.05 < r.act_zero_frac[relu] < 0.95


def test_histogram_sample_covers_every_instance(cnn):
    model, x = cnn
    r = evaluate_model(model, x, batch_size=16, progress=False, hist_sample=40)
    i = r.modules.index("features.3")  # 2048 values per instance
    assert r.act_hist[i].sum() == 40 * N_DIGITS
    assert r.act_count[i] == 2048 * N_DIGITS


def test_merged_shards_equal_one_run(cnn):
    model, x = cnn
    whole = evaluate_model(model, x, batch_size=16, progress=False)
    first = evaluate_model(
        model, x[:37], batch_size=16, progress=False, hist_ranges=whole.hist_ranges()
    )
    rest = evaluate_model(
        model, x[37:], batch_size=16, progress=False, hist_ranges=whole.hist_ranges()
    )
    merged = merge_results([first, rest])
    np.testing.assert_allclose(merged.logits, whole.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(merged.act_mean, whole.act_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(merged.act_std, whole.act_std, rtol=1e-5)
    np.testing.assert_allclose(merged.act_zero_frac, whole.act_zero_frac, atol=1e-9)
    np.testing.assert_array_equal(merged.act_count, whole.act_count)
    assert np.abs(merged.act_hist - whole.act_hist).sum() <= 4


def test_model_state_is_left_as_found(cnn):
    model, x = cnn
    model.train()
    evaluate_model(model, x[:10], progress=False)
    assert model.training and model.features[1].training
    model.eval()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert not torch.is_inference_mode_enabled()


def test_model_that_raises_names_model_batch_and_cause(cnn):
    _, x = cnn

    class Fails(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0
            self.head = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == 3:
                raise KeyError("boom")
            return self.head(x.flatten(1))

    with pytest.raises(EvaluationError, match=r"'flaky'.*batch 2 \(rows 20:30") as info:
        evaluate_model(Fails(), x, batch_size=10, progress=False, name="flaky")
    assert isinstance(info.value.__cause__, KeyError)


def test_wrong_input_shape_names_batch_shape_and_module(cnn):
    model, _ = cnn
    wrong = torch.zeros(20, 1, 12, 12)
    expected = r"'cnn'.*batch 0 .*Tensor\(8, 1, 12, 12\).*'classifier\.1' \(Linear\)"
    with pytest.raises(EvaluationError, match=expected):
        evaluate_model(model, wrong, batch_size=8, progress=False, name="cnn")


class NanOnSecondCall(nn.Module):
    """Passes its input on, except on its second call, which returns x * nan."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * float("nan") if self.calls >= 2 else x


def with_nan_module(model: nn.Module) -> nn.Module:
    broken = copy.deepcopy(model)
    broken.features[2] = nn.Sequential(nn.ReLU(), NanOnSecondCall())
    return broken


def test_nan_names_first_module_and_batch(cnn):
    model, x = cnn
    with pytest.raises(
        EvaluationError, match=r"'cnn8'.*nan.*'features\.2\.1' \(NanOnSecondCall\) on batch 1"
    ):
        evaluate_model(with_nan_module(model), x, batch_size=30, progress=False, name="cnn8")


def test_nan_without_activation_stats_is_located_by_rerun(cnn):
    model, x = cnn
    with pytest.raises(
        EvaluationError, match=r"non-finite logits on batch 1 \(rows 30:60.*'features\.2\.1'"
    ):
        evaluate_model(with_nan_module(model), x, batch_size=30, progress=False, activations=False)


def test_inf_in_a_module_output_is_caught_even_if_logits_recover(cnn):
    model, x = cnn
    broken = copy.deepcopy(model)
    # -inf into a ReLU gives 0: the logits stay finite, the activation does not.
    broken.features[1] = nn.Sequential(broken.features[1], nn.Hardtanh(-np.inf, 0.0))
    with torch.no_grad():
        broken.features[1][0].bias.fill_(-np.inf)
    with pytest.raises(EvaluationError, match=r"inf.*'features\.1\.0' \(BatchNorm2d\) on batch 0"):
        evaluate_model(broken, x, progress=False)


def test_quantized_and_bfloat16_models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.randn(50, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(mlp, {nn.Linear}, dtype=torch.qint8)
    r = evaluate_model(q, x, batch_size=16, progress=False)
    assert r.embedding_module == "2" and r.modules == ["0", "1", "2"]
    with torch.inference_mode():
        # Dynamic quantization scales activations per batch: compare batch by batch.
        batches = x.split(16)
        logits = torch.cat([q(b) for b in batches])
        hidden = torch.cat([q[1](q[0](b)) for b in batches])
    np.testing.assert_allclose(r.logits, logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.embeddings, hidden.numpy(), rtol=1e-5, atol=1e-6)
    b = copy.deepcopy(mlp).to(torch.bfloat16)
    rb = evaluate_model(b, x, batch_size=16, progress=False)
    assert rb.logits.dtype == np.float32
    with torch.inference_mode():
        np.testing.assert_allclose(rb.logits, b(x.bfloat16()).float().numpy(), rtol=1e-2)


def test_extract_logits_from_common_outputs():
    z = torch.randn(4, 3)

    class Out:
        logits = z

    assert extract_logits(Out()) is z
    assert extract_logits((z, torch.zeros(1))) is z
    assert extract_logits({"logits": z}) is z
    # one logit per instance is a binary classifier: two classes [0, z] (issue 17, item 2)
    assert extract_logits(torch.arange(4.0)).shape == (4, 2)
    with pytest.raises(ValueError, match="batch, classes"):
        extract_logits(torch.zeros(4, 3, 2))


def test_text_classifier_logits_embeddings_and_stats(text):
    model, inputs = text
    chosen = ["encoder.embeddings.LayerNorm", "encoder.encoder.layer.5.intermediate.dense", "head"]
    r = evaluate_model(model, inputs, batch_size=24, activations=chosen, progress=False)
    acts = capture(model, chosen, lambda: model(**inputs))
    pooled = capture(model, ["encoder"], lambda: model(**inputs))["encoder"].last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    pooled = (pooled * mask).sum(1) / mask.sum(1)
    with torch.inference_mode():
        logits = model(**inputs)
    assert r.embedding_module == "head"
    np.testing.assert_allclose(r.logits, logits.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.embeddings, pooled.numpy(), rtol=1e-4, atol=1e-5)
    assert r.modules == chosen
    for i, m in enumerate(chosen):
        a = acts[m].double()
        assert r.act_count[i] == a.numel()
        np.testing.assert_allclose(r.act_mean[i], a.mean().item(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(r.act_std[i], a.std(correction=0).item(), rtol=1e-4)


def test_text_classifier_default_stats_cover_every_layer(text):
    model, inputs = text
    r = evaluate_model(model, {k: v[:8] for k, v in inputs.items()}, batch_size=4, progress=False)
    assert len(r.modules) == len(set(r.modules)) > 60
    assert not any("dropout" in m for m in r.modules)
    assert r.modules.index("encoder.encoder.layer.0.attention.self.query") < r.modules.index(
        "encoder.encoder.layer.5.output.dense"
    )
    frame = r.activation_frame()
    assert list(frame.columns) == ["count", "mean", "std", "zero_frac", "min", "max"]


def test_iter_activations_masked_mean_and_flatten(text):
    model, inputs = text
    name = "encoder.encoder.layer.2.output.LayerNorm"
    direct = capture(model, [name], lambda: model(**inputs))[name]
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    pooled = (direct * mask).sum(1) / mask.sum(1)
    got = torch.cat([b[name] for b in iter_activations(model, inputs, [name], batch_size=20)])
    torch.testing.assert_close(got, pooled, rtol=1e-4, atol=1e-5)
    flat = torch.cat(
        [b[name] for b in iter_activations(model, inputs, [name], batch_size=20, flatten="flatten")]
    )
    torch.testing.assert_close(flat, (direct * mask).flatten(1), rtol=1e-4, atol=1e-5)


def test_paired_stats_equal_direct_computation(cnn):
    model, x = cnn
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.features[0].weight.mul_(1.1)
    names = ["features.0", "features.5", "classifier.3"]
    stats = paired_activation_stats(model, other, x, names, batch_size=13)
    a = capture(model, names, lambda: model(x))
    b = capture(other, names, lambda: other(x))
    for i, m in enumerate(names):
        expected = (torch.linalg.norm(b[m] - a[m]) / torch.linalg.norm(a[m])).item()
        np.testing.assert_allclose(stats.rel_change[i], expected, rtol=1e-4)
    # Scaling a conv's weights by 1.1 moves its output by 0.1 * (output - bias).
    centred = a["features.0"] - model.features[0].bias.detach().view(1, -1, 1, 1)
    expected = 0.1 * torch.linalg.norm(centred) / torch.linalg.norm(a["features.0"])
    assert stats.rel_change[0] == pytest.approx(expected.item(), rel=1e-4)
    same = paired_activation_stats(model, copy.deepcopy(model), x, batch_size=50)
    assert same.names_a == leaf_modules(model)
    np.testing.assert_array_equal(same.rel_change, 0.0)


def test_paired_stats_match_quantized_linear_by_name(cnn):
    model, x = cnn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    stats = paired_activation_stats(model, q, x, batch_size=64)
    changes = stats.as_dict()
    assert "classifier.1" in changes and "classifier.1._packed_params" not in changes
    assert changes["features.0"] == 0.0  # convolutions are not quantized
    assert 0.0 < changes["classifier.3"] < 0.2


class ProjectThenConv(nn.Module):
    """Digits through an input projection, then a convolution as the classifier: the only
    nn.Linear reads the raw pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(64, 64)
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(1, 10, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.act(self.proj(x.flatten(1)))
        return self.conv(z.view(-1, 1, 8, 8)).flatten(1)


def test_default_embedding_is_a_learned_representation_not_the_input(digits):
    import cnc_widgets as cnc
    from cnc_widgets.metrics import knn_agreement

    torch.manual_seed(0)
    model = ProjectThenConv()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(digits.train_inputs), digits.train_labels).backward()
        opt.step()
    model.eval()
    reg = cnc.ModelRegistry()
    reg.set_data(digits.test_inputs, digits.test_labels, classes=digits.classes)
    reg.add("base", model)
    reg.compress("base", "prune", amount=0.9, name="p90")
    reg.evaluate(progress=False)
    assert reg.result("base")["embedding_module"] == "act"
    with torch.inference_mode():
        hidden = {
            n: reg.model(n).act(reg.model(n).proj(digits.test_inputs.flatten(1)))
            for n in ("base", "p90")
        }
    np.testing.assert_allclose(
        reg.result("p90")["embeddings"], hidden["p90"].numpy(), rtol=1e-5, atol=1e-6
    )
    cmp = reg.compare("base", "p90")
    assert cmp.agreement < 0.95
    expected = knn_agreement(hidden["base"].numpy(), hidden["p90"].numpy(), 10)
    assert cmp.knn_agreement(10) == pytest.approx(expected)
    assert expected < 0.9

    # A linear classifier on the pixels has no learned representation: the input is used
    # and the user is told so.
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    with pytest.warns(UserWarning, match="raw model input"):
        r = evaluate_model(linear, digits.test_inputs, progress=False)
    assert r.embedding_module == "1" and r.embedding_kind == "input"


class Residual(nn.Module):
    """A block that changes its modules' outputs in place after they are produced."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)  # overwrites bn's output
        self.head = nn.Linear(4 * 64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        out += x  # and again, as ResNet's `out += identity` does
        return self.head(self.relu(out).flatten(1))


@pytest.mark.parametrize("stats_thread", [False, True])
def test_stats_see_outputs_before_in_place_changes(cnn, stats_thread):
    _, x = cnn
    torch.manual_seed(0)
    model = Residual().eval()
    with torch.no_grad():
        model.bn.bias.fill_(-0.2)  # a mean off zero, so the in-place changes show
    r = evaluate_model(
        model, x, batch_size=16, progress=False, hist_sample=None, stats_thread=stats_thread
    )
    with torch.inference_mode():
        bn = model.bn(model.conv(x)).double()
    i = r.modules.index("bn")
    np.testing.assert_allclose(r.act_mean[i], bn.mean().item(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.act_min[i], bn.min().item(), rtol=1e-6)
    assert r.act_zero_frac[i] == 0.0  # after the ReLU half of them would be 0
    values, edges = bn.numpy().ravel(), r.act_hist_edges[i]
    inner, _ = np.histogram(values, edges)
    expected = np.concatenate([[np.sum(values < edges[0])], inner, [np.sum(values >= edges[-1])]])
    assert np.abs(r.act_hist[i] - expected).sum() <= 2e-4 * values.size + 2
    assert expected[1 : 1 + np.searchsorted(edges, 0.0) - 1].sum() > 0  # negatives counted


def test_stats_thread_gives_identical_values(cnn):
    model, x = cnn
    here = evaluate_model(model, x, batch_size=16, progress=False, stats_thread=False)
    threads = __import__("threading").active_count()
    there = evaluate_model(model, x, batch_size=16, progress=False, stats_thread=True)
    assert __import__("threading").active_count() == threads  # the worker has stopped
    for field in ["act_count", "act_mean", "act_std", "act_zero_frac", "act_min", "act_max"]:
        np.testing.assert_array_equal(getattr(there, field), getattr(here, field))
    np.testing.assert_array_equal(there.act_hist, here.act_hist)
    np.testing.assert_array_equal(there.act_hist_edges, here.act_hist_edges)


def test_stats_thread_reports_nan_with_module_and_batch(cnn):
    model, x = cnn
    with pytest.raises(
        EvaluationError, match=r"'cnn8'.*nan.*'features\.2\.1' \(NanOnSecondCall\) on batch 1"
    ):
        evaluate_model(
            with_nan_module(model), x, batch_size=30, progress=False, name="cnn8", stats_thread=True
        )


def test_stats_thread_stops_when_the_model_raises(cnn):
    import threading

    model, x = cnn
    threads = threading.active_count()
    with pytest.raises(EvaluationError, match="batch 0"):
        evaluate_model(model, x[:, :, :5], progress=False, stats_thread=True)
    assert threading.active_count() == threads


def test_histograms_binned_together_equal_one_at_a_time(monkeypatch):
    """Values on and beside bin edges land in the same bins whether one module's
    sample is binned alone or all of a batch's samples are binned together (the torch
    path, which serves accelerators; test_kernels compares the compiled one with it)."""
    from cnc_widgets.evaluate import stats
    from cnc_widgets.evaluate.stats import RunningStats

    monkeypatch.setattr(stats, "_KERNELS", None)

    ranges = {"a": (-1.0, 1.0), "b": (0.0, 3.0), "c": (-0.3, 0.7)}
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(3):
        items = []
        for name, (lo, hi) in ranges.items():
            edges = torch.linspace(lo, hi, 65)
            near = torch.cat([edges, edges.nextafter(edges + 1), edges.nextafter(edges - 1)])
            noise = torch.rand(3 * 63, generator=gen) * (hi - lo) + lo
            items.append((name, torch.cat([near, noise]).reshape(-1, 3)))
        batches.append(items)
    alone, together = RunningStats(hist_ranges=ranges), RunningStats(hist_ranges=ranges)
    for items in batches:
        for name, t in items:
            alone.add(name, t)
            together.collect(name, t)
        together.flush()
    np.testing.assert_array_equal(together.arrays()["act_hist"], alone.arrays()["act_hist"])
    assert alone.arrays()["act_hist"].sum() == sum(t.numel() for b in batches for _, t in b)
