"""What goes into a model and what comes out: inputs on its device and dtype, logits out.

Every part of the library that runs a model (evaluation, efficiency, layer statistics,
attacks) calls :func:`prepare_inputs` (or, batch by batch, :func:`slice_rows`) before,
:func:`call_model` to run it, :func:`extract_logits` after, and holds the model in
:func:`eval_mode` meanwhile, so a model that one of them accepts, all of them accept.

Example
-------
>>> import torch
>>> from cnc_widgets.evaluate.model_io import extract_logits, prepare_inputs
>>> model = torch.nn.Linear(3, 1)
>>> x = prepare_inputs(model, torch.zeros(2, 3, dtype=torch.float64))
>>> x.dtype
torch.float32
>>> extract_logits(model(x)).shape  # one logit: two classes, see extract_logits
torch.Size([2, 2])
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "Inputs",
    "call_model",
    "describe",
    "eval_mode",
    "extract_logits",
    "model_device",
    "model_dtype",
    "n_rows",
    "prepare_inputs",
    "slice_rows",
]

Inputs = torch.Tensor | Mapping[str, torch.Tensor]


def model_dtype(model: nn.Module) -> torch.dtype:
    """dtype of the model's first floating parameter (float32 when it has none).

    A dynamic int8 model keeps float parameters only outside its Linears (or none), and
    its kernels take float32 activations, so float32 is right for it too.
    """
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (the CPU when it has neither).

    Always a device, the CPU included, so a batch left on an accelerator meets a CPU
    model on the CPU.
    """
    t = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if t is None else t.device


def prepare_inputs(model: nn.Module, inputs: Inputs) -> Inputs:
    """``inputs`` on the model's device, floating tensors in the model's dtype.

    Integer and boolean tensors (token ids, attention masks) keep their dtype. float64
    data meets a float32 model as float32, float32 data a half model as float16, and a
    batch on the CPU meets a model on a GPU on the GPU. Tensors that already fit are
    returned as they are (no copy).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Embedding(10, 4).half()
    >>> batch = prepare_inputs(model, {"ids": torch.tensor([[1, 2]]), "w": torch.ones(1, 2)})
    >>> batch["ids"].dtype, batch["w"].dtype
    (torch.int64, torch.float16)
    """
    dtype, device = model_dtype(model), model_device(model)

    def move(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        if t.is_floating_point() and t.dtype != dtype:
            return t.to(device=device, dtype=dtype)
        return t if t.device == device else t.to(device, non_blocking=True)

    if isinstance(inputs, Mapping):
        return {k: move(v) for k, v in inputs.items()}
    return move(inputs)


def n_rows(inputs: Inputs) -> int:
    """Number of instances in a tensor or a mapping of equally long tensors."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0:
            raise ValueError("inputs must have a leading instance dimension, got a scalar")
        return int(inputs.shape[0])
    if not isinstance(inputs, Mapping) or not inputs:
        raise TypeError("inputs must be a Tensor (N, ...) or a non-empty dict of Tensors")
    sizes = {k: int(v.shape[0]) for k, v in inputs.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"all input tensors must have the same number of rows, got {sizes}")
    return next(iter(sizes.values()))


def describe(batch: Inputs) -> str:
    """Shapes and dtypes of a batch, for error messages."""
    if isinstance(batch, torch.Tensor):
        return f"Tensor{tuple(batch.shape)} {batch.dtype}"
    return "{" + ", ".join(f"{k}: {tuple(v.shape)} {v.dtype}" for k, v in batch.items()) + "}"


def slice_rows(
    inputs: Inputs,
    start: int,
    stop: int,
    float_dtype: torch.dtype | None,
    device: torch.device | None = None,
) -> Inputs:
    """Rows ``start:stop``; floating tensors cast to ``float_dtype`` (a half model),
    everything moved to ``device`` when given (:func:`model_device`; a tensor already
    there is not copied). :func:`prepare_inputs` for one slice of a dataset, with the
    model's dtype and device looked up once for all batches."""

    def cut(t: torch.Tensor) -> torch.Tensor:
        t = t[start:stop]
        if float_dtype is not None and t.is_floating_point() and t.dtype != float_dtype:
            t = t.to(float_dtype)
        if device is not None:
            t = t.to(device, non_blocking=True)
        return t

    if isinstance(inputs, torch.Tensor):
        return cut(inputs)
    return {k: cut(v) for k, v in inputs.items()}


def call_model(model: nn.Module, batch: Inputs) -> Any:
    """``model(**batch)`` for a mapping (a dict, a tokenizer's ``BatchEncoding``),
    ``model(batch)`` for anything else."""
    return model(**batch) if isinstance(batch, Mapping) else model(batch)


@contextlib.contextmanager
def eval_mode(model: nn.Module, *, inference: bool | None = True) -> Iterator[None]:
    """``model`` in eval mode inside; every submodule's own ``training`` flag afterwards.

    ``model.train(previous)`` would not do: a model in train mode may hold a frozen
    submodule in eval mode (a BatchNorm kept on its running statistics), and a nested
    block may be in train mode inside an eval model.

    Parameters
    ----------
    model
        Any module; its train/eval flags are read on the way in and put back on the way
        out, whatever happens inside.
    inference
        ``True``: ``torch.inference_mode`` as well; ``False``: ``torch.no_grad``, for
        passes that read weights held as tensor subclasses (torchao's), whose
        ``detach`` fails in inference mode; ``None``: gradients as they are (attacks,
        compression operations that trace or calibrate).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
    >>> model[1].eval()  # doctest: +ELLIPSIS
    Dropout(...)
    >>> with eval_mode(model):
    ...     model.training
    False
    >>> model.training, model[1].training
    (True, False)
    """
    modes = [(m, m.training) for m in model.modules()]
    if any(training for _, training in modes):
        model.eval()
    grad = (
        contextlib.nullcontext()
        if inference is None
        else torch.inference_mode()
        if inference
        else torch.no_grad()
    )
    try:
        with grad:
            yield
    finally:
        for m, training in modes:
            if m.training != training:  # nn.Module.__setattr__ is slow: only what changed
                m.training = training


def _first_tensor(values: Any) -> torch.Tensor | None:
    for item in values:
        if isinstance(item, torch.Tensor):
            return item
    return None


def extract_logits(output: Any) -> torch.Tensor:
    """The ``(B, C)`` logits in whatever a classifier returns.

    - a tensor ``(B, C)`` is the logits;
    - a Hugging Face ``ModelOutput`` or any object with a ``.logits`` tensor: that;
    - a dict: its ``"logits"`` entry, else its only tensor;
    - a tuple or list: its first tensor (``(logits, hidden)`` outputs);
    - one logit per instance, ``(B,)`` or ``(B, 1)``, is a binary classifier whose logit
      ``z`` scores class 1: it becomes the two columns ``[0, z]``, whose softmax is
      ``[1 - sigmoid(z), sigmoid(z)]`` and whose argmax is ``z > 0``.

    Raises
    ------
    TypeError
        No tensor to take the logits from (the message lists what the output holds).
    ValueError
        Logits with more than two dimensions.

    Examples
    --------
    >>> import torch
    >>> extract_logits({"logits": torch.zeros(2, 3), "hidden": torch.ones(2, 8)}).shape
    torch.Size([2, 3])
    >>> extract_logits(torch.tensor([2.0, -1.0])).tolist()
    [[0.0, 2.0], [0.0, -1.0]]
    """
    logits = output
    if not isinstance(logits, torch.Tensor):
        logits = getattr(output, "logits", None)
        if logits is None and isinstance(output, Mapping):
            logits = output.get("logits")
            if logits is None:
                tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
                if len(tensors) == 1:
                    logits = tensors[0]
                else:
                    raise TypeError(
                        f"the model returned a {type(output).__name__} with keys "
                        f"{list(output)[:8]} and none named 'logits'; return the logits "
                        "tensor, or a dict or object with a 'logits' entry"
                    )
        if logits is None and isinstance(output, (tuple, list)):
            logits = _first_tensor(output)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"cannot find logits in a model output of type {type(output).__name__}; the "
            "model should return a (batch, classes) tensor, a tuple starting with one, or "
            "an object or dict with a 'logits' tensor"
        )
    if logits.dim() == 1:
        logits = logits.unsqueeze(1)
    if logits.dim() != 2:
        raise ValueError(
            f"logits must be (batch, classes), got shape {tuple(logits.shape)}; "
            "pool or select the classification output inside the model's forward"
        )
    if logits.shape[1] == 1:
        logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits
