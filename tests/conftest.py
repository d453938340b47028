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
