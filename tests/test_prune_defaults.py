"""The default prune: weights only, the output head and embeddings left out, per-layer
sparsity recorded, a warning when a layer loses (nearly) all its weights (#24 item 4)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import cnc_widgets as cnc
from cnc_widgets.compress import apply_operation, operations

from .tweet_encoder import trained


def _zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


@pytest.fixture(scope="module")
def tweets():
    return trained()


def test_default_prune_keeps_a_working_classifier(tweets):
    model, x, y, _ = tweets
    reg = cnc.ModelRegistry(store=None)
    reg.set_data(x, y)
    reg.add("base", copy.deepcopy(model))
    with warnings.catch_warnings():
        # No layer is emptied by the default.
        warnings.filterwarnings("error", message=r".*lost \(nearly\) all")
        name = reg.compress("base", "prune", amount=0.5)
    child, parent = reg.model(name), reg.model("base")
    pc, pp = dict(child.named_parameters()), dict(parent.named_parameters())
    # Untouched: biases, the head (the last Linear), the embeddings, the norms.
    for n in pc:
        if "bias" in n or n.startswith(("head.", "embed.")) or ".norm" in n:
            torch.testing.assert_close(pc[n], pp[n], rtol=0, atol=0)
    # Pruned: the encoder's weights, half of them together (global threshold).
    pruned = [n for n in pc if n.startswith("encoder.") and "bias" not in n and ".norm" not in n]
    total = sum(pc[n].numel() for n in pruned)
    zeros = sum(_zeros(pc[n]) for n in pruned)
    assert abs(zeros - round(0.5 * total)) <= sum(_zeros(pp[n]) for n in pruned)
    assert all(0 < _zeros(pc[n]) < pc[n].numel() for n in pruned)
    # Not a constant predictor (the old default zeroed every encoder Linear and the head).
    with torch.inference_mode():
        logits = child(x)
    assert logits.std(0).min() > 1e-3
    assert len(torch.unique(logits.argmax(1))) > 1
    # Per-layer sparsity in the child's record, as computed from the weights.
    recorded = reg.record(name).info["layer_sparsity"]
    assert sorted(recorded) == sorted(pruned)
    for n in pruned:
        assert recorded[n] == pytest.approx(_zeros(pc[n]) / pc[n].numel())
    assert reg.record(name).info["left_out"] == {"embed": "embedding", "head": "output head"}
    assert reg.record(name).params["biases"] is False


def test_everything_on_request_warns_about_emptied_layers(tweets):
    model = tweets[0]
    with pytest.warns(UserWarning, match=r"lost \(nearly\) all") as caught:
        child = apply_operation(model, "prune", amount=0.5, include=".*", biases=True)
    message = str(caught[0].message)
    emptied = [
        n for n, p in child.named_parameters() if p.numel() > 1 and _zeros(p) >= 0.99 * p.numel()
    ]
    assert emptied and all(n in message for n in emptied)
    assert "encoder.layers.0.linear1.weight" in emptied  # the old default's failure
    assert _zeros(child.head.weight) == child.head.weight.numel()


def test_include_and_exclude_choose_modules(tweets):
    model = tweets[0]
    child = apply_operation(model, "prune", amount=0.3, exclude=["encoder.layers.1"])
    assert _zeros(child.encoder.layers[1].linear1.weight) == 0
    assert _zeros(child.encoder.layers[0].linear1.weight) > 0
    with pytest.warns(UserWarning, match="head.weight"):  # the head's weights are small
        child = apply_operation(model, "prune", amount=0.3, include=[r"head", r"embed"])
    changed = {
        n
        for (n, a), b in zip(child.named_parameters(), model.parameters(), strict=True)
        if not torch.equal(a, b)
    }
    assert changed == {"head.weight", "embed.weight"}
    assert _zeros(child.head.weight) + _zeros(child.embed.weight) == round(
        0.3 * (child.head.weight.numel() + child.embed.weight.numel())
    )
    with pytest.raises(ValueError, match="include"):
        apply_operation(model, "prune", amount=0.3, include="(")


def test_operations_list_the_new_parameters():
    params = operations()["prune"]["params"]
    assert params["biases"] is False and params["include"] is None and params["exclude"] is None
    assert "report" in operations()["prune"]["needs"]
