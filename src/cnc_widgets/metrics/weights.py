"""A module's weights as the layer table reads them (quantized, low-rank and tensor-subclass
weights dequantized), and the per-module weight measures: relative and mean absolute
change, mean |w|, and the per-element relative change in Compress and Compare's bins.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..compress.bnb_weight import dequantized_weight, is_bnb_linear
from ..compress.conv1d import transposed_names
from ..compress.low_rank import LowRankLinear
from ..compress.tensor_subclass import dequantized
from ..evaluate.stats import compiled_kernels

# Per-element relative change |w_b - w_a| / |w_a| is counted in these bins, [lo, hi), as in
# Compress and Compare's weight view; where w_a == 0 the change is 0 when w_b == 0 too and
# infinite (the last bin) otherwise.
ELEMENT_CHANGE_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, np.inf)


ELEMENT_CHANGE_COLUMNS = [
    "weight_elem_change_0_20",
    "weight_elem_change_20_40",
    "weight_elem_change_40_60",
    "weight_elem_change_60_80",
    "weight_elem_change_80_100",
    "weight_elem_change_100_up",
]


WEIGHT_MEASURES = [
    "weight_rel_change",
    "weight_mean_abs_change",
    "weight_mean_abs_a",
    "weight_mean_abs_b",
    *ELEMENT_CHANGE_COLUMNS,
]


def _is_dynamic_linear(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized.dynamic") and hasattr(
        module, "_packed_params"
    )


def module_weights(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Float32 parameter tensors of every module that owns some, by module name.

    Examples
    --------
    >>> sorted(module_weights(nn.Sequential(nn.Linear(2, 3)))["0"])
    ['bias', 'weight']
    """
    out: dict[str, dict[str, torch.Tensor]] = {}
    factorised: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(f + ".") for f in factorised):
            continue  # a factor: part of its LowRankLinear's row
        if isinstance(module, LowRankLinear):
            # One row for the factorised Linear: its weight is the product of the factors.
            factorised.append(name)
            first, second = module[0], module[1]
            w1 = first.weight().dequantize() if _is_dynamic_linear(first) else first.weight
            w2 = second.weight().dequantize() if _is_dynamic_linear(second) else second.weight
            product = w2.detach().float() @ w1.detach().float()
            # A factorised Conv1D (GPT-2) compares with its parent's (in, out) weight.
            tensors = {"weight": product.T if getattr(module, "transposed", False) else product}
            bias = second.bias() if _is_dynamic_linear(second) else second.bias
            if bias is not None:
                tensors["bias"] = bias
        elif is_bnb_linear(module):
            # bitsandbytes' parameters are the int8 / packed 4-bit codes: read the weight
            # through the layer, dequantized by bitsandbytes.
            tensors = {"weight": dequantized_weight(module)}
            if module.bias is not None:
                tensors["bias"] = module.bias
        elif _is_dynamic_linear(module):
            tensors = {"weight": module.weight().dequantize()}
            bias = module.bias()
            if bias is not None:
                tensors["bias"] = bias
        else:
            tensors = {k: p for k, p in module.named_parameters(recurse=False)}
        if tensors and name:
            # dequantized() also reads tensor-subclass weights (torchao), which lack .float().
            out[name] = {k: dequantized(v) for k, v in tensors.items()}
    for name in transposed_names(model):
        # A GPT-2 Conv1D made a Linear to be quantized: compare in its parent's (in, out) layout.
        if "weight" in out.get(name, {}):
            out[name]["weight"] = out[name]["weight"].T
    return out


def _mean_abs(t: torch.Tensor) -> float:
    return torch.linalg.vector_norm(t, 1).item() / t.numel() if t.numel() else np.nan


def element_change_fractions(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Fractions of elements whose relative change ``|b - a| / |a|`` falls in each bin.

    Bins are :data:`ELEMENT_CHANGE_EDGES`, ``[0, .2), [.2, .4), ..., [.8, 1), [1, inf)``.
    Where ``a == 0`` the change is 0 if ``b == 0`` too and infinite otherwise, so a zero
    that became nonzero counts in the last bin and an untouched zero in the first (as
    Compress and Compare counts them). NaN in either tensor counts in no bin.

    Examples
    --------
    >>> element_change_fractions(torch.tensor([1.0, 1.0, 0.0, 0.0]),
    ...                          torch.tensor([1.1, 0.5, 0.0, 2.0])).tolist()
    [0.5, 0.0, 0.25, 0.0, 0.0, 0.25]
    """
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    d, m = (b - a).abs(), a.abs()
    # 0/0 -> 0 and x/0 -> inf are what the definition says; torch gives nan and inf.
    r = torch.where(m > 0, d / m, torch.where(d > 0, torch.inf, 0.0))
    r = torch.where(a.isnan() | b.isnan(), torch.nan, r)
    bins = torch.bucketize(r, torch.tensor(ELEMENT_CHANGE_EDGES[1:-1], dtype=r.dtype), right=True)
    counts = torch.bincount(bins[~r.isnan()], minlength=len(ELEMENT_CHANGE_EDGES) - 1)
    return counts.double().numpy() / max(a.numel(), 1)


def _weight_row(wa: dict[str, torch.Tensor], wb: dict[str, torch.Tensor]) -> dict[str, float]:
    keys = sorted(set(wa) & set(wb))
    if not keys or any(wa[k].shape != wb[k].shape for k in keys):
        sa = torch.cat([wa[k].flatten() for k in sorted(wa)])
        sb = torch.cat([wb[k].flatten() for k in sorted(wb)])
        return {
            "params": int(sa.numel()),
            "zero_both": np.nan,
            "zero_a_only": np.nan,
            "zero_b_only": np.nan,
            "sparsity_a": float((sa == 0).double().mean()),
            "sparsity_b": float((sb == 0).double().mean()),
            "weight_rel_change": np.nan,
            "weight_mean_abs_change": np.nan,
            "weight_mean_abs_a": _mean_abs(sa.double()),
            "weight_mean_abs_b": _mean_abs(sb.double()),
            **dict.fromkeys(ELEMENT_CHANGE_COLUMNS, np.nan),
        }
    a = torch.cat([wa[k].flatten() for k in keys]).double()
    b = torch.cat([wb[k].flatten() for k in keys]).double()
    n = a.numel()
    kernels = compiled_kernels()
    if kernels is not None and a.device.type == b.device.type == "cpu":
        counts = np.zeros(len(ELEMENT_CHANGE_EDGES) - 1, np.int64)
        zero_both, za_only, zb_only, sq_a, sq_d, l1_d, l1_a, l1_b = kernels.weight_change(
            a.contiguous().numpy(), b.contiguous().numpy(), _BOUNDS, counts
        )
        norm_a, change = float(np.sqrt(sq_a)), float(np.sqrt(sq_d))
        fractions = (counts / max(n, 1)).tolist()
        mean_abs = [v / n if n else np.nan for v in (l1_d, l1_a, l1_b)]
    else:
        za, zb = a == 0, b == 0
        zero_both, za_only, zb_only = ((za & zb).sum(), (za & ~zb).sum(), (~za & zb).sum())
        zero_both, za_only, zb_only = int(zero_both), int(za_only), int(zb_only)
        norm_a = torch.linalg.vector_norm(a).item()
        diff = b - a
        change = torch.linalg.vector_norm(diff).item()
        fractions = element_change_fractions(a, b).tolist()
        mean_abs = [_mean_abs(diff), _mean_abs(a), _mean_abs(b)]
    return {
        "params": int(n),
        "zero_both": zero_both / n,
        "zero_a_only": za_only / n,
        "zero_b_only": zb_only / n,
        "sparsity_a": (zero_both + za_only) / n,
        "sparsity_b": (zero_both + zb_only) / n,
        "weight_rel_change": change / norm_a if norm_a > 0 else (0.0 if change == 0 else np.inf),
        "weight_mean_abs_change": mean_abs[0],
        "weight_mean_abs_a": mean_abs[1],
        "weight_mean_abs_b": mean_abs[2],
        **dict(zip(ELEMENT_CHANGE_COLUMNS, fractions, strict=True)),
    }


_BOUNDS = np.asarray(ELEMENT_CHANGE_EDGES[1:-1], np.float64)


def _empty_weight_row(w: dict[str, torch.Tensor], side: str) -> dict[str, float]:
    flat = torch.cat([t.flatten() for t in w.values()])
    row = dict.fromkeys(
        ["zero_both", "zero_a_only", "zero_b_only", "sparsity_a", "sparsity_b"], np.nan
    )
    row.update(params=int(flat.numel()), weight_rel_change=np.nan)
    row.update(dict.fromkeys(WEIGHT_MEASURES[1:], np.nan))
    row[f"sparsity_{side}"] = float((flat == 0).double().mean())
    row[f"weight_mean_abs_{side}"] = _mean_abs(flat.double())
    return row
