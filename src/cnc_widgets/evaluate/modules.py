"""Which modules of a model are read, and how one module output becomes per-instance rows.

:func:`leaf_modules` names the modules worth hooking; :func:`first_tensor`,
:func:`batch_layout` and :func:`per_instance` find the instances in whatever a module
returns (tuples, sequence-first outputs, outputs broadcast over the batch), and
:func:`reduce_output` turns them into a float32 ``(B, p)`` matrix.

Example
-------
>>> import torch
>>> from cnc_widgets.evaluate.modules import leaf_modules, reduce_output
>>> leaf_modules(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten()))
['0']
>>> reduce_output(torch.ones(4, 2, 3, 3), None, "pool").shape
torch.Size([4, 2])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

__all__ = [
    "BatchMask",
    "Flatten",
    "batch_layout",
    "first_tensor",
    "is_packed_params",
    "leaf_modules",
    "per_instance",
    "reduce_output",
    "reduce_outputs",
    "submodule",
    "token_mask",
]

Flatten = Literal["auto", "flatten", "pool", "tokens"]

# Modules that, in eval mode, only pass their input on or reshape it: their output
# statistics repeat those of the module before, so they are not hooked by default.
_PASS_THROUGH = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
)


def first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module produced: itself, the first of a tuple or model output."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    return None


def batch_layout(t: torch.Tensor, rows: int) -> str | None:
    """Where the instances of a batch of ``rows`` are in a module output ``t``.

    ``"batch"`` for ``(B, ...)``; ``"sequence"`` for a sequence-first ``(L, B, ...)``
    (``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` without
    ``batch_first``); ``None`` for an output broadcast over the batch (BERT's position
    embeddings, ``(1, L, d)``) or a scalar. Decide it on a full batch: when ``L``
    equals the number of rows the two layouts look alike.
    """
    if t.dim() == 0:
        return None
    if t.shape[0] == rows:
        return "batch"
    if t.dim() >= 3 and t.shape[0] != 1 and t.shape[1] == rows:
        return "sequence"
    return None


def per_instance(t: torch.Tensor, rows: int, layout: str | None = None) -> torch.Tensor | None:
    """``t`` with one leading row per instance of a batch of ``rows``, or ``None``.

    ``layout`` is what :func:`batch_layout` found on an earlier batch of the same
    module (default: decide on this one).
    """
    layout = layout or batch_layout(t, rows)
    if layout == "batch" and t.dim() > 0 and t.shape[0] == rows:
        return t
    if layout == "sequence" and t.dim() >= 2 and t.shape[1] == rows:
        return t.transpose(0, 1)
    return None


def is_packed_params(module: nn.Module) -> bool:
    """Holders of quantized weights (never called; their owner is the layer)."""
    return type(module).__name__.endswith("PackedParams")


def leaf_modules(model: nn.Module, *, pass_through: bool = False) -> list[str]:
    """Dotted names of modules without children (quantized wrappers count as leaves).

    Parameters
    ----------
    model
        Any module.
    pass_through
        Include Dropout, Identity, Flatten and Unflatten, which repeat the activations
        of the module before them in eval mode.

    Examples
    --------
    >>> import torch
    >>> leaf_modules(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()))
    ['0']
    """
    names = []
    for name, module in model.named_modules():
        if not name or is_packed_params(module):
            continue
        if any(not is_packed_params(c) for c in module.children()):
            continue
        if not pass_through and isinstance(module, _PASS_THROUGH):
            continue
        names.append(name)
    return names


def reduce_output(x: torch.Tensor, mask: torch.Tensor | None, flatten: Flatten) -> torch.Tensor:
    """Turn one module output ``(B, ...)`` into a float32 matrix ``(B, p)``.

    ``mask`` is the batch's ``attention_mask`` ``(B, L)`` when the inputs have one; it
    applies to outputs whose first two dimensions are ``(B, L)`` (token sequences).

    - ``"auto"``: token sequences become the masked mean over real tokens ``(B, d)``;
      everything else is flattened.
    - ``"flatten"``: all non-batch dimensions flattened; padded tokens are zeroed so
      they add nothing to norms or cross products.
    - ``"pool"``: token sequences as in ``"auto"``; other outputs with more than two
      dimensions are averaged over dimensions 2 and up (``(B, C, H, W)`` -> ``(B, C)``).
    - ``"tokens"``: token sequences as ``(B, L, p)``, padded tokens left as they are (the
      caller masks them, e.g. the layer table's compiled sums); everything else as in
      ``"flatten"``, 2-D. Saves the masked copy of ``"flatten"``.
    """
    return reduce_outputs(x, mask, (flatten,))[0]


class BatchMask(NamedTuple):
    """One batch's token mask, prepared once for all its module outputs."""

    real: torch.Tensor  # (B, L) float32, 1 at real tokens
    weights: torch.Tensor  # (B, L) float32: real / (real tokens of the row, at least 1)

    @classmethod
    def of(cls, mask: torch.Tensor) -> BatchMask:
        real = mask.to(torch.float32)
        return cls(real, real / real.sum(1, keepdim=True).clamp_min(1.0))


def reduce_outputs(
    x: torch.Tensor, mask: torch.Tensor | BatchMask | None, flattens: tuple[Flatten, ...]
) -> tuple[torch.Tensor, ...]:
    """:func:`reduce_output` of one output under several rules, sharing the work (the
    float32 copy, a token sequence's masked product and its pooled mean).

    ``mask`` may be a :class:`BatchMask` made once per batch (what
    :func:`~cnc_widgets.evaluate.streaming.iter_activations` passes)."""
    x = x.detach()
    if x.dtype != torch.float32:
        x = x.float()
    if x.dim() == 1:
        return (x.unsqueeze(1),) * len(flattens)
    if mask is not None and not isinstance(mask, BatchMask):
        mask = BatchMask.of(mask)
    tokens = mask is not None and x.dim() >= 3 and tuple(x.shape[:2]) == tuple(mask.real.shape)
    if not tokens:  # "tokens" too: no token sequence, 2-D
        return tuple(
            x.flatten(2).mean(2) if f == "pool" and x.dim() > 2 else x.flatten(1)
            for f in flattens
        )
    device = x.device
    masked, pooled = None, None
    out = []
    for f in flattens:
        if f == "tokens":
            out.append(x.reshape(x.shape[0], x.shape[1], -1))
            continue
        if f == "flatten":
            if masked is None:
                shape = (*mask.real.shape, *([1] * (x.dim() - 2)))
                masked = x * mask.real.to(device).reshape(shape)
            out.append(masked.flatten(1))
            continue
        if pooled is None:
            # The mean over real tokens as one batched product: weights (B, 1, L) @ (B, L, p).
            flat = x.reshape(x.shape[0], x.shape[1], -1)
            pooled = torch.bmm(mask.weights.to(device).unsqueeze(1), flat).squeeze(1)
        out.append(pooled)
    return tuple(out)


def token_mask(model: nn.Module, inputs: Any) -> torch.Tensor | None:
    """Which token positions of the inputs are real, ``(N, L)``, or None if they are no tokens.

    Dict inputs: their ``attention_mask``. A 2-D integer tensor is read as token ids
    ``(N, L)``: positions equal to the ``padding_idx`` of the model's first ``nn.Embedding``
    are padding (all positions are real when it declares none), so a model called with ids
    alone has its token outputs pooled over real tokens as with a mask, not flattened into
    ``L x d`` columns.

    Examples
    --------
    >>> emb = nn.Embedding(5, 2, padding_idx=0)
    >>> token_mask(emb, torch.tensor([[3, 4, 0]])).tolist()
    [[True, True, False]]
    >>> token_mask(emb, torch.ones(1, 3)) is None  # floats are no token ids
    True
    """
    if isinstance(inputs, Mapping):
        return inputs.get("attention_mask")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2 or inputs.is_floating_point():
        return None
    if inputs.dtype == torch.bool or inputs.is_complex():
        return None
    embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    pad = None if embedding is None else embedding.padding_idx
    return torch.ones_like(inputs, dtype=torch.bool) if pad is None else inputs != pad


def submodule(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)``, or an error that lists the leaf modules."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(
            f"model {type(model).__name__} has no module {name!r}; "
            f"leaf modules are {leaf_modules(model)}"
        ) from None


@contextlib.contextmanager
def dense_encoders(model: nn.Module) -> Iterator[None]:
    """nn.TransformerEncoder modules pass the padded batch on while inside (no nested
    tensor: the FLOP counter cannot size its operations, and module hooks cannot reshape
    it); restored afterwards. Real tokens' outputs are the same either way."""
    encoders = [
        (m, m.__dict__["use_nested_tensor"])
        for m in model.modules()
        if isinstance(m, nn.TransformerEncoder) and "use_nested_tensor" in m.__dict__
    ]
    for m, _ in encoders:
        m.use_nested_tensor = False
    try:
        yield
    finally:
        for m, value in encoders:
            m.use_nested_tensor = value
