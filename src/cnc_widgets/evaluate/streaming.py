"""Module activations, one batch at a time: :func:`iter_activations`.

Nothing here keeps more than one batch of activations, so any per-layer comparison
(CKA cross products, norms of differences) can stream over all instances. Hooks are
removed and every module's train/eval mode restored on the way out, so streams can run
side by side (two models on the same batches) or in separate workers.

Example
-------
>>> import torch
>>> from cnc_widgets.evaluate.streaming import iter_activations
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU())
>>> [tuple(b["1"].shape) for b in iter_activations(model, torch.randn(5, 3), ["1"], batch_size=4)]
[(4, 5), (1, 5)]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .errors import EvaluationError
from .model_io import (
    Inputs,
    call_model,
    describe,
    eval_mode,
    model_device,
    model_dtype,
    n_rows,
    slice_rows,
)
from .modules import (
    BatchMask,
    Flatten,
    batch_layout,
    dense_encoders,
    first_tensor,
    per_instance,
    reduce_output,
    reduce_outputs,
    submodule,
    token_mask,
)

__all__ = ["iter_activations"]


def iter_activations(
    model: nn.Module,
    inputs: Inputs,
    modules: Sequence[str],
    *,
    batch_size: int = 64,
    flatten: Flatten | tuple[Flatten, ...] = "auto",
    unavailable: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield, batch by batch, the outputs of chosen modules as ``(B, p)`` float32 tensors.

    Only one batch of activations exists at a time, so any per-layer comparison (CKA
    cross products, norms of differences) can stream over all instances. Each module's
    output is reduced by :func:`.modules.reduce_output` with the given ``flatten`` rule
    (token sequences: mean over real tokens, see :func:`.modules.token_mask`). A module
    called several times in one forward pass reports its last call; a module that returns a
    tuple reports its first tensor, and a sequence-first output ``(L, B, ...)`` is read as
    ``(B, L, ...)``.

    Parameters
    ----------
    model
        Evaluated in eval mode under ``torch.inference_mode``.
    inputs
        A tensor ``(N, ...)`` (called as ``model(batch)``) or a dict of tensors with N
        rows (called as ``model(**batch)``).
    modules
        Dotted module names (``model.get_submodule`` paths).
    batch_size
        Rows per forward pass.
    flatten
        ``"auto"``, ``"flatten"`` or ``"pool"``, see :func:`.modules.reduce_output`; a tuple of
        them gives each module a tuple of reductions of one output, in that order (one
        forward pass serving, say, element-wise change and pooled CKA).
    unavailable
        Without it, a module that produces no tensor raises :class:`EvaluationError`.
        With a dict, such a module (its weights used through a functional call, as
        ``nn.MultiheadAttention`` does with ``out_proj``, or never called at all), and
        one whose output has no row per instance (see :func:`.modules.per_instance`), is left
        out of this and every later batch, its reason recorded here:
        ``"not called as a module"`` or ``"output not per instance"``.

    Yields
    ------
    dict[str, torch.Tensor]
        Module name -> ``(B, p)`` tensor for rows ``[i * batch_size, (i + 1) * batch_size)``.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU())
    >>> batches = list(iter_activations(model, torch.randn(10, 3), ["0"], batch_size=4))
    >>> [b["0"].shape[0] for b in batches]
    [4, 4, 2]
    """
    n = n_rows(inputs)
    mask_all = token_mask(model, inputs)
    captured: dict[str, torch.Tensor] = {}
    layouts: dict[str, str | None] = {}  # decided on the first (largest) batch
    handles = []
    for name in modules:

        def hook(_m: nn.Module, _args: Any, output: Any, name: str = name) -> None:
            t = first_tensor(output)
            if t is not None:
                captured[name] = t

        handles.append(submodule(model, name).register_forward_hook(hook))
    dtype, device = model_dtype(model), model_device(model)
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = slice_rows(inputs, start, stop, dtype, device)
            captured.clear()
            # Modes are set per batch, not across the yield, so that the caller's code
            # between batches (and a second stream interleaved with this one) runs in
            # whatever grad and train/eval mode it had.
            with eval_mode(model), dense_encoders(model):
                try:
                    call_model(model, batch)
                except Exception as exc:
                    raise EvaluationError(
                        f"forward pass failed on batch {start // batch_size} (rows {start}:{stop}, "
                        f"inputs {describe(batch)}): {type(exc).__name__}: {exc}"
                    ) from exc
                mask = None if mask_all is None else BatchMask.of(mask_all[start:stop])
                missing = [m for m in modules if m not in captured]
                if missing and unavailable is None:
                    raise EvaluationError(f"modules produced no tensor output: {missing}")
                acts = {}
                for m in modules:
                    if unavailable is not None and m in unavailable:
                        continue
                    t = captured.get(m)
                    if t is None:
                        unavailable[m] = "not called as a module"
                        continue
                    if m not in layouts:
                        layouts[m] = batch_layout(t, stop - start)
                    rows = per_instance(t, stop - start, layouts[m])
                    if rows is None:
                        if unavailable is None:
                            raise EvaluationError(
                                f"module {m!r} returned {tuple(t.shape)} for a batch of "
                                f"{stop - start}: its output has no row per instance"
                            )
                        unavailable[m] = "output not per instance"
                        continue
                    if isinstance(flatten, tuple):
                        acts[m] = reduce_outputs(rows, mask, flatten)
                    else:
                        acts[m] = reduce_output(rows, mask, flatten)
            yield acts
    finally:
        for h in handles:
            h.remove()
