"""A model called with token ids alone (no attention_mask): its token outputs are pooled over
real tokens (ids != the embedding's padding_idx) for CKA, and padded tokens are left out of
the activation change, exactly as if the mask had been passed."""

from __future__ import annotations

import copy

import pytest
import torch

from cnc_widgets.compress.pruning import prune
from cnc_widgets.evaluate.modules import token_mask
from cnc_widgets.metrics.layers import layer_table

from .test_metrics_cka import textbook_cka
from .tweet_encoder import trained


def _outputs(model, ids, names):
    """Each named module's output (B, L, d) on ``ids``, by hooks, with the library's slow path."""
    got, handles = {}, []
    for name in names:
        module = model.get_submodule(name)
        hook = lambda _m, _a, out, n=name: got.update({n: out})  # noqa: E731
        handles.append(module.register_forward_hook(hook))
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode():
            model(ids)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
        for h in handles:
            h.remove()
    return {k: (v[0] if isinstance(v, tuple) else v).double() for k, v in got.items()}


@pytest.fixture(scope="module")
def pair():
    model, ids, _, _ = trained()
    ids = ids[:120]
    assert (ids == 0).any()  # some tweets are padded
    return model, prune(copy.deepcopy(model), amount=0.5), ids


def test_token_mask_reads_the_embeddings_padding_idx(pair):
    model, _, ids = pair
    assert torch.equal(token_mask(model, ids), ids != 0)
    assert token_mask(model, {"input_ids": ids, "attention_mask": ids > 3}) is not None
    assert token_mask(model, ids.float()) is None
    model_no_pad = copy.deepcopy(model)
    model_no_pad.embed.padding_idx = None
    assert token_mask(model_no_pad, ids).all()


@pytest.mark.parametrize("path", ["compiled", "torch"])
def test_ids_alone_give_the_masked_pooled_cka_and_change(pair, path, monkeypatch):
    if path == "torch":  # the sums without numba (and on accelerators)
        from cnc_widgets.evaluate import stats

        monkeypatch.setattr(stats, "_KERNELS", None)
    model, pruned, ids = pair
    names = ["embed", "encoder.layers.0.linear1", "encoder.layers.1.norm2"]
    table = layer_table(model, pruned, ids, batch_size=32)
    a, b = _outputs(model, ids, names), _outputs(pruned, ids, names)
    real = (ids != 0).double().unsqueeze(-1)
    for name in names:
        pooled_a = (a[name] * real).sum(1) / real.sum(1)
        pooled_b = (b[name] * real).sum(1) / real.sum(1)
        assert table.loc[name, "cka"] == pytest.approx(
            textbook_cka(pooled_a.numpy(), pooled_b.numpy()), abs=1e-6
        )
        diff = ((b[name] - a[name]) * real).flatten(1)
        ref = (a[name] * real).flatten(1)
        assert table.loc[name, "activation_rel_change"] == pytest.approx(
            float(diff.norm() / ref.norm()), rel=1e-5
        )
        count = real.sum() * a[name].shape[-1]
        assert table.loc[name, "activation_mean_abs_change"] == pytest.approx(
            float(diff.abs().sum() / count), rel=1e-5
        )
