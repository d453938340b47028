"""A user's nn.TransformerEncoder classifier that passes a padding mask: torch hands nested
tensors to its layers, which module hooks cannot read; evaluation and the layer table run the
padded batch instead, and real tokens' outputs do not change."""

from __future__ import annotations

import torch
from torch import nn

import cnc_widgets as cnc


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(32, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.enc(self.emb(input_ids), src_key_padding_mask=attention_mask == 0)
        m = attention_mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1))


def test_masked_encoder_evaluates_with_the_same_logits():
    torch.manual_seed(0)
    ids = torch.randint(1, 100, (30, 10))
    mask = (torch.arange(10)[None] < torch.randint(3, 11, (30, 1))).long()
    model = Encoder().eval()
    reg = cnc.ModelRegistry()
    reg.set_data({"input_ids": ids, "attention_mask": mask}, torch.randint(0, 3, (30,)))
    reg.add("base", model)
    reg.compress("base", "quantize_dynamic", name="int8")
    reg.evaluate(progress=False)
    with torch.inference_mode():
        direct = model(ids, mask)  # the nested-tensor fast path
    torch.testing.assert_close(
        torch.from_numpy(reg.result("base")["logits"]), direct, rtol=1e-4, atol=1e-5
    )
    layers = reg.compare("base", "int8").layers
    assert layers.loc["enc.layers.0.linear1", "activation_rel_change"] > 0
