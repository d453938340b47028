"""MiniLM fp32 against its int8, 50%-pruned and layer-dropped variants, on real tweets.

The measures of Rai et al. (errors, neighbourhoods, OOD, adversarial) and the layer
table through the same registry API as the digits CNN.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnc_widgets as cnc
from cnc_widgets import examples

pytestmark = pytest.mark.slow

VARIANTS = ["int8", "pruned", "dropped"]


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    encoder, tokenizer = examples.load_minilm()
    data = examples.tweets(n_train=300, n_test=240, max_length=32, tokenizer=tokenizer)
    model = examples.train_text_classifier(data, encoder)
    r = cnc.ModelRegistry(store=tmp_path_factory.mktemp("minilm"))
    r.set_data(
        data.test_inputs,
        data.test_labels,
        classes=data.classes,
        instances=data.test_instances,
        batch_size=60,
    )
    r.add("fp32", model)
    r.compress("fp32", "quantize_dynamic", name="int8")
    r.compress("fp32", "prune", amount=0.5, name="pruned")
    r.compress("fp32", "drop_layers", layers=[3, 4, 5], name="dropped")
    r.evaluate(progress=False)
    return r


def test_efficiency_moves_the_right_way(reg):
    table = reg.metrics()
    assert table.loc["int8", "size_bytes"] <= 0.7 * table.loc["fp32", "size_bytes"]
    # prune's default leaves the embeddings and the output head whole: half of the other
    # weights is the expected share of zeros among all the weights.
    from torch import nn

    from cnc_widgets.compress.pruning import default_exclusions
    from cnc_widgets.evaluate.efficiency import weight_counts

    model = reg.model("fp32")
    left_out = default_exclusions(model)
    pool = sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and n not in left_out
    )
    expected = 0.5 * pool / weight_counts(model)[0]
    assert table.loc["pruned", "sparsity"] == pytest.approx(expected, abs=0.02)
    assert table.loc["pruned", "sparse_size_bytes"] < table.loc["fp32", "size_bytes"]
    assert table.loc["dropped", "macs"] < 0.65 * table.loc["fp32", "macs"]
    assert (table["accuracy"] > 0.34).all()  # better than chance on three classes


def test_four_measures_and_layers(reg):
    rows = {}
    for name in VARIANTS:
        cmp = reg.compare("fp32", name)
        values = {
            "error_jaccard": cmp.error_jaccard,
            "knn": cmp.knn_agreement(10),
            "ood": cmp.ood_agreement(k=10),
            "adversarial": cmp.adversarial_overlap(max_instances=60, steps=3),
        }
        for key, value in values.items():
            assert np.isfinite(value) and 0.0 <= value <= 1.0, (name, key, value)
        assert values["knn"] < 1.0, name  # every lossy variant moves some neighbourhoods
        rows[name] = values
        if name == "int8":
            details = cmp.adversarial_details(max_instances=60, steps=3)  # cached: no attack
            assert details["source_b"] == "transfer from fp32"
        layers = cmp.layers
        assert len(layers) > 20
        finite = layers[["zero_both", "zero_a_only", "zero_b_only", "cka"]].dropna()
        assert ((finite >= 0) & (finite <= 1 + 1e-9)).all().all()
        assert layers["weight_rel_change"].dropna().ge(0).all()
    assert reg.compare("fp32", "pruned").layers["zero_b_only"].max() > 0.3
    assert len({round(r["knn"], 6) for r in rows.values()}) == 3  # variants differ
