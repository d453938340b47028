"""NumPy inputs (an array, or a dict of arrays) are accepted wherever tensors are (#24 item 7)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import cnc_widgets as cnc

from .tweet_encoder import trained


def _registry(inputs, labels, model) -> cnc.ModelRegistry:
    reg = cnc.ModelRegistry(store=None)
    reg.set_data(inputs, labels)
    reg.add("base", copy.deepcopy(model))
    reg.evaluate(progress=False)
    return reg


def test_numpy_array_inputs_match_tensors(digits, digits_cnn):
    x, y = digits.test_inputs[:100], digits.test_labels[:100]
    arr = x.numpy().astype(np.float64)  # float64 meets the float32 model as float32
    arr.setflags(write=False)
    from_numpy = _registry(arr, y.numpy(), digits_cnn)
    from_tensor = _registry(x, y, digits_cnn)
    assert isinstance(from_numpy.data.inputs, torch.Tensor)
    assert from_numpy.data.fingerprint == _registry(x.double(), y, digits_cnn).data.fingerprint
    np.testing.assert_array_equal(
        from_numpy.result("base")["logits"], from_tensor.result("base")["logits"]
    )
    with torch.inference_mode():
        expected = (digits_cnn(x).argmax(1) == y).double().mean().item()
    assert from_numpy.metrics().loc["base", "accuracy"] == pytest.approx(expected)


def test_dict_of_numpy_arrays_matches_tensors():
    model, x, y, _ = trained()
    model = copy.deepcopy(model)
    model.padding_mask = False  # activation hooks cannot read nested tensors
    from_numpy = _registry({"ids": x[:64].numpy()}, y[:64].numpy(), model)
    from_tensor = _registry({"ids": x[:64]}, y[:64], model)
    assert from_numpy.data.fingerprint == from_tensor.data.fingerprint
    np.testing.assert_array_equal(
        from_numpy.result("base")["logits"], from_tensor.result("base")["logits"]
    )


def test_numpy_text_is_refused_with_a_hint():
    reg = cnc.ModelRegistry(store=None)
    with pytest.raises(ValueError, match="tokenize text first"):
        reg.set_data(np.array(["a tweet", "another"]), np.array([0, 1]))
    with pytest.raises(ValueError, match="tokenize text first"):
        reg.set_data({"ids": np.array([["a"], ["b"]], dtype=object)}, np.array([0, 1]))
