"""Structured pruning of a causal LM's feed-forward units (Llama-style and GPT-2-style MLPs).

A decoder MLP is ``down(act(gate(x)) * up(x))`` (Llama, Mistral, Qwen: ``gate_proj``,
``up_proj``, ``down_proj``) or ``c_proj(act(c_fc(x)))`` (GPT-2, whose transformers
``Conv1D`` stores weights ``(in, out)``). Removing intermediate unit ``i`` removes row ``i``
of every input projection and column ``i`` of the output one; the model stays exactly a
smaller model of the same architecture. Units are ranked by the L2 norm of all weights
that read or write them. Attention heads are left whole: grouped-query attention ties
several query heads to each key/value head, so they are reported as skipped.

Example
-------
>>> from cnc_widgets import examples
>>> from cnc_widgets.compress.decoder_units import decoder_mlps, prune_decoder_mlps
>>> model, _ = examples.train_tiny_lm(steps=0)
>>> report = {}
>>> _ = prune_decoder_mlps(model, 0.25, report)
>>> report["pruned"]["model.layers.0.mlp"]
[192, 144]
"""

from __future__ import annotations

import torch
from torch import nn

from .conv1d import is_conv1d

__all__ = ["decoder_mlps", "prune_decoder_mlps"]

_GATED = ("gate_proj", "up_proj", "down_proj")


def decoder_mlps(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Llama-style or GPT-2-style MLP block in ``model``."""
    found = []
    for name, module in model.named_modules():
        if all(isinstance(getattr(module, a, None), nn.Linear) for a in _GATED):
            found.append((name, module))
        elif all(is_conv1d(getattr(module, a, None)) for a in ("c_fc", "c_proj")):
            found.append((name, module))
    return found


def _keep(t: torch.Tensor, index: torch.Tensor, dim: int) -> nn.Parameter:
    return nn.Parameter(t.detach().index_select(dim, index).clone())


def _prune_block(block: nn.Module, amount: float) -> tuple[int, int]:
    def sq(w: torch.Tensor) -> torch.Tensor:
        return w.detach().float().pow(2)

    if hasattr(block, "gate_proj"):
        ins, out = [block.gate_proj, block.up_proj], block.down_proj
        score = sum(sq(m.weight).sum(1) for m in ins) + sq(out.weight).sum(0)
    else:  # GPT-2: c_fc.weight (in, units), c_proj.weight (units, out)
        ins, out = [block.c_fc], block.c_proj
        score = sq(block.c_fc.weight).sum(0) + sq(out.weight).sum(1)
    n = len(score)
    units = torch.sort(torch.topk(score, max(1, n - round(amount * n))).indices).values
    for m in ins:
        if isinstance(m, nn.Linear):
            m.weight = _keep(m.weight, units, 0)
            m.out_features = len(units)
        else:
            m.weight = _keep(m.weight, units, 1)
            m.nf = len(units)
        if m.bias is not None:
            m.bias = _keep(m.bias, units, 0)
    if isinstance(out, nn.Linear):
        out.weight = _keep(out.weight, units, 1)
        out.in_features = len(units)
    else:
        out.weight = _keep(out.weight, units, 0)
        out.nx = len(units)
    return n, len(units)


def prune_decoder_mlps(model: nn.Module, amount: float, report: dict) -> nn.Module:
    """Remove the ``amount`` fraction of lowest-norm units from every decoder MLP, in place.

    Fills ``report["pruned"]`` (MLP name -> ``[units before, after]``), ``report["skipped"]``
    (attention modules, left whole) and ``report["removed_fraction"]``; sets
    ``config.intermediate_size`` (``n_inner`` for GPT-2) when every MLP has the same width.
    """
    blocks = decoder_mlps(model)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no Llama- or GPT-2-style MLP blocks")
    pruned = {name: list(_prune_block(block, amount)) for name, block in blocks}
    report["pruned"] = pruned
    report["skipped"] = {
        name: "attention heads left whole (only feed-forward units are pruned)"
        for name, module in model.named_modules()
        if name.endswith(("self_attn", ".attn")) and list(module.parameters())
    }
    total = sum(b for b, _ in pruned.values())
    report["removed_fraction"] = (total - sum(a for _, a in pruned.values())) / total
    widths = {a for _, a in pruned.values()}
    config = getattr(model, "config", None)
    if config is not None and len(widths) == 1:
        width = widths.pop()
        if hasattr(config, "intermediate_size"):
            config.intermediate_size = width
        if getattr(config, "model_type", None) == "gpt2":
            config.n_inner = width
    return model
