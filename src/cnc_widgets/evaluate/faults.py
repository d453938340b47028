"""Naming what went wrong in an evaluation: the model, batch, rows and module that raised
or produced NaN/inf, found by re-running only the failing batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .embedding import _candidates  # noqa: F401
from .errors import EvaluationError, NonFinite
from .model_io import (
    Inputs,
    call_model,
    describe,
    slice_rows,
)
from .modules import first_tensor


def _non_finite(model: nn.Module, name: str, exc: NonFinite) -> EvaluationError:
    """The error for a NaN/inf module output, naming the model, module and batch."""
    b, start, stop, batch = exc.batch
    return EvaluationError(
        f"model {name!r}: non-finite output ({exc.value}) in module "
        f"{exc.module!r} ({_kind(model, exc.module)}) on batch {b} "
        f"(rows {start}:{stop}, inputs {describe(batch)})"
    )


def locate_exception(model: nn.Module, batch: Inputs) -> str | None:
    """Re-run a failing batch once; the innermost module that raised, if it does again."""
    stack: list[str] = []

    def leave(_m: nn.Module, _a: Any, _o: Any) -> None:
        stack.pop()  # a hook that returned the popped name would replace the output

    handles = []
    for mname, module in model.named_modules():
        if not mname:
            continue
        handles.append(
            module.register_forward_pre_hook(lambda _m, _a, mname=mname: stack.append(mname))
        )
        handles.append(module.register_forward_hook(leave))
    try:
        with torch.inference_mode():
            call_model(model, batch)
    except Exception:
        return stack[-1] if stack else None
    finally:
        for h in handles:
            h.remove()
    return None


def locate_nonfinite(model: nn.Module, batch: Inputs) -> str | None:
    """Re-run a batch once; the first module (in execution order) with NaN/inf output."""
    hits: list[str] = []

    def hook(name: str) -> Any:
        def check(_m: nn.Module, _a: Any, output: Any) -> None:
            t = first_tensor(output)
            if (
                not hits
                and t is not None
                and t.is_floating_point()
                and not bool(torch.isfinite(t).all())
            ):
                hits.append(name)

        return check

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.inference_mode():
            call_model(model, batch)
    except Exception:
        return None
    finally:
        for h in handles:
            h.remove()
    return hits[0] if hits else None


def _check_finite(
    model: nn.Module,
    inputs: Inputs,
    name: str,
    batch_size: int,
    cast: tuple[torch.dtype | None, torch.device | None],
    outputs: dict[str, np.ndarray],
    emb: np.ndarray,
) -> None:
    # One vectorised check after the loop keeps the per-batch path free of syncs; the
    # module is then found by re-running only the first bad batch.
    floating = {k: v.reshape(len(v), -1) for k, v in outputs.items() if v.dtype.kind == "f"}
    bad = ~np.isfinite(emb).all(1)
    for value in floating.values():
        bad |= ~np.isfinite(value).all(1)
    if not bad.any():
        return
    b = int(np.flatnonzero(bad)[0]) // batch_size
    start, stop = b * batch_size, min((b + 1) * batch_size, len(emb))
    batch = slice_rows(inputs, start, stop, *cast)
    module = locate_nonfinite(model, batch)
    where = (
        f"first in module {module!r} ({_kind(model, module)})"
        if module
        else "not reproduced by any module output when the batch was re-run"
    )
    what = next(
        (k for k, v in floating.items() if not np.isfinite(v[start:stop]).all()), "embeddings"
    )
    raise EvaluationError(
        f"model {name!r}: non-finite {what} on batch {b} (rows {start}:{stop}, inputs "
        f"{describe(batch)}), {where}"
    )


def _kind(model: nn.Module, module: str | None) -> str:
    return type(model.get_submodule(module)).__name__ if module else "?"
