"""The digits MLP the quantizer tests share: Flatten, Linear(64, hidden), ReLU, Linear(hidden,
10), trained full-batch with Adam for 150 steps (under a second), deterministic."""

from __future__ import annotations

import torch
from torch import nn

LINEARS = ("1", "3")  # its two Linear modules


def train_digits_mlp(digits, hidden: int) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(digits.train_inputs), digits.train_labels).backward()
        opt.step()
    return model.eval()
