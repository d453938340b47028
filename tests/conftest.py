"""Shared real models and data: the digits CNN trains in about a second."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CNC_FIXTURE = SHARED / "fixtures" / "cnc_imagenet_tutorial.json"


@pytest.fixture(scope="session")
def digits():
    from cnc_widgets import examples

    return examples.digits()


@pytest.fixture(scope="session")
def digits_cnn(digits):
    from cnc_widgets import examples

    return examples.train_digits_cnn(digits, epochs=2)


# Language models (issue 29): a tiny Llama and a tiny GPT-2 trained in seconds on the news
# articles with their own 512-token BPE vocabulary; SmolLM2 only for tests marked slow.
@pytest.fixture(scope="session")
def lm_tokenizer():
    from cnc_widgets import examples

    return examples.train_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm(lm_tokenizer):
    from cnc_widgets import examples

    model, _ = examples.train_tiny_lm(tokenizer=lm_tokenizer)
    return model


@pytest.fixture(scope="session")
def tiny_gpt2(lm_tokenizer):
    from cnc_widgets import examples

    model, _ = examples.train_tiny_lm(tokenizer=lm_tokenizer, architecture="gpt2", steps=60)
    return model


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct (Q4_1 dequantized) and its tokenizer, loaded once per session."""
    from cnc_widgets import examples

    return examples.smollm2()
