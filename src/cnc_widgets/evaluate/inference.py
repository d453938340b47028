"""Batched evaluation of one model on one data shard: logits, embeddings, activations.

:func:`evaluate_model` is a pure function of (model, inputs) -> :class:`EvalResult`
(numpy arrays): no global state, hooks removed and modes restored afterwards, so the
registry can run it in a ``concurrent.futures`` executor (Dask) over shards and
combine the parts with :func:`merge_results`.

Example
-------
>>> import torch
>>> from cnc_widgets.evaluate.inference import evaluate_model
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> result = evaluate_model(model, torch.randn(20, 4), batch_size=8, progress=False)
>>> result.logits.shape, result.embeddings.shape, result.embedding_module
((20, 3), (20, 8), '2')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .embedding import _DefaultEmbeddingProbe, resolve_embedding
from .errors import EvaluationError, NonFinite
from .faults import _check_finite, _kind, _non_finite, locate_exception
from .model_io import (
    Inputs,
    call_model,
    describe,
    eval_mode,
    extract_logits,
    model_device,
    model_dtype,
    n_rows,
    slice_rows,
)
from .modules import dense_encoders, first_tensor, leaf_modules, reduce_output, token_mask
from .stats import RunningStats

__all__ = [
    "EvalResult",
    "EvaluationError",
    "HookedCall",
    "evaluate_model",
    "extract_logits",
    "merge_results",
]


@dataclass
class EvalResult:
    """Everything one evaluation produced, as numpy arrays (N instances, M modules).

    Attributes
    ----------
    name
        The model's name, as given to :func:`evaluate_model`.
    outputs
        The task's per-instance arrays by name (rows first, float32 where floating):
        ``{"logits": (N, C)}`` for a classifier (see :mod:`cnc_widgets.tasks`).
    embeddings
        ``(N, d)`` float32, the representation read at ``embedding_module``.
    embedding_module
        Dotted module name; ``embedding_kind`` says whether its ``"input"`` (the
        default: the input of the last Linear) or its ``"output"`` was read.
    embedding_kind
        ``"input"`` or ``"output"``.
    modules
        Hooked modules in execution order (first call); the ``act_*`` rows follow it.
    act_count
        ``(M,)`` int64, output elements seen over all instances (and all calls).
    act_mean, act_std, act_zero_frac, act_min, act_max
        ``(M,)`` float64, over all those elements (``act_std`` is the population std).
    act_hist
        ``(M, bins + 2)`` int64: ``[underflow, bins..., overflow]`` counts over a fixed
        random sample of up to ``hist_sample`` element positions per instance (all
        instances contribute; the same positions are used in every row).
    act_hist_edges
        ``(M, bins + 1)`` float64, the inner bin edges; bins are ``[e_k, e_k+1)``,
        underflow ``x < e_0``, overflow ``x >= e_bins``, every count exact (the index
        is ``np.searchsorted(edges, x, side="right")``, see :mod:`.histogram`).
    """

    name: str
    outputs: dict[str, np.ndarray]
    embeddings: np.ndarray
    embedding_module: str
    embedding_kind: str = "input"
    modules: list[str] = field(default_factory=list)
    act_count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    act_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    act_std: np.ndarray = field(default_factory=lambda: np.zeros(0))
    act_zero_frac: np.ndarray = field(default_factory=lambda: np.zeros(0))
    act_min: np.ndarray = field(default_factory=lambda: np.zeros(0))
    act_max: np.ndarray = field(default_factory=lambda: np.zeros(0))
    act_hist: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    act_hist_edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def n(self) -> int:
        """Number of instances."""
        return int(self.embeddings.shape[0])

    @property
    def logits(self) -> np.ndarray:
        """``(N, C)`` float32 logits of a classifier (``outputs["logits"]``)."""
        return self.outputs["logits"]

    @property
    def predictions(self) -> np.ndarray:
        """``(N,)`` int64 argmax of a classifier's logits."""
        return self.logits.argmax(1)

    def hist_ranges(self) -> dict[str, tuple[float, float]]:
        """``{module: (lo, hi)}``, to give other shards the same histogram bins."""
        return {
            m: (float(e[0]), float(e[-1]))
            for m, e in zip(self.modules, self.act_hist_edges, strict=True)
        }

    def activation_frame(self) -> Any:
        """Per-module statistics as a pandas DataFrame indexed by module name."""
        import pandas as pd

        return pd.DataFrame(
            {
                "count": self.act_count,
                "mean": self.act_mean,
                "std": self.act_std,
                "zero_frac": self.act_zero_frac,
                "min": self.act_min,
                "max": self.act_max,
            },
            index=pd.Index(self.modules, name="module"),
        )


def evaluate_model(
    model: nn.Module,
    inputs: Inputs,
    *,
    batch_size: int = 64,
    embedding: str | None = None,
    activations: bool | Sequence[str] = True,
    progress: bool = True,
    name: str = "model",
    bins: int = 64,
    hist_sample: int | None = 128,
    hist_ranges: Mapping[str, tuple[float, float]] | None = None,
    stats_thread: bool | None = None,
    task: Any = None,
) -> EvalResult:
    """Run a model over all inputs in batches and collect what the views need.

    The model runs in eval mode under ``torch.inference_mode`` (its own mode is
    restored afterwards); floating inputs are cast to the dtype of its parameters, so
    half and bfloat16 variants take the same data, and batches are moved to the
    model's device. A dynamic-quantized model quantizes activations with per-batch
    ranges, so its outputs depend slightly on ``batch_size``. Nothing holds more than one batch of
    activations: statistics are running sums.

    Logits are read from what the model returns by :func:`.model_io.extract_logits`: a
    tensor; else its ``.logits`` attribute (Hugging Face outputs) or ``"logits"`` key;
    else the first tensor of a tuple. One logit per instance (``(B,)`` or ``(B, 1)``) is
    a binary classifier: it becomes two classes ``[0, z]`` (softmax = sigmoid).

    Parameters
    ----------
    model
        Any ``nn.Module``, called as ``model(batch)`` for tensor inputs and as
        ``model(**batch)`` for a dict.
    inputs
        A tensor ``(N, ...)`` or a dict of tensors with N rows (tokenized text).
    batch_size
        Rows per forward pass.
    embedding
        Dotted name of the module whose output is the representation. ``None``: the
        input of the model's last ``nn.Linear`` in registration order (a dynamic
        quantized Linear counts); when that input is the raw model input (the only
        Linear is an input projection), the output of the last module before the
        logits instead, found on the first batch (a warning when there is none).
        Outputs ``(B, L, d)`` are mean-pooled over the real tokens
        (:func:`.modules.token_mask`), other shapes flattened.
    activations
        ``True``: statistics of every leaf module's output (pass-through modules such
        as Dropout and Flatten skipped); a list of names: those modules; ``False``:
        none (the fast path: logits and embeddings only).
    progress
        Show a tqdm progress bar.
    name
        Names the model in progress bars and error messages.
    bins
        Inner histogram bins per module. Their range comes from the first batch
        (mean +- 6 std, clipped to the batch's min/max and widened by 10% on a side
        set by an extreme other than 0); later values outside it land in the
        underflow/overflow bins, and ``act_min``/``act_max`` stay exact.
    hist_sample
        Element positions per instance sampled for the histogram (``None``: all).
        Count, mean, std, zeros, min and max always use every element.
    hist_ranges
        ``{module: (lo, hi)}`` fixing histogram ranges, e.g. from
        :meth:`EvalResult.hist_ranges` of another shard so the parts merge.
    stats_thread
        Reduce module outputs to statistics on a worker thread while the forward pass
        goes on (each output is copied first; the values are the same). ``None``: only
        where numba is missing (CPU outputs are otherwise reduced by one compiled pass,
        which costs about as much as the copy) and the process may use more CPU cores
        than ``torch.get_num_threads()`` (a worker competing with torch's own threads
        slows both). See :class:`.stats.RunningStats`.
    task
        A :class:`cnc_widgets.tasks.Task` (default: classification): how the model is run
        on a batch and which per-instance arrays its output becomes.

    Returns
    -------
    EvalResult

    Raises
    ------
    EvaluationError
        The model raised (the message names the model, batch, rows, input shapes and,
        found by re-running that batch once, the module that raised; the original
        error is chained), or logits, the embedding or a hooked module's output held
        NaN/inf (the message names the first such module in execution order).
    ValueError
        No Linear to take the default embedding from, or an unknown module name.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    >>> r = evaluate_model(model, torch.randn(10, 4), batch_size=4, progress=False)
    >>> r.modules
    ['0', '1', '2']
    >>> bool(r.act_zero_frac[1] > 0)
    True
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = n_rows(inputs)
    if n == 0:
        raise ValueError("inputs hold no rows")
    dtype, device = model_dtype(model), model_device(model)
    emb_name, emb_kind = resolve_embedding(model, embedding)
    emb_module = model.get_submodule(emb_name)
    if activations is True:
        stat_names = leaf_modules(model)
    elif activations is False:
        stat_names = []
    else:
        stat_names = list(activations)
        for m in stat_names:
            model.get_submodule(m)  # fail early on a typo
    stats = RunningStats(bins, hist_sample, hist_ranges or {}, background=stats_thread)
    mask_all = token_mask(model, inputs)

    captured: list[Any] = [None]

    def grab(_m: nn.Module, args: tuple) -> None:
        captured[0] = args[0]

    def grab_out(_m: nn.Module, _args: tuple, output: Any) -> None:
        captured[0] = first_tensor(output)

    if emb_kind == "input":
        handles = [emb_module.register_forward_pre_hook(grab)]
    else:
        handles = [emb_module.register_forward_hook(grab_out)]
    handles += [model.get_submodule(m).register_forward_hook(stats.hook(m)) for m in stat_names]
    # The default is checked on the first batch: is the last Linear reading raw input?
    probe = _DefaultEmbeddingProbe(model, emb_name) if embedding is None else None

    if task is None:
        from ..tasks import get_task

        task = get_task("classification")
    call = HookedCall(lambda: handles + (probe.handles if probe is not None else []))
    out_bufs: dict[str, torch.Tensor] | None = None
    emb_buf = None
    bar = tqdm(total=n, desc=name, unit="inst", disable=not progress, leave=False)
    try:
        with eval_mode(model), dense_encoders(model):
            for b, start in enumerate(range(0, n, batch_size)):
                stop = min(start + batch_size, n)
                batch = slice_rows(inputs, start, stop, dtype, device)
                captured[0] = None
                try:  # outside the batch's try: a worker's error is not this batch's fault
                    stats.begin_batch((b, start, stop, batch))
                except NonFinite as exc:
                    raise _non_finite(model, name, exc) from None
                try:
                    outputs = task.batch_outputs(task.run(model, batch, call), batch)
                    logits = next(iter(outputs.values()))
                    emb = captured[0]
                    if probe is not None:
                        probe.remove()
                        chosen = probe.choose(batch, emb, logits)
                        probe = None
                        if chosen is not None:
                            emb_name, emb_kind, emb = chosen
                            handles[0].remove()
                            handles[0] = model.get_submodule(emb_name).register_forward_hook(
                                grab_out
                            )
                    if emb is None:
                        raise RuntimeError(f"embedding module {emb_name!r} was not called")
                    mask = None if mask_all is None else mask_all[start:stop]
                    emb = reduce_output(emb, mask, "auto")
                    if out_bufs is None:
                        out_bufs = {k: _buffer(v, n) for k, v in outputs.items()}
                        emb_buf = torch.empty((n, emb.shape[1]), dtype=torch.float32)
                    for key, value in outputs.items():
                        out_bufs[key][start:stop] = value
                    emb_buf[start:stop] = emb
                except NonFinite as exc:
                    raise _non_finite(model, name, exc) from None
                except Exception as exc:
                    where = locate_exception(model, batch)
                    where = f" in module {where!r} ({_kind(model, where)})" if where else ""
                    raise EvaluationError(
                        f"model {name!r} failed on batch {b} (rows {start}:{stop}, inputs "
                        f"{describe(batch)}){where}: {type(exc).__name__}: {exc}"
                    ) from exc
                bar.update(stop - start)
            try:
                stats.close()  # the worker thread's last batches
            except NonFinite as exc:
                raise _non_finite(model, name, exc) from None
            outputs_np = {k: v.numpy() for k, v in out_bufs.items()}
            emb_np = emb_buf.numpy()
            _check_finite(model, inputs, name, batch_size, (dtype, device), outputs_np, emb_np)
    finally:
        stats.close(raise_error=False)
        bar.close()
        if probe is not None:
            probe.remove()
        for h in handles:
            h.remove()
    return EvalResult(name, outputs_np, emb_np, emb_name, emb_kind, **stats.arrays())


class HookedCall:
    """How a task calls the model during :func:`evaluate_model`: ``call(model, batch)`` is
    :func:`.activations.call_model`, with evaluation's hooks (embedding, activation
    statistics) watching.

    ``with call.quiet():`` silences those hooks, and only those (a half model's casting
    hooks keep working), for forward passes that are not one pass over the instances:
    generation's decoding steps, one per new token, would otherwise replace the prompt's
    embedding and count every step in the activation statistics.
    """

    def __init__(self, handles: Any) -> None:
        self._handles = handles

    def __call__(self, model: nn.Module, batch: Inputs) -> Any:
        return call_model(model, batch)

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        saved: dict[int, tuple[dict, dict]] = {}
        for handle in self._handles():
            hooks = handle.hooks_dict_ref()
            if hooks is not None and handle.id in hooks:
                saved.setdefault(id(hooks), (hooks, dict(hooks)))
                del hooks[handle.id]
        try:
            yield
        finally:
            for hooks, before in saved.values():  # restored in their order
                hooks.clear()
                hooks.update(before)


def _buffer(value: torch.Tensor, n: int) -> torch.Tensor:
    """An ``(n, ...)`` buffer for one per-instance output (floats kept as float32)."""
    dtype = torch.float32 if value.is_floating_point() else value.dtype
    return torch.empty((n, *value.shape[1:]), dtype=dtype)


def merge_results(parts: Sequence[EvalResult]) -> EvalResult:
    """Combine results of disjoint shards, in order, into one result.

    Histograms add only when every part used the same bins: evaluate the first shard,
    then the others with ``hist_ranges=first.hist_ranges()``.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> x = torch.randn(10, 3)
    >>> a = evaluate_model(model, x[:6], progress=False)
    >>> b = evaluate_model(model, x[6:], progress=False, hist_ranges=a.hist_ranges())
    >>> merge_results([a, b]).n
    10
    """
    first = parts[0]
    for p in parts[1:]:
        if p.modules != first.modules or not np.array_equal(p.act_hist_edges, first.act_hist_edges):
            raise ValueError("parts differ in modules or histogram bins; pass hist_ranges")
    counts = np.stack([p.act_count for p in parts]).astype(np.float64)
    total = counts.sum(0)
    w = counts / np.where(total > 0, total, 1)
    means = np.stack([p.act_mean for p in parts])
    mean = (w * means).sum(0)
    var = (w * (np.stack([p.act_std for p in parts]) ** 2 + (means - mean) ** 2)).sum(0)
    return EvalResult(
        first.name,
        {k: np.concatenate([p.outputs[k] for p in parts]) for k in first.outputs},
        np.concatenate([p.embeddings for p in parts]),
        first.embedding_module,
        first.embedding_kind,
        list(first.modules),
        total.astype(np.int64),
        mean,
        np.sqrt(var),
        (w * np.stack([p.act_zero_frac for p in parts])).sum(0),
        np.min([p.act_min for p in parts], axis=0),
        np.max([p.act_max for p in parts], axis=0),
        np.sum([p.act_hist for p in parts], axis=0),
        first.act_hist_edges.copy(),
    )
