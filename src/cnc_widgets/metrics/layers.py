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

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..compress.low_rank import LowRankLinear
from ..evaluate.errors import EvaluationError
from ..evaluate.modules import token_mask
from ..evaluate.stats import compiled_kernels
from ..evaluate.streaming import iter_activations
from ..provenance import ModuleCorrespondence
from .activation_rows import _copied_pairs, _in_module_order, activation_only_modules
from .cka import CKAMatrix, LinearCKA
from .layer_cka import _matrix_within_budget, cka_between, default_cka_modules
from .weights import (
    WEIGHT_MEASURES,
    _empty_weight_row,
    _weight_row,
    element_change_fractions,
    module_weights,
)

__all__ = [
    "activation_only_modules",
    "cka_between",
    "default_cka_modules",
    "element_change_fractions",
    "layer_table",
    "layers_and_cka",
    "module_weights",
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


def _activation_pass(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: torch.Tensor | dict[str, torch.Tensor],
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int,
    cka_modules: tuple[Sequence[str], Sequence[str]] | None = None,
    memory_budget: int = 4 << 30,
) -> tuple[dict[str, dict[str, float]], dict[str, str], dict[str, float], pd.DataFrame | None]:
    """One forward pass of each model per batch for every activation measure.

    Returns the :data:`ACTIVATION_MEASURES` per pair (``||act_b - act_a|| / ||act_a||``,
    ``mean |act_b - act_a|``, ``mean |act_a|``, ``mean |act_b|``; padded tokens are
    left out of the sums and of the means' counts), the reasons for
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
    both = ("tokens", "auto")
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
    mask_all = token_mask(model_a, inputs)
    start = 0
    for acts_a, acts_b in zip(stream_a, stream_b, strict=True):
        rows = min(batch_size, n - start)
        real_mask = None if mask_all is None else mask_all[start : start + rows].bool()
        real = None if real_mask is None else int(real_mask.sum())
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
            aa, la, lb, dd, ld = _pair_sums(fa, fb, real_mask)
            sq_ref[pair] += aa
            l1_a[pair] += la
            l1_b[pair] += lb
            count_a[pair] += _real_elements(fa, real)
            count_b[pair] += _real_elements(fb, real)
            if dd is None:
                shape_changed.add(pair)
            else:
                sq_diff[pair] += dd
                l1_diff[pair] += ld
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


def _pair_sums(
    fa: torch.Tensor, fb: torch.Tensor, real: torch.Tensor | None
) -> tuple[float, float, float, float | None, float | None]:
    """``(sum a^2, sum |a|, sum |b|, sum (b - a)^2, sum |b - a|)`` of two reduced outputs
    over their real elements; the last two are None when their shapes differ.

    A token output comes as ``(B, L, p)`` (reduction ``"tokens"``) and only the tokens
    where ``real`` ``(B, L)`` is True count; any other output is ``(B, p)``. One compiled
    pass on the CPU (:mod:`~cnc_widgets.evaluate.kernels`, float64 sums), torch otherwise.
    """
    same = fa.shape == fb.shape
    tokens = fa.dim() == 3 and real is not None
    kernels = compiled_kernels()
    if same and kernels is not None and fa.device.type == fb.device.type == "cpu":
        a = fa.detach().reshape(-1).contiguous().numpy()
        b = fb.detach().reshape(-1).contiguous().numpy()
        if tokens:
            flags = real.reshape(-1).contiguous().numpy()
            return kernels.pair_sums_tokens(a, b, flags, fa.shape[2])
        return kernels.pair_sums(a, b)  # one token: the whole output
    if tokens:
        fa = fa * real.to(fa.device, fa.dtype).unsqueeze(-1)
        fb = fb * real.to(fb.device, fb.dtype).unsqueeze(-1)
    flat_a, flat_b = fa.reshape(-1).double(), fb.reshape(-1).double()
    sums = [torch.dot(flat_a, flat_a), flat_a.abs().sum(), flat_b.abs().sum()]
    if same:
        d = flat_b - flat_a
        sums += [torch.dot(d, d), d.abs().sum()]
    out = [float(v) for v in sums]
    return (*out, None, None) if not same else tuple(out)


def _real_elements(out: torch.Tensor, real_tokens: int | None) -> int:
    """Elements of one reduced output that are not padding: a token output ``(B, L, p)``
    (reduction ``"tokens"``) has (real tokens) x p, any other all its elements."""
    if real_tokens is not None and out.dim() == 3:
        return real_tokens * out.shape[2]
    return out.numel()


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
