"""MiniLM through transformers' AutoModelForSequenceClassification: the layer table on one
batch (position embeddings are shared by the batch) and after drop_layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnc_widgets as cnc
from cnc_widgets import examples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reg():
    import transformers

    path = examples.minilm_path()
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    data = examples.tweets(n_train=3, n_test=48, max_length=16, tokenizer=tokenizer)
    r = cnc.ModelRegistry()
    r.set_data(data.test_inputs, data.test_labels, classes=data.classes, batch_size=64)
    r.add("fp32", model.eval())
    r.compress("fp32", "drop_layers", layers=[1, 2], name="dropped")
    r.compress("dropped", "prune", amount=0.5, name="dropped-p50")
    r.evaluate(progress=False)
    return r


def test_one_batch_layer_table(reg):
    table = reg.compare("fp32", "dropped-p50").layers
    position = table.loc["bert.embeddings.position_embeddings"]
    assert position["note"] == "output not per instance"
    # prune's default leaves embeddings whole: the row is there, its weights unchanged
    assert np.isnan(position["cka"]) and position["weight_rel_change"] == 0
    word = table.loc["bert.embeddings.word_embeddings"]
    assert word["note"] == "" and 0.0 < word["cka"] <= 1.0
    assert table.loc["classifier", "note"] == ""


def test_dropped_blocks_pair_with_their_origin(reg):
    table = reg.compare("fp32", "dropped").layers
    table = table[table["row_type"] == "parameters"]  # GELU, Dropout rows: no weights
    kept = table.loc["bert.encoder.layer.3.attention.self.query"]
    assert kept["module_b"] == "bert.encoder.layer.1.attention.self.query"
    assert kept["weight_rel_change"] == 0.0
    both = table[table["status"] == "both"]
    assert (both["weight_rel_change"] == 0).all()
    removed = table[table["status"] == "only_a"]
    assert set(removed.index.str.extract(r"layer\.(\d+)\.")[0]) == {"1", "2"}
    assert (removed["note"] == "removed by drop_layers").all()
    assert not (table["status"] == "only_b").any()
    # Block 0 sees the same inputs: identical outputs.
    first = table.loc["bert.encoder.layer.0.output.dense"]
    assert first["activation_rel_change"] == pytest.approx(0.0, abs=1e-6)
    # The pruned grandchild: weight change against the origin block, computed directly.
    grand = reg.compare("fp32", "dropped-p50").layers
    wa = reg.model("fp32").bert.encoder.layer[4].intermediate.dense
    wb = reg.model("dropped-p50").bert.encoder.layer[2].intermediate.dense
    va = torch.cat([wa.bias, wa.weight.flatten()]).detach().double()
    vb = torch.cat([wb.bias, wb.weight.flatten()]).detach().double()
    row = grand.loc["bert.encoder.layer.4.intermediate.dense"]
    assert row["module_b"] == "bert.encoder.layer.2.intermediate.dense"
    assert row["weight_rel_change"] == pytest.approx((torch.norm(vb - va) / torch.norm(va)).item())
    matrix = reg.compare("fp32", "dropped").cka_matrix()
    assert matrix.shape == (7, 5)  # embeddings + blocks: the true similarity, unpaired
