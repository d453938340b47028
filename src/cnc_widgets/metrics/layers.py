"""Per-module comparison of two models: sparsity masks, weight and activation change, CKA.

Modules pair by dotted name, composed with the renamings recorded along the two
models' provenance (``drop_layers`` keeps which block became which, see
:func:`cnc_widgets.provenance.module_correspondence`). Quantized and cast models are
unwrapped first: a dynamic int8 Linear contributes its dequantized weight under the
float Linear's name, half and bfloat16 weights are compared in float32, and a
``LowRankLinear`` contributes the product of its factors under the name of the
Linear it replaced. A module whose tensors changed shape (structured pruning) keeps
its row with NaN weight measures; CKA still compares its outputs, which need not
have the same width. Modules in one model only keep a row too, and every empty cell
is explained in the ``note`` column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..compress.low_rank import LowRankLinear
from ..compress.tensor_subclass import dequantized
from ..evaluate.errors import EvaluationError
from ..evaluate.model_io import call_model, eval_mode, model_device, model_dtype, n_rows, slice_rows
from ..evaluate.modules import first_tensor, leaf_modules
from ..evaluate.streaming import iter_activations
from ..provenance import ModuleCorrespondence
from .cka import CKAMatrix, LinearCKA, cka_memory_estimate

__all__ = [
    "activation_only_modules",
    "cka_between",
    "default_cka_modules",
    "element_change_fractions",
    "layer_table",
    "layers_and_cka",
    "module_weights",
]

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
ACTIVATION_MEASURES = [
    "activation_rel_change",
    "activation_mean_abs_change",
    "activation_mean_abs_a",
    "activation_mean_abs_b",
]
PARAMETERS, ACTIVATION_ONLY = "parameters", "activation only"
LAYER_COLUMNS = [
    "module",
    "kind",
    "row_type",
    "params",
    "zero_both",
    "zero_a_only",
    "zero_b_only",
    "sparsity_a",
    "sparsity_b",
    *WEIGHT_MEASURES,
    *ACTIVATION_MEASURES,
    "cka",
    "module_b",
    "status",
    "note",
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
    za, zb = a == 0, b == 0
    n = a.numel()
    norm_a = torch.linalg.vector_norm(a).item()
    diff = b - a
    change = torch.linalg.vector_norm(diff).item()
    return {
        "params": int(n),
        "zero_both": (za & zb).sum().item() / n,
        "zero_a_only": (za & ~zb).sum().item() / n,
        "zero_b_only": (~za & zb).sum().item() / n,
        "sparsity_a": za.sum().item() / n,
        "sparsity_b": zb.sum().item() / n,
        "weight_rel_change": change / norm_a if norm_a > 0 else (0.0 if change == 0 else np.inf),
        "weight_mean_abs_change": _mean_abs(diff),
        "weight_mean_abs_a": _mean_abs(a),
        "weight_mean_abs_b": _mean_abs(b),
        **dict(zip(ELEMENT_CHANGE_COLUMNS, element_change_fractions(a, b).tolist(), strict=True)),
    }


def activation_only_modules(
    model: nn.Module, weights: Mapping[str, Mapping[str, torch.Tensor]] | None = None
) -> list[str]:
    """Leaf modules without parameters (ReLU, GELU, pooling, dropout, ...), in module order.

    ``weights`` is :func:`module_weights` of ``model`` when already at hand.

    Examples
    --------
    >>> activation_only_modules(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Dropout()))
    ['1', '2']
    """
    weights = module_weights(model) if weights is None else weights
    owners = tuple(f"{name}." for name in weights)
    return [
        name
        for name in leaf_modules(model, pass_through=True)
        if name not in weights and not name.startswith(owners)
    ]


def _in_module_order(model: nn.Module, *groups: Sequence[str]) -> list[str]:
    wanted = set().union(*groups)
    return [name for name, _ in model.named_modules() if name in wanted]


def _copied_pairs(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: torch.Tensor | dict[str, torch.Tensor],
    pairs: Sequence[tuple[str, str]],
    act_a: Sequence[str],
    act_b: Sequence[str],
) -> dict[str, str]:
    """Pass-through rows whose outputs are another measured pair's, by a's name -> source.

    In eval mode Dropout and Identity return their input tensor itself; when that tensor
    is what a measured module returned, in a and in b, the pair's numbers are the same
    to the bit. One forward pass of each model on two rows finds out (a module whose
    last output is the same tensor object as another module's).
    """
    through_a = set(act_a) - set(leaf_modules(model_a))
    through_b = set(act_b) - set(leaf_modules(model_b))
    candidates = [(a, b) for a, b in pairs if a in through_a and b in through_b]
    if not candidates:
        return {}
    try:
        same_a = _same_output(model_a, inputs, [a for a, _ in pairs])
        same_b = _same_output(model_b, inputs, [b for _, b in pairs])
    except Exception:  # the probe is an optimisation: without it every row is measured
        return {}
    sources = [p for p in pairs if p[0] not in through_a or p[1] not in through_b]
    copies = {}
    for a, b in candidates:
        for src_a, src_b in sources:
            if src_a in same_a.get(a, ()) and src_b in same_b.get(b, ()):
                copies[a] = src_a
                break
    return copies


def _same_output(model: nn.Module, inputs: Any, names: Sequence[str]) -> dict[str, set[str]]:
    """For each module, the other modules whose last output on two rows is the same tensor."""
    outputs: dict[str, Any] = {}
    handles = []
    for name in dict.fromkeys(names):

        def hook(_m: nn.Module, _args: Any, output: Any, name: str = name) -> None:
            outputs[name] = first_tensor(output)

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        rows = min(2, n_rows(inputs))
        batch = slice_rows(inputs, 0, rows, model_dtype(model), model_device(model))
        with eval_mode(model):
            call_model(model, batch)
    finally:
        for h in handles:
            h.remove()
    live = {k: v for k, v in outputs.items() if v is not None}
    return {k: {o for o, w in live.items() if o != k and w is v} for k, v in live.items()}


def _matrix_within_budget(
    widths_a: dict[str, int], widths_b: dict[str, int], n: int, memory_budget: int
) -> CKAMatrix:
    """A CKA matrix accumulator for these layers, or a MemoryError saying what to do."""
    need = cka_memory_estimate(list(widths_a.values()), list(widths_b.values()), n=n)["total"]
    if need > memory_budget:
        raise MemoryError(
            f"a CKA matrix of {len(widths_a)} x {len(widths_b)} layers over {n} "
            f"instances needs about {need / 2**30:.1f} GiB; pass fewer modules or "
            "raise memory_budget"
        )
    return CKAMatrix(list(widths_a), list(widths_b), n=n)


def cka_between(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: torch.Tensor | dict[str, torch.Tensor],
    modules_a: Sequence[str],
    modules_b: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    matrix: bool = False,
    memory_budget: int = 4 << 30,
) -> pd.Series | pd.DataFrame:
    """Exact linear CKA of module outputs over all instances, streaming both models.

    With ``matrix=False`` the i-th module of a is compared with the i-th of b (a
    Series indexed by a's names); with ``matrix=True`` every module of a with every
    module of b (a DataFrame). Token sequences are mean-pooled over real tokens.
    A module that is never called as a module, or whose output has no row per
    instance, gets NaN; the reasons are in the result's
    ``attrs["unavailable"]`` (``{"a": {name: reason}, "b": {...}}``).
    """
    modules_b = list(modules_a if modules_b is None else modules_b)
    modules_a = list(modules_a)
    if not matrix and len(modules_a) != len(modules_b):
        raise ValueError("pairwise CKA needs as many modules of a as of b")
    n = next(iter(inputs.values())).shape[0] if isinstance(inputs, dict) else inputs.shape[0]
    gone_a: dict[str, str] = {}
    gone_b: dict[str, str] = {}
    stream_a = iter_activations(
        model_a, inputs, list(dict.fromkeys(modules_a)), batch_size=batch_size, unavailable=gone_a
    )
    stream_b = iter_activations(
        model_b, inputs, list(dict.fromkeys(modules_b)), batch_size=batch_size, unavailable=gone_b
    )
    if matrix:
        acc = None
        for acts_a, acts_b in zip(stream_a, stream_b, strict=True):
            if acc is None:
                live_a = [m for m in modules_a if m in acts_a]
                live_b = [m for m in modules_b if m in acts_b]
                if not live_a or not live_b:
                    break
                acc = _matrix_within_budget(
                    {m: acts_a[m].shape[1] for m in live_a},
                    {m: acts_b[m].shape[1] for m in live_b},
                    n,
                    memory_budget,
                )
            dropped = [m for m in acc.names_a if m not in acts_a]
            dropped += [m for m in acc.names_b if m not in acts_b]
            if dropped:
                raise EvaluationError(
                    f"modules {dropped} produced outputs in some batches but not in others; "
                    "choose modules that run on every input for a CKA matrix"
                )
            acc.update(acts_a, acts_b)
        result = (
            pd.DataFrame(np.nan, index=modules_a, columns=modules_b)
            if acc is None
            else acc.result().reindex(index=modules_a, columns=modules_b)
        )
    else:
        accs = [LinearCKA(n=n) for _ in modules_a]
        for acts_a, acts_b in zip(stream_a, stream_b, strict=True):
            for acc, ma, mb in zip(accs, modules_a, modules_b, strict=True):
                if ma in acts_a and mb in acts_b:
                    acc.update(acts_a[ma], acts_b[mb])
        values = [
            np.nan if ma in gone_a or mb in gone_b else acc.result()
            for acc, ma, mb in zip(accs, modules_a, modules_b, strict=True)
        ]
        result = pd.Series(values, index=modules_a, name="cka", dtype=float)
    result.attrs["unavailable"] = {"a": gone_a, "b": gone_b}
    return result


def _activation_pass(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: torch.Tensor | dict[str, torch.Tensor],
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int,
    cka_modules: tuple[Sequence[str], Sequence[str]] | None = None,
    memory_budget: int = 4 << 30,
) -> tuple[
    dict[str, dict[str, float]], dict[str, str], dict[str, float], pd.DataFrame | None
]:
    """One forward pass of each model per batch for every activation measure.

    Returns the :data:`ACTIVATION_MEASURES` per pair (``||act_b - act_a|| / ||act_a||``,
    ``mean |act_b - act_a|``, ``mean |act_a|``, ``mean |act_b|``; padded tokens are
    zeroed by :func:`reduce_output` and left out of the means' counts), the reasons for
    NaN, linear CKA per pair (all keyed by a's name) and, with ``cka_modules``, the CKA
    matrix exactly as :func:`cka_between` with ``matrix=True`` gives it. Each hooked
    output is reduced twice (element-wise for the change, pooled over tokens for CKA);
    only running sums are kept. A pair whose modules are both in the matrix takes its
    CKA from it, so self terms (X^T X or the N x N Gram) are accumulated once per module.
    """
    mat_a, mat_b = ([], []) if cka_modules is None else (list(cka_modules[0]), list(cka_modules[1]))
    n = next(iter(inputs.values())).shape[0] if isinstance(inputs, dict) else inputs.shape[0]
    gone_a: dict[str, str] = {}
    gone_b: dict[str, str] = {}
    both = ("flatten", "auto")
    stream_a = iter_activations(
        model_a,
        inputs,
        list(dict.fromkeys([a for a, _ in pairs] + mat_a)),
        batch_size=batch_size,
        flatten=both,
        unavailable=gone_a,
    )
    stream_b = iter_activations(
        model_b,
        inputs,
        list(dict.fromkeys([b for _, b in pairs] + mat_b)),
        batch_size=batch_size,
        flatten=both,
        unavailable=gone_b,
    )
    in_matrix = {p for p in pairs if p[0] in mat_a and p[1] in mat_b}
    ckas = {p: LinearCKA(n=n) for p in pairs if p not in in_matrix}
    sq_diff = dict.fromkeys(pairs, 0.0)
    sq_ref = dict.fromkeys(pairs, 0.0)
    # L1 sums and element counts for the means: |b - a|, |a|, |b|.
    l1_diff, l1_a, l1_b = (dict.fromkeys(pairs, 0.0) for _ in range(3))
    count_a, count_b = dict.fromkeys(pairs, 0), dict.fromkeys(pairs, 0)
    shape_changed: set[tuple[str, str]] = set()
    acc: CKAMatrix | None = None
    first = True
    mask_all = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    start = 0
    for acts_a, acts_b in zip(stream_a, stream_b, strict=True):
        rows = min(batch_size, n - start)
        real = None if mask_all is None else int(mask_all[start : start + rows].sum())
        start += rows
        if first and cka_modules is not None:
            live_a = [m for m in mat_a if m in acts_a]
            live_b = [m for m in mat_b if m in acts_b]
            if live_a and live_b:
                acc = _matrix_within_budget(
                    {m: acts_a[m][1].shape[1] for m in live_a},
                    {m: acts_b[m][1].shape[1] for m in live_b},
                    n,
                    memory_budget,
                )
        first = False
        for pair in pairs:
            xa, xb = acts_a.get(pair[0]), acts_b.get(pair[1])
            if xa is None or xb is None:
                continue
            (fa, pa), (fb, pb) = xa, xb
            flat_a = fa.reshape(-1)
            sq_ref[pair] += float(torch.dot(flat_a, flat_a))
            l1_a[pair] += float(torch.linalg.vector_norm(flat_a, 1))
            l1_b[pair] += float(torch.linalg.vector_norm(fb.reshape(-1), 1))
            count_a[pair] += _real_elements(fa, pa, real)
            count_b[pair] += _real_elements(fb, pb, real)
            if fa.shape == fb.shape:
                d = (fb - fa).reshape(-1)
                sq_diff[pair] += float(torch.dot(d, d))
                l1_diff[pair] += float(torch.linalg.vector_norm(d, 1))
            else:
                shape_changed.add(pair)
            if pair in ckas:
                ckas[pair].update(pa, pb)
        if acc is not None:
            dropped = [m for m in acc.names_a if m not in acts_a]
            dropped += [m for m in acc.names_b if m not in acts_b]
            if dropped:
                raise EvaluationError(
                    f"modules {dropped} produced outputs in some batches but not in others; "
                    "choose modules that run on every input for a CKA matrix"
                )
            acc.update([acts_a[m][1] for m in acc.names_a], [acts_b[m][1] for m in acc.names_b])
    matrix = None
    if cka_modules is not None:
        matrix = (
            pd.DataFrame(np.nan, index=mat_a, columns=mat_b)
            if acc is None
            else acc.result().reindex(index=mat_a, columns=mat_b)
        )
        matrix.attrs["unavailable"] = {
            "a": {k: v for k, v in gone_a.items() if k in mat_a},
            "b": {k: v for k, v in gone_b.items() if k in mat_b},
        }
    measures: dict[str, dict[str, float]] = {}
    notes, cka = {}, {}
    for pair in pairs:
        in_a, in_b = gone_a.get(pair[0]), gone_b.get(pair[1])
        if in_a is not None and in_a == in_b:
            why = [in_a]  # the usual case: the same module, unused the same way in both
        else:
            why = [f"{in_a} in a"] if in_a else []
            why += [f"{in_b} in b"] if in_b else []
        if in_a or in_b:
            cka[pair[0]] = np.nan
        elif pair in ckas:
            cka[pair[0]] = ckas[pair].result()
        else:
            cka[pair[0]] = float(matrix.loc[pair[0], pair[1]])
        row = dict.fromkeys(ACTIVATION_MEASURES, np.nan)
        if not (in_a or in_b):
            row["activation_mean_abs_a"] = l1_a[pair] / count_a[pair] if count_a[pair] else np.nan
            row["activation_mean_abs_b"] = l1_b[pair] / count_b[pair] if count_b[pair] else np.nan
        if pair in shape_changed:
            why.append("output shape changed")
        if why:
            notes[pair[0]] = "; ".join(why)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                row["activation_rel_change"] = float(
                    np.sqrt(np.float64(sq_diff[pair]) / sq_ref[pair])
                )
            row["activation_mean_abs_change"] = (
                l1_diff[pair] / count_a[pair] if count_a[pair] else np.nan
            )
        measures[pair[0]] = row
    return measures, notes, cka, matrix


def _real_elements(flat: torch.Tensor, pooled: torch.Tensor, real_tokens: int | None) -> int:
    """Elements of one reduced output that are not padding.

    :func:`reduce_output` zeroes padded tokens in the flattened output and pools token
    sequences to one row of width d per instance, so a flattened width other than the
    pooled one marks a token output: its real elements are (real tokens) x d.
    """
    if real_tokens is not None and flat.shape[1] != pooled.shape[1]:
        return real_tokens * pooled.shape[1]
    return flat.numel()


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


def _join(*parts: str) -> str:
    return "; ".join(dict.fromkeys(p for p in parts if p))


def layer_table(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: torch.Tensor | dict[str, torch.Tensor],
    *,
    batch_size: int = 64,
    activations: bool = True,
    correspondence: ModuleCorrespondence | None = None,
    activation_only: bool = True,
) -> pd.DataFrame:
    """One row per module with parameters, in either model (b compared with a).

    Parameters
    ----------
    model_a, model_b
        The reference and the compared model.
    inputs
        The evaluation inputs; activations are compared over all of them.
    batch_size
        Rows per forward pass.
    activations
        Compare outputs (``activation_rel_change``, ``cka``); else those columns are NaN.
    correspondence
        Which module of b each module of a became (renamed or removed blocks), from
        :func:`cnc_widgets.provenance.module_correspondence`; default: same name.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``module`` (a's dotted name; b's for a module only in b, suffixed
        ``" (b)"`` in the rare case that name is already taken by a row of a).
        Columns: ``kind`` (the module's class), ``params``, ``zero_both``,
        ``zero_a_only``, ``zero_b_only`` (fractions of the module's parameter elements
        that are zero in both, only in a, only in b), ``sparsity_a``, ``sparsity_b``,
        ``weight_rel_change`` (``||w_b - w_a|| / ||w_a||`` over the module's
        parameters), ``activation_rel_change`` (the same over its outputs on all of
        ``inputs``), ``cka`` (linear CKA of its outputs, exact over all instances),
        ``module_b`` (b's name of the module, or None), ``status`` (``"both"``,
        ``"only_a"``, ``"only_b"``) and ``note``: empty when every cell is filled,
        otherwise why some are empty (``"removed by drop_layers"``, ``"not called as
        a module in a"``, ``"output not per instance in a"``, ``"weights changed
        shape"``, ...); ``"factorised by low_rank"`` marks a LowRankLinear compared
        through the product of its factors. Both models run over ``inputs`` once.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> table = layer_table(net, net, torch.randn(16, 3))
    >>> table[["status", "weight_rel_change"]].to_dict("list")
    {'status': ['both', 'both'], 'weight_rel_change': [0.0, 0.0]}
    """
    table, _ = layers_and_cka(
        model_a,
        model_b,
        inputs,
        batch_size=batch_size,
        activations=activations,
        correspondence=correspondence,
        activation_only=activation_only,
    )
    return table


def layers_and_cka(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: torch.Tensor | dict[str, torch.Tensor],
    *,
    batch_size: int = 64,
    activations: bool = True,
    correspondence: ModuleCorrespondence | None = None,
    cka_modules: tuple[Sequence[str], Sequence[str]] | None = None,
    memory_budget: int = 4 << 30,
    activation_only: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """:func:`layer_table` and, from the same forward passes, a CKA matrix.

    ``cka_modules=(modules_a, modules_b)`` also fills the CKA matrix of those modules
    (the value :func:`cka_between` with ``matrix=True`` gives); without it the second
    value is None.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> table, matrix = layers_and_cka(net, net, torch.randn(16, 3), cka_modules=(["0"], ["2"]))
    >>> matrix.shape
    (1, 1)
    """
    # Dequantizing int8 weights costs a pass over the model: do it once per model.
    wa, wb = module_weights(model_a), module_weights(model_b)
    act_a = activation_only_modules(model_a, wa) if activation_only else []
    act_b = activation_only_modules(model_b, wb) if activation_only else []
    rows_a, rows_b = _in_module_order(model_a, wa, act_a), _in_module_order(model_b, wb, act_b)
    forward = correspondence or ModuleCorrespondence()
    backward = forward.reversed()
    partner: dict[str, str | None] = {}
    notes: dict[str, str] = {}
    for name in rows_a:
        target, why = forward.map(name)
        # A module pairs with one of the same sort: parameters with parameters.
        same_sort = wb if name in wa else act_b
        partner[name] = target if target in same_sort else None
        if partner[name] is None:
            notes[name] = why or "not in b"
    paired_b = {t for t in partner.values() if t is not None}
    order_b = {name: i for i, name in enumerate(rows_b)}
    rows: list[dict] = []

    def no_params(row: dict, status: str, target: str | None, note: str) -> dict:
        row.update(row_type=ACTIVATION_ONLY, params=0, module_b=target, status=status)
        row.update(dict.fromkeys(["zero_both", "zero_a_only", "zero_b_only"], np.nan))
        row.update(dict.fromkeys(["sparsity_a", "sparsity_b", *WEIGHT_MEASURES], np.nan))
        row["note"] = _join(note, "no parameters")
        return row

    def only_b(name: str) -> None:
        _, why = backward.map(name)
        row = {"module": name, "kind": type(model_b.get_submodule(name)).__name__}
        if name not in wb:
            rows.append(no_params(row, "only_b", name, why or "not in a"))
            return
        row.update(_empty_weight_row(wb[name], "b"))
        row.update(row_type=PARAMETERS, module_b=name, status="only_b", note=why or "not in a")
        rows.append(row)

    pending_b = [name for name in rows_b if name not in paired_b]
    for name in rows_a:
        target = partner[name]
        if target is not None:
            while pending_b and order_b[pending_b[0]] < order_b[target]:
                only_b(pending_b.pop(0))
        row = {"module": name, "kind": type(model_a.get_submodule(name)).__name__}
        if name not in wa:
            status = "only_a" if target is None else "both"
            rows.append(no_params(row, status, target, notes.get(name, "")))
            continue
        row["row_type"] = PARAMETERS
        if target is None:
            row.update(_empty_weight_row(wa[name], "a"))
            row.update(module_b=None, status="only_a", note=notes[name])
        else:
            row.update(_weight_row(wa[name], wb[target]))
            factorised = any(
                isinstance(m.get_submodule(n), LowRankLinear)
                for m, n in ((model_a, name), (model_b, target))
            )
            note = "factorised by low_rank" if factorised else ""
            if np.isnan(row["weight_rel_change"]):
                note = _join(note, "weights changed shape")
            row.update(module_b=target, status="both", note=note)
        rows.append(row)
    for name in pending_b:
        only_b(name)
    names_a = set(rows_a)
    for row in rows:
        if row["status"] == "only_b" and row["module"] in names_a:
            row["module"] = f"{row['module']} (b)"
    table = pd.DataFrame(rows, columns=LAYER_COLUMNS).set_index("module")
    table[ACTIVATION_MEASURES] = np.nan
    table["cka"] = np.nan
    both = table[table["status"] == "both"]
    pairs = list(zip(both.index, both["module_b"], strict=True))
    # Dropout, Identity, ... that hand on the very tensor a measured module returned
    # repeat that module's numbers: copied, not measured again (no cost per row).
    copies = _copied_pairs(model_a, model_b, inputs, pairs, act_a, act_b) if activations else {}
    measured_pairs = [p for p in pairs if p[0] not in copies]
    matrix = None
    if (activations and pairs) or cka_modules is not None:
        measured, why, by_pair, matrix = _activation_pass(
            model_a,
            model_b,
            inputs,
            measured_pairs if activations else [],
            batch_size=batch_size,
            cka_modules=cka_modules,
            memory_budget=memory_budget,
        )
    if activations and pairs:
        for name, source in copies.items():
            measured[name], by_pair[name] = measured[source], by_pair[source]
            if source in why:
                why[name] = why[source]
        values = pd.DataFrame.from_dict(measured, orient="index")
        table.loc[values.index, ACTIVATION_MEASURES] = values[ACTIVATION_MEASURES]
        cka = pd.Series(by_pair, dtype=float)[both.index]
        table.loc[both.index, "cka"] = cka.to_numpy()
        for name, reason in why.items():
            table.loc[name, "note"] = _join(table.loc[name, "note"], reason)
        for name in both.index[cka.isna().to_numpy()]:
            if name not in why:
                table.loc[name, "note"] = _join(
                    table.loc[name, "note"], "constant output (CKA undefined)"
                )
    elif not activations:
        table.loc[both.index, "note"] = [_join(n, "activations not compared") for n in both["note"]]
    table["params"] = table["params"].astype(np.int64)
    table["module_b"] = table["module_b"].astype(object).where(table["module_b"].notna(), None)
    return table[LAYER_COLUMNS[1:]], matrix


def default_cka_modules(model: nn.Module) -> list[str]:
    """Representative modules for a CKA matrix: encoder blocks, else modules with weights."""
    from ..compress.encoder_layers import find_encoder_layers

    try:
        prefix, _owner, _attr, layers = find_encoder_layers(model)
    except ValueError:
        return list(module_weights(model))
    blocks = [f"{prefix}.{i}" for i in range(len(layers))]
    embeddings = [
        n
        for n, m in model.named_modules()
        if n.endswith("embeddings") and not isinstance(m, nn.Embedding)
    ]
    return embeddings[:1] + blocks
