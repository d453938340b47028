"""model_fingerprint and data_fingerprint: equal for equal content, different otherwise."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnc_widgets import examples
from cnc_widgets.evaluate.fingerprint import data_fingerprint, model_fingerprint


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def quantized(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def test_equal_for_deepcopy_and_changed_by_one_weight():
    model = mlp()
    fp = model_fingerprint(model)
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert model_fingerprint(copy.deepcopy(model)) == fp
    assert model_fingerprint(model) == fp  # hashing does not alter the model
    with torch.no_grad():
        model[2].weight[1, 3] += 1e-6
    assert model_fingerprint(model) != fp


def test_differs_by_class_and_architecture_with_equal_weights():
    a = mlp()
    b = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3))
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) != model_fingerprint(b)


def test_int8_differs_from_float_and_tracks_packed_weights():
    model = mlp()
    q = quantized(model)
    fp = model_fingerprint(q)
    assert fp != model_fingerprint(model)
    assert model_fingerprint(copy.deepcopy(q)) == fp
    assert model_fingerprint(quantized(copy.deepcopy(model))) == fp
    weight, bias = q[2]._weight_bias()
    q[2].set_weight_bias(weight, bias + 1.0)  # only the packed params change
    assert model_fingerprint(q) != fp
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed[0].weight[0, 0] += 0.5
    assert model_fingerprint(quantized(changed)) != fp


def test_bfloat16_half_and_non_contiguous_tensors():
    model = mlp()
    fps = {
        model_fingerprint(copy.deepcopy(model).to(dt))
        for dt in (torch.float32, torch.float16, torch.bfloat16)
    }
    assert len(fps) == 3
    b16 = copy.deepcopy(model).to(torch.bfloat16)
    fp = model_fingerprint(b16)
    with torch.no_grad():
        b16[0].weight[2, 2] += 0.25
    assert model_fingerprint(b16) != fp

    class WithView(nn.Module):
        def __init__(self, t: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("w", t)

    base = torch.arange(12.0).reshape(3, 4)
    transposed = WithView(base.t())  # non-contiguous
    assert not transposed.w.is_contiguous()
    assert model_fingerprint(transposed) == model_fingerprint(WithView(base.t().contiguous()))
    assert model_fingerprint(transposed) != model_fingerprint(WithView(base.reshape(4, 3)))


def test_stable_across_processes():
    code = (
        "import torch; from torch import nn; torch.manual_seed(0); "
        "m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)); "
        "from cnc_widgets.evaluate.fingerprint import model_fingerprint; "
        "print(model_fingerprint(m))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
        env={"PYTHONPATH": "src", "PYTHONHASHSEED": "123"},
    )
    assert out.stdout.strip() == model_fingerprint(mlp())


def test_minilm_hashes_fast_and_sees_one_changed_weight():
    encoder, _ = examples.load_minilm()
    model = examples.TextClassifier(encoder, 3)
    model_fingerprint(model)  # warm the page cache
    start = time.perf_counter()
    fp = model_fingerprint(model)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"hashing MiniLM took {elapsed:.2f} s"
    with torch.no_grad():
        encoder.encoder.layer[3].attention.self.query.weight[7, 7] += 1e-3
    assert model_fingerprint(model) != fp


def test_data_fingerprint():
    x = torch.randn(5, 3)
    ids = {"input_ids": torch.arange(10).reshape(5, 2), "attention_mask": torch.ones(5, 2)}
    labels = [0, 1, 2, 1, 0]
    assert data_fingerprint(x, labels) == data_fingerprint(x.clone(), np.array(labels))
    assert data_fingerprint(x, labels) != data_fingerprint(x, [0, 1, 2, 1, 1])
    assert data_fingerprint(x, labels) != data_fingerprint(x)
    y = x.clone()
    y[4, 2] += 1e-4
    assert data_fingerprint(y, labels) != data_fingerprint(x, labels)
    reordered = {"attention_mask": ids["attention_mask"], "input_ids": ids["input_ids"]}
    assert data_fingerprint(ids, labels) == data_fingerprint(reordered, labels)
    shorter = {k: v[:4] for k, v in ids.items()}
    assert data_fingerprint(shorter, labels[:4]) != data_fingerprint(ids, labels)
    with pytest.raises(TypeError):
        data_fingerprint([1, 2, 3])  # type: ignore[arg-type]
