"""compare_many crafts each crafter's attack once: transfers reuse the reference's batches."""

from __future__ import annotations

import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.metrics import adversarial


def digits_mlp() -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data[:300], dtype=torch.float32) / 16
    y = torch.tensor(digits.target[:300])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return x, y, model


def counting_crafts(monkeypatch) -> list:
    crafters = []
    real = adversarial.craft

    def counting(crafter, *args, **kwargs):
        crafters.append(crafter)
        return real(crafter, *args, **kwargs)

    monkeypatch.setattr(adversarial, "craft", counting)
    return crafters


def test_compare_many_reuses_the_references_crafted_attack(monkeypatch):
    x, y, model = digits_mlp()
    reg = cnc.ModelRegistry()
    reg.set_data(x, y, batch_size=64)
    reg.add("base", model.eval())
    reg.compress("base", "prune", amount=0.3, name="p30")
    reg.compress("base", "prune", amount=0.5, name="p50")
    reg.compress("base", "half", name="half")
    reg.compress("base", "quantize_dynamic", name="int8")
    reg.evaluate(progress=False)

    crafters = counting_crafts(monkeypatch)
    first = reg.compare("base", "p30").adversarial_overlap()  # the same rows as compare_many
    batches = len(crafters) // 2  # base and p30, directly
    table = reg.compare_many("base", adversarial=True, progress=False)
    base = reg.model("base")
    on_base = sum(c is base for c in crafters)
    # base: crafted once (its direct attack); half and int8 are attacked by transfer from it
    # with the same batches; p50 directly.
    assert on_base == batches
    assert len(crafters) == 3 * batches
    assert table.loc["p30", "adversarial_overlap"] == first
    assert set(table["adversarial_source_b"]) >= {"direct", "transfer from base"}


def test_two_registries_do_not_share_crafted_attacks(monkeypatch):
    x, y, model = digits_mlp()
    registries = []
    for _ in range(2):
        reg = cnc.ModelRegistry()
        reg.set_data(x, y, batch_size=64)
        reg.add("base", model.eval())
        reg.compress("base", "quantize_dynamic", name="int8")
        reg.evaluate(progress=False)
        registries.append(reg)
    assert registries[0].crafted_attacks is not registries[1].crafted_attacks
    crafters = counting_crafts(monkeypatch)
    budget = {"max_instances": 64, "steps": 2}
    first = registries[0].compare("base", "int8").adversarial_details(**budget)
    crafted_once = len(crafters)  # on base, reused by int8's transfer
    assert crafted_once == 1  # 64 rows, one batch
    second = registries[1].compare("base", "int8").adversarial_details(**budget)
    # The other registry crafts its own (same model, data and budget: the same outcome).
    assert len(crafters) == 2 * crafted_once
    assert second == first and first["source_b"] == "transfer from base"
