"""Per-module comparison of two models: sparsity masks, weight and activation change, CKA.

Modules are matched by dotted name. Quantized and cast models are unwrapped first:
a dynamic int8 Linear contributes its dequantized weight under the float Linear's
name, half and bfloat16 weights are compared in float32. A module whose tensors
changed shape (structured pruning) keeps its row with NaN weight measures; CKA
still compares its outputs, which need not have the same width.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..compress.tensor_subclass import dequantized
from ..evaluate.activations import iter_activations, n_rows
from .cka import CKAMatrix, LinearCKA, cka_memory_estimate

__all__ = [
    "cka_between",
    "default_cka_modules",
    "layer_table",
    "layers_and_cka",
    "module_weights",
]

LAYER_COLUMNS = [
    "module",
    "kind",
    "params",
    "zero_both",
    "zero_a_only",
    "zero_b_only",
    "sparsity_a",
    "sparsity_b",
    "weight_rel_change",
    "activation_rel_change",
    "cka",
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
    for name, module in model.named_modules():
        if _is_dynamic_linear(module):
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
        }
    a = torch.cat([wa[k].flatten() for k in keys]).double()
    b = torch.cat([wb[k].flatten() for k in keys]).double()
    za, zb = a == 0, b == 0
    n = a.numel()
    norm_a = torch.linalg.vector_norm(a).item()
    change = torch.linalg.vector_norm(b - a).item()
    return {
        "params": int(n),
        "zero_both": (za & zb).sum().item() / n,
        "zero_a_only": (za & ~zb).sum().item() / n,
        "zero_b_only": (~za & zb).sum().item() / n,
        "sparsity_a": za.sum().item() / n,
        "sparsity_b": zb.sum().item() / n,
        "weight_rel_change": change / norm_a if norm_a > 0 else (0.0 if change == 0 else np.inf),
    }


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
    """
    modules_b = list(modules_a if modules_b is None else modules_b)
    modules_a = list(modules_a)
    n = next(iter(inputs.values())).shape[0] if isinstance(inputs, dict) else inputs.shape[0]
    stream_a = iter_activations(model_a, inputs, modules_a, batch_size=batch_size)
    stream_b = iter_activations(model_b, inputs, modules_b, batch_size=batch_size)
    if matrix:
        acc = CKAMatrix(modules_a, modules_b, n=n)
        first = True
        for acts_a, acts_b in zip(stream_a, stream_b, strict=True):
            if first:
                need = cka_memory_estimate(
                    [acts_a[m].shape[1] for m in modules_a],
                    [acts_b[m].shape[1] for m in modules_b],
                    n=n,
                )["total"]
                if need > memory_budget:
                    raise MemoryError(
                        f"a CKA matrix of {len(modules_a)} x {len(modules_b)} layers over {n} "
                        f"instances needs about {need / 2**30:.1f} GiB; pass fewer modules or "
                        "raise memory_budget"
                    )
                first = False
            acc.update(acts_a, acts_b)
        return acc.result()
    if len(modules_a) != len(modules_b):
        raise ValueError("pairwise CKA needs as many modules of a as of b")
    accs = [LinearCKA(n=n) for _ in modules_a]
    for acts_a, acts_b in zip(stream_a, stream_b, strict=True):
        for acc, ma, mb in zip(accs, modules_a, modules_b, strict=True):
            acc.update(acts_a[ma], acts_b[mb])
    return pd.Series([acc.result() for acc in accs], index=modules_a, name="cka", dtype=float)


def layer_table(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: torch.Tensor | dict[str, torch.Tensor],
    *,
    batch_size: int = 64,
    activations: bool = True,
) -> pd.DataFrame:
    """One row per module with parameters in both models (b compared with a).

    Columns: ``kind`` (a's module class), ``params``, ``zero_both``, ``zero_a_only``,
    ``zero_b_only`` (fractions of the module's parameter elements that are zero in
    both, only in a, only in b), ``sparsity_a``, ``sparsity_b``, ``weight_rel_change``
    (``||w_b - w_a|| / ||w_a||`` over the module's parameters), ``activation_rel_change``
    (the same over its outputs on all of ``inputs``) and ``cka`` (linear CKA of its
    outputs, exact over all instances). Both models run over ``inputs`` once.
    """
    table, _ = layers_and_cka(
        model_a, model_b, inputs, batch_size=batch_size, activations=activations
    )
    return table


def layers_and_cka(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: torch.Tensor | dict[str, torch.Tensor],
    *,
    batch_size: int = 64,
    activations: bool = True,
    cka_modules: tuple[Sequence[str], Sequence[str]] | None = None,
    memory_budget: int = 4 << 30,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """:func:`layer_table` and, from the same forward passes, a CKA matrix.

    Each batch runs through each model once; every hooked output is reduced twice
    (element-wise for the activation change, pooled over tokens for CKA) and only
    running sums are kept. ``cka_modules=(modules_a, modules_b)`` also fills the CKA
    matrix of those modules (as :func:`cka_between` with ``matrix=True``); without it
    the second value is None.

    Examples
    --------
    >>> table, matrix = layers_and_cka(a, b, x, cka_modules=(["0", "2"], ["0", "2"]))
    """
    # Dequantizing int8 weights costs a pass over the model: do it once per model.
    wa, wb = module_weights(model_a), module_weights(model_b)
    names = [name for name in wa if name in wb]
    if not names:
        raise ValueError("the two models share no module names with parameters; nothing to compare")
    rows = []
    for name in names:
        row = {"module": name, "kind": type(model_a.get_submodule(name)).__name__}
        row.update(_weight_row(wa[name], wb[name]))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("module")
    matrix = None
    if activations or cka_modules is not None:
        change, cka, matrix = _activation_pass(
            model_a,
            model_b,
            inputs,
            names if activations else [],
            batch_size=batch_size,
            cka_modules=cka_modules,
            memory_budget=memory_budget,
        )
    if activations:
        table["activation_rel_change"] = change
        table["cka"] = cka
    else:
        table["activation_rel_change"] = np.nan
        table["cka"] = np.nan
    return table[[c for c in LAYER_COLUMNS if c in table.columns and c != "module"]], matrix


def _activation_pass(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: torch.Tensor | dict[str, torch.Tensor],
    names: list[str],
    *,
    batch_size: int,
    cka_modules: tuple[Sequence[str], Sequence[str]] | None,
    memory_budget: int,
) -> tuple[pd.Series, pd.Series, pd.DataFrame | None]:
    n = n_rows(inputs)
    mat_a, mat_b = ([], []) if cka_modules is None else (list(cka_modules[0]), list(cka_modules[1]))
    hooked_a = list(dict.fromkeys(names + mat_a))
    hooked_b = list(dict.fromkeys(names + mat_b))
    both = ("flatten", "auto")
    stream_a = iter_activations(model_a, inputs, hooked_a, batch_size=batch_size, flatten=both)
    stream_b = iter_activations(model_b, inputs, hooked_b, batch_size=batch_size, flatten=both)
    sq_diff, sq_ref = np.zeros(len(names)), np.zeros(len(names))
    ckas = [LinearCKA(n=n) for _ in names]
    matrix = CKAMatrix(mat_a, mat_b, n=n) if cka_modules is not None else None
    first = True
    for acts_a, acts_b in zip(stream_a, stream_b, strict=True):
        if matrix is not None and first:
            need = cka_memory_estimate(
                [acts_a[m][1].shape[1] for m in mat_a],
                [acts_b[m][1].shape[1] for m in mat_b],
                n=n,
            )["total"]
            if need > memory_budget:
                raise MemoryError(
                    f"a CKA matrix of {len(mat_a)} x {len(mat_b)} layers over {n} instances "
                    f"needs about {need / 2**30:.1f} GiB; pass fewer modules or raise "
                    "memory_budget"
                )
        first = False
        for i, name in enumerate(names):
            (fa, pa), (fb, pb) = acts_a[name], acts_b[name]
            sq_ref[i] += float(torch.dot(fa.reshape(-1), fa.reshape(-1)))
            if fa.shape == fb.shape:
                d = (fb - fa).reshape(-1)
                sq_diff[i] += float(torch.dot(d, d))
            else:
                sq_diff[i] = np.nan
            ckas[i].update(pa, pb)
        if matrix is not None:
            matrix.update([acts_a[m][1] for m in mat_a], [acts_b[m][1] for m in mat_b])
    with np.errstate(divide="ignore", invalid="ignore"):
        change = pd.Series(np.sqrt(sq_diff / sq_ref), index=names, dtype=float)
    cka = pd.Series([acc.result() for acc in ckas], index=names, name="cka", dtype=float)
    return change, cka, None if matrix is None else matrix.result()


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
