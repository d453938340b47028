"""One way into and out of every model: inputs on its device and dtype, logits out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnc_widgets.evaluate.efficiency import efficiency
from cnc_widgets.evaluate.inference import evaluate_model
from cnc_widgets.evaluate.inference import extract_logits as extract_from_inference
from cnc_widgets.evaluate.model_io import (
    call_model,
    eval_mode,
    extract_logits,
    model_device,
    model_dtype,
    prepare_inputs,
    slice_rows,
)


def test_extract_logits_keeps_its_old_import_path():
    assert extract_from_inference is extract_logits


def test_extract_logits_reads_every_common_output():
    from transformers.modeling_outputs import SequenceClassifierOutput

    z = torch.randn(4, 3)
    assert extract_logits(z) is z
    assert extract_logits((z, torch.zeros(4, 8))) is z
    assert extract_logits([z]) is z
    assert extract_logits({"logits": z, "hidden": torch.zeros(4, 8)}) is z
    assert extract_logits({"scores": z}) is z  # a dict with one tensor
    assert extract_logits(SequenceClassifierOutput(logits=z)) is z


def test_extract_logits_says_what_a_dict_without_logits_holds():
    with pytest.raises(TypeError, match=r"keys \['a', 'b'\] and none named 'logits'"):
        extract_logits({"a": torch.zeros(2, 3), "b": torch.zeros(2, 3)})
    with pytest.raises(TypeError, match="cannot find logits in a model output of type str"):
        extract_logits("nope")
    with pytest.raises(ValueError, match="pool or select"):
        extract_logits(torch.zeros(4, 3, 2))


@pytest.mark.parametrize("shape", [(5,), (5, 1)])
def test_one_logit_is_two_classes_whose_softmax_is_the_sigmoid(shape):
    z = torch.tensor([-2.0, -0.1, 0.0, 0.3, 4.0]).reshape(shape)
    logits = extract_logits(z)
    assert logits.shape == (5, 2)
    p = torch.softmax(logits, 1)
    torch.testing.assert_close(p[:, 1], torch.sigmoid(z.flatten()))
    assert logits.argmax(1).tolist() == (z.flatten() > 0).long().tolist()


def test_prepare_inputs_follows_the_model_dtype_for_float32_too():
    x64 = torch.rand(3, 4, dtype=torch.float64)
    assert prepare_inputs(nn.Linear(4, 2), x64).dtype == torch.float32
    assert prepare_inputs(nn.Linear(4, 2).double(), torch.rand(3, 4)).dtype == torch.float64
    assert prepare_inputs(nn.Linear(4, 2).half(), x64).dtype == torch.float16
    x32 = torch.rand(3, 4)
    assert prepare_inputs(nn.Linear(4, 2), x32) is x32  # nothing to do: no copy


def test_prepare_inputs_keeps_token_ids_and_masks():
    model = nn.Embedding(10, 4).to(torch.bfloat16)
    batch = {
        "ids": torch.tensor([[1, 2]]),
        "mask": torch.tensor([[True, False]]),
        "w": torch.ones(1, 2),
    }
    out = prepare_inputs(model, batch)
    assert out["ids"].dtype == torch.int64 and out["mask"].dtype == torch.bool
    assert out["w"].dtype == torch.bfloat16


def test_model_dtype_and_device_of_models_without_float_parameters():
    int8 = torch.ao.quantization.quantize_dynamic(
        nn.Sequential(nn.Linear(4, 2)), {nn.Linear}, dtype=torch.qint8
    )
    assert model_dtype(int8) == torch.float32
    assert model_device(nn.ReLU()) == torch.device("cpu")
    assert model_dtype(nn.Linear(2, 2).to(torch.float16)) == torch.float16


def test_a_float64_model_gets_float32_data_in_evaluation_and_efficiency():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.rand(10, 4)
    result = evaluate_model(model, x, batch_size=4, progress=False)
    with torch.no_grad():
        expected = model(x.double()).float().numpy()
    assert abs(result.logits - expected).max() < 1e-6
    stats = efficiency(model, x[:4], latency=True, repeats=2, warmup=1)
    assert stats["macs"] == 4 * (4 * 8 + 8 * 3)
    assert stats["latency_ms"] > 0 and stats["peak_memory_bytes"] >= 0


def test_prepare_inputs_moves_a_batch_to_the_models_device():
    # No GPU here: the meta device stands in for one (a real move, no values).
    model = nn.Linear(4, 2, device="meta")
    batch = {"x": torch.rand(2, 4, dtype=torch.float64), "ids": torch.zeros(2, 3, dtype=torch.long)}
    out = prepare_inputs(model, batch)
    assert out["x"].device.type == "meta" and out["x"].dtype == torch.float32
    assert out["ids"].device.type == "meta" and out["ids"].dtype == torch.int64


def test_attacks_follow_the_model_dtype_directly_and_by_transfer(digits, digits_cnn):
    import copy

    from cnc_widgets.compress.precision import half
    from cnc_widgets.metrics.adversarial import Attack, attack_model

    x, y = digits.test_inputs[:48], digits.test_labels[:48]
    batches = [(x[:24], y[:24]), (x[24:], y[24:])]
    attack = Attack(eps=0.1, steps=3, clip=(0.0, 1.0))
    base = attack_model(digits_cnn, batches, attack)
    wide = attack_model(copy.deepcopy(digits_cnn).double(), batches, attack)
    np_equal = (base.correct == wide.correct).mean()
    assert np_equal > 0.95 and wide.flipped.sum() > 0
    # a float16 model attacked with inputs crafted on its float32 parent
    moved = attack_model(
        half(copy.deepcopy(digits_cnn)), batches, attack, surrogate=digits_cnn, surrogate_name="b"
    )
    assert moved.source == "transfer from b"
    assert (moved.flipped == base.flipped).mean() > 0.9


@pytest.mark.parametrize(
    ("inference", "grad", "in_inference"),
    [(True, False, True), (False, False, False), (None, True, False)],
)
def test_eval_mode_restores_every_submodules_own_flag(inference, grad, in_inference):
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Sequential(nn.Dropout()))
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a model in training
    before = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError, match="inside"), eval_mode(model, inference=inference):
        assert not any(m.training for m in model.modules())
        assert torch.is_grad_enabled() == grad
        assert torch.is_inference_mode_enabled() == in_inference
        raise RuntimeError("inside")
    assert [m.training for m in model.modules()] == before == [True, True, False, True, True]
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_call_model_passes_mappings_as_keywords_and_anything_else_as_is():
    from collections import UserDict

    class Two(nn.Module):
        def forward(self, x, y=None):
            return (x, y)

    x, y = torch.zeros(1), torch.ones(1)
    assert call_model(Two(), UserDict(x=x, y=y)) == (x, y)  # a BatchEncoding is a UserDict
    assert call_model(Two(), {"x": x}) == (x, None)
    pair = (x, y)
    assert call_model(Two(), pair)[0] is pair


def test_slice_rows_moves_to_the_models_device_the_cpu_included():
    model = nn.Linear(4, 2, device="meta")
    batch = {"x": torch.rand(6, 4, dtype=torch.float64), "ids": torch.arange(6)}
    out = slice_rows(batch, 2, 5, model_dtype(model), model_device(model))
    assert out["x"].device.type == "meta" and out["x"].dtype == torch.float32
    assert out["ids"].shape == (3,) and out["ids"].device.type == "meta"
    cpu = slice_rows(batch["x"], 0, 3, None, model_device(nn.Linear(4, 2)))
    assert cpu.dtype == torch.float64 and cpu.data_ptr() == batch["x"].data_ptr()  # no copy
