"""CKA between the layers of two models over the whole evaluation set: the default modules
(transformer blocks, else every module with weights) and the matrix of layers x layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..evaluate.errors import EvaluationError
from ..evaluate.streaming import iter_activations
from .cka import CKAMatrix, LinearCKA, cka_memory_estimate
from .weights import module_weights


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
