"""Low-rank factorisation of linear layers by truncated SVD.

A Linear ``W`` (out x in) becomes ``B @ A`` with ``A`` (r x in) and ``B`` (out x r), the best
rank-r approximation; this saves parameters only while ``r * (in + out) < in * out``, so
layers where it would not are left as they are. A Linear whose weight is tied to another
module (a language model's output head sharing the input embedding) is left too: its weight
stays in the model either way, so factors would only add parameters.

Example
-------
>>> from torch import nn
>>> from cnc_widgets.compress.low_rank import low_rank
>>> net = low_rank(nn.Sequential(nn.Linear(64, 64)), rank=8)
>>> type(net[0]).__name__, net[0].rank
('LowRankLinear', 8)
"""

from __future__ import annotations

import torch
from torch import nn

from .conv1d import is_conv1d

__all__ = ["LowRankLinear", "low_rank"]


class LowRankLinear(nn.Sequential):
    """Two Linears in a row, ``in -> rank`` (no bias) then ``rank -> out``.

    ``transposed`` is True when it replaced a transformers ``Conv1D``, whose weight is
    stored ``(in, out)``: the product of the factors, ``(out, in)``, compares with that
    weight transposed.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        transposed: bool = False,
    ) -> None:
        super().__init__(
            nn.Linear(in_features, rank, bias=False), nn.Linear(rank, out_features, bias=bias)
        )
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.transposed = transposed


def _rank_for(s: torch.Tensor, rank: int | None, energy: float | None) -> int:
    if rank is not None:
        return min(rank, len(s))
    kept = torch.cumsum(s.pow(2), 0) / s.pow(2).sum().clamp_min(1e-30)
    return int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype)).item()) + 1


def _factorise(linear: nn.Module, rank: int | None, energy: float | None) -> nn.Module:
    w = linear.weight.detach()
    w = w.T if is_conv1d(linear) else w
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    r = min(_rank_for(s, rank, energy), len(s))
    out_f, in_f = w.shape
    if r * (in_f + out_f) >= in_f * out_f:
        return linear
    new = LowRankLinear(
        in_f, out_f, r, bias=linear.bias is not None, transposed=is_conv1d(linear)
    ).to(w.device, w.dtype)
    root = s[:r].sqrt()
    # Splitting sqrt(s) between both factors keeps their scales balanced.
    new[0].weight.data.copy_((root[:, None] * vh[:r]).to(w.dtype))
    new[1].weight.data.copy_((u[:, :r] * root).to(w.dtype))
    if linear.bias is not None:
        new[1].bias.data.copy_(linear.bias.detach())
    return new.train(linear.training)


def low_rank(
    model: nn.Module,
    rank: int | None = None,
    energy: float | None = None,
    *,
    report: dict | None = None,
) -> nn.Module:
    """Replace each ``nn.Linear`` by a :class:`LowRankLinear` where that reduces parameters.

    transformers' ``Conv1D`` (GPT-2's Linears, weight stored transposed) counts as a Linear.

    Parameters
    ----------
    model
        Modified in place and returned (a bare ``nn.Linear`` is returned replaced).
    rank
        Keep this many singular values in every layer.
    energy
        Or keep, per layer, the fewest singular values whose squares sum to at least this
        fraction (0, 1] of the total. Give exactly one of ``rank`` and ``energy``.
    report
        When given, ``report["factorised"]`` maps each replaced Linear's dotted name
        to the rank it got (the module keeps its name), and ``report["skipped"]`` each
        Linear left whole because its weight is tied to another module.

    Examples
    --------
    >>> from torch import nn
    >>> low_rank(nn.Linear(64, 64), energy=0.5).rank < 64
    True
    """
    if (rank is None) == (energy is None):
        raise ValueError("low_rank: give exactly one of rank (int >= 1) or energy (0 < e <= 1)")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ValueError(f"low_rank: rank must be an integer >= 1, got {rank!r}")
    if energy is not None and (
        isinstance(energy, bool) or not isinstance(energy, int | float) or not 0 < energy <= 1
    ):
        raise ValueError(f"low_rank: energy must be a number in (0, 1], got {energy!r}")
    if isinstance(model, nn.Linear):
        return _factorise(model, rank, energy)
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for p in module.parameters(recurse=False):
            owners.setdefault(id(p), []).append(name)
    targets = [
        (name, m) for name, m in model.named_modules() if type(m) is nn.Linear or is_conv1d(m)
    ]
    factorised: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for name, linear in targets:
        tied = [o for o in owners.get(id(linear.weight), []) if o != name]
        if tied:
            skipped[name] = f"weight tied to {tied[0]}"
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = _factorise(linear, rank, energy)
        setattr(parent, attr, new)
        if isinstance(new, LowRankLinear):
            factorised[name] = new.rank
    if report is not None:
        report["factorised"] = factorised
        report["skipped"] = skipped
    return model
