"""Numbers that must never be silently wrong: what a cached result is keyed by and bound to.

Each test builds a real model on the digits and checks the registry's numbers against a
direct computation with the model itself.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets import metrics
from cnc_widgets.evaluate.runner import EvaluationError


def direct_predictions(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    training = [(m, m.training) for m in model.modules()]
    model.eval()
    with torch.inference_mode():
        out = model(x).argmax(1).numpy()
    for m, mode in training:
        m.training = mode
    return out


def registry(digits, **kw) -> cnc.ModelRegistry:
    reg = cnc.ModelRegistry(**kw)
    reg.set_data(digits.test_inputs, digits.test_labels, classes=digits.classes)
    return reg


def check_against_direct(reg, digits, names):
    y = digits.test_labels.numpy()
    base = direct_predictions(reg.model("base"), digits.test_inputs)
    for name in names:
        pred = direct_predictions(reg.model(name), digits.test_inputs)
        assert reg.metrics().loc[name, "accuracy"] == pytest.approx(np.mean(pred == y)), name
        assert reg.compare("base", name).agreement == pytest.approx(np.mean(pred == base)), name
        assert np.mean(pred == base) < 0.99, f"{name} should behave differently from base"


class Shifted(nn.Module):
    """Subtracts a non-persistent buffer from the input, then runs the CNN."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("shift", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x - self.shift)


class Gain(nn.Module):
    """Scales the CNN's logits by a private attribute that no fingerprint looks at."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self._gain = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self._gain


def test_hooks_attributes_and_buffers_change_the_cache_key(digits, digits_cnn):
    reg = registry(digits)
    reg.add("base", Shifted(copy.deepcopy(digits_cnn)))

    hooked = copy.deepcopy(reg.model("base"))
    hooked.inner.features[2].register_forward_hook(lambda m, i, o: o.clamp(max=0.05))
    reg.add("hooked", hooked, parent="base", operation="clip")

    slope = copy.deepcopy(reg.model("base"))
    slope.inner.features[1].eps = 50.0  # a plain module attribute
    reg.add("eps", slope, parent="base", operation="eps")

    shifted = copy.deepcopy(reg.model("base"))
    shifted.shift.fill_(0.6)  # a non-persistent buffer: not in the state_dict
    reg.add("shifted", shifted, parent="base", operation="shift")

    def clip(model: nn.Module, limit: float) -> nn.Module:
        model.inner.features[5].register_forward_hook(lambda m, i, o: o.clamp(max=limit))
        return model

    reg.compress("base", clip, limit=0.02, name="clip-op")
    reg.evaluate(progress=False)
    check_against_direct(reg, digits, ["hooked", "eps", "shifted", "clip-op"])
    # The same hook again (a re-run cell) is the same model: no error, no new entry.
    again = copy.deepcopy(reg.model("base"))
    again.inner.features[2].register_forward_hook(lambda m, i, o: o.clamp(max=0.05))
    assert reg.add("hooked", again, parent="base", operation="clip") == "hooked"


def test_the_callable_that_made_a_model_is_part_of_its_key(digits, digits_cnn):
    reg = registry(digits)
    reg.add("base", Gain(copy.deepcopy(digits_cnn)))

    def set_gain(model: nn.Module, gain: float) -> nn.Module:
        model._gain = gain
        return model

    reg.compress("base", set_gain, gain=-1.0, name="flipped")
    reg.evaluate(progress=False)
    check_against_direct(reg, digits, ["flipped"])


def test_train_mode_model_is_left_as_found(digits, digits_cnn):
    model = copy.deepcopy(digits_cnn).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    reg = registry(digits)
    reg.add("base", model)
    reg.evaluate(progress=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(m.training for m in model.modules())
    assert reg.add("base", model) == "base"  # a re-run cell: same weights
    y = digits.test_labels.numpy()
    expected = np.mean(direct_predictions(model, digits.test_inputs) == y)
    assert reg.metrics().loc["base", "accuracy"] == pytest.approx(expected)

    # prune_structured from a train-mode parent gives the child of the eval-mode parent.
    reg.compress("base", "prune_structured", amount=0.3, name="s30")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    other = registry(digits)
    other.add("base", copy.deepcopy(digits_cnn).eval())
    other.compress("base", "prune_structured", amount=0.3, name="s30")
    want = other.model("s30").state_dict()
    for key, value in reg.model("s30").state_dict().items():
        assert torch.equal(value, want[key]), key


def test_comparison_is_bound_to_its_data(tmp_path, digits, digits_cnn):
    reg = registry(digits, store=tmp_path / "s")
    reg.add("base", copy.deepcopy(digits_cnn))
    reg.compress("base", "prune", amount=0.7, name="p70")
    reg.evaluate(progress=False)
    cmp = reg.compare("base", "p70")
    first = cmp.knn_agreement(10)
    half = len(digits.test_labels) // 2
    reg.set_data(digits.test_inputs[:half], digits.test_labels[:half], classes=digits.classes)
    reg.evaluate(progress=False)
    with pytest.raises(ValueError, match="set_data was called since"):
        cmp.knn_agreement(10)
    with pytest.raises(ValueError, match="compare"):
        cmp.ood_agreement()
    assert cmp.agreement == pytest.approx(
        metrics.agreement(
            direct_predictions(reg.model("base"), digits.test_inputs),
            direct_predictions(reg.model("p70"), digits.test_inputs),
        )
    )
    expected = metrics.knn_agreement(
        reg.result("base")["embeddings"], reg.result("p70")["embeddings"], 10
    )
    assert reg.compare("base", "p70").knn_agreement(10) == expected
    assert expected != first
    reopened = cnc.ModelRegistry(store=tmp_path / "s")
    assert reopened.compare("base", "p70").knn_agreement(10) == expected


def test_cached_tables_come_back_from_the_store_exactly(tmp_path, digits, digits_cnn):
    reg = registry(digits, store=tmp_path / "s")
    reg.add("base", copy.deepcopy(digits_cnn))
    reg.compress("base", "prune", amount=0.5, name="p50")
    reg.evaluate(progress=False)
    cmp = reg.compare("base", "p50")
    layers, sweep = cmp.layers, cmp.knn_sweep((5, 10, 50))
    # Values with more than 10 significant digits, as computed.
    assert any(len(repr(float(v))) > 13 for v in sweep.to_numpy())

    reopened = cnc.ModelRegistry(store=tmp_path / "s")  # no models: only the store answers
    again = reopened.compare("base", "p50")
    pd.testing.assert_frame_equal(again.layers, layers, check_exact=True)
    pd.testing.assert_series_equal(again.knn_sweep((5, 10, 50)), sweep, check_exact=True)


class Wide(nn.Module):
    """The digits CNN with six extra outputs that no label uses (a bigger label space)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.extra = nn.Linear(64, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        return torch.cat([logits, self.extra(x.flatten(1)) - 100.0], dim=1)


def test_class_count_comes_from_the_model_output(digits, digits_cnn):
    torch.manual_seed(0)
    wide = Wide(copy.deepcopy(digits_cnn)).eval()
    reg = cnc.ModelRegistry()
    reg.set_data(digits.test_inputs, digits.test_labels)  # labels 0..9, no class names
    reg.add("base", wide)
    reg.compress("base", "prune", amount=0.5, name="p50")
    reg.evaluate(progress=False)
    y = digits.test_labels.numpy()
    pred = direct_predictions(wide, digits.test_inputs)
    assert reg.metrics().loc["base", "accuracy"] == pytest.approx(np.mean(pred == y))
    cmp = reg.compare("base", "p50")
    assert cmp.change_matrix.shape == (16, 16)
    assert cmp.change_matrix.to_numpy().sum() == len(y)

    named = cnc.ModelRegistry()
    named.set_data(digits.test_inputs, digits.test_labels, classes=digits.classes)
    named.add("wide", wide)
    with pytest.raises(EvaluationError, match=r"'wide' outputs 16 logits.*named 10 classes"):
        named.evaluate(progress=False)

    narrow = cnc.ModelRegistry()
    narrow.set_data(digits.test_inputs, digits.test_labels)
    head = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    narrow.add("five", head)
    with pytest.raises(EvaluationError, match=r"'five' outputs 5 logits.*labels go up to 9"):
        narrow.evaluate(progress=False)
