"""Issue 26's acceptance on notebook 02's case: MiniLM on tweets pruned 30% per tensor with its
LayerNorms; the assistant finds the LayerNorm weights without being told."""

from __future__ import annotations

import pytest

import cnc_widgets as cnc
from cnc_widgets import examples

pytestmark = pytest.mark.slow


def test_minilm_layernorms_found_and_restored():
    encoder, tokenizer = examples.load_minilm()
    data = examples.tweets(n_train=300, n_test=160, max_length=32, tokenizer=tokenizer)
    reg = cnc.ModelRegistry()
    reg.set_data(data.test_inputs, data.test_labels, classes=data.classes, batch_size=40)
    reg.add("base", examples.train_text_classifier(data, encoder))
    reg.compress("base", "prune", amount=0.3, scope="tensor", include_norms=True, name="pruned")
    reg.evaluate(progress=False)
    table = reg.compare("base", "pruned").sensitivity()
    assert table.loc[0, "group"] == "norms"
    assert all("LayerNorm" in m for m in table.loc[0, "modules"])
    assert table.attrs["restore_runs"] <= 8 and len(table.attrs["rows"]) == 160
    made = reg.suggest_restores("base", "pruned", target=0.95, max_runs=2)
    hand = reg.compress("pruned", "restore", pattern="LayerNorm", name="by-hand")
    reg.evaluate(progress=False)
    acc = reg.metrics()["accuracy"]
    gap_closed = acc[made[0]] - acc["pruned"]
    assert acc[hand] - acc["pruned"] > 0
    assert gap_closed >= 0.9 * (acc[hand] - acc["pruned"])
    print(table[["group", "params", "proxy", "quality_restored", "recovered"]].to_string())
    print(dict(acc), made)
