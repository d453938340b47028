"""Evaluation fanned out on a ``concurrent.futures`` executor, a Dask cluster above all.

The unit of work is a pure function of (model, one data shard, parameters) -> arrays:
:func:`evaluate_shard` runs :func:`~.inference.evaluate_model` on a slice of rows and
:func:`measure_efficiency` times one batch. Shards of one model combine exactly with
:func:`~.inference.merge_results` (logits and embeddings concatenate; activation counts,
sums and histograms add), so one model's evaluation spreads over several workers too. The
first shard of a model fixes its histogram bins, the model's other shards follow once it is
back; other models' shards run meanwhile.

Workers never touch the store: :func:`fan_out` hands each model's finished record to a
callback in the calling process (the registry stores it at once), so a crash keeps what
finished. A failing task names its model and shard; the other models go on.

How weights reach the workers:

- ``weights="value"`` (default): the module itself travels, pickled (cloudpickle on Dask, so
  classes defined in a notebook travel too). On a Dask client each model is sent once
  and shared by its shards. Costs one copy of the weights per worker that runs the model.
- ``weights="store"``: only the architecture travels (on the meta device, a few kB) with the
  non-persistent buffers; each worker reads the weights from the registry's store folder
  (``keep_weights=True``), which must be on storage every worker can read (NFS, a shared
  volume). Cheaper on the network for large models, but needs that shared folder.

This module imports nothing from Dask: any executor with ``submit`` works, and a
``distributed.Client`` is used through its ``get_executor()``.
"""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import EvalData
from .errors import EvaluationError
from .heap import roomy_heap
from .inference import EvalResult, evaluate_model, merge_results
from .model_io import Inputs, n_rows
from .runner import data_task, measure_cost

__all__ = [
    "StoredWeights",
    "as_executor",
    "evaluate_shard",
    "fan_out",
    "measure_efficiency",
    "shard_bounds",
]

# Rows per shard when the caller gives none: big enough that a task outweighs its overhead.
DEFAULT_SHARD_ROWS = 4096


def as_executor(executor: Any) -> Any:
    """A ``concurrent.futures``-style executor from an executor or a Dask ``Client``."""
    if hasattr(executor, "get_executor") and callable(executor.get_executor):
        return executor.get_executor(pure=False)
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(
            f"executor= takes a concurrent.futures.Executor or a distributed.Client, "
            f"got {type(executor).__name__}"
        )
    return executor


def shard_bounds(n: int, shard_rows: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``n`` rows; shard edges fall on batch edges.

    Keeping edges on multiples of ``batch_size`` makes every forward pass see the same rows
    as a local run, so batch-dependent models (dynamic int8) give the same numbers.
    """
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be positive, got {shard_rows}")
    step = max(batch_size, (shard_rows // batch_size) * batch_size)
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def _rows(inputs: Inputs, start: int, stop: int) -> Inputs:
    if isinstance(inputs, Mapping):
        return {k: v[start:stop].clone() for k, v in inputs.items()}
    return inputs[start:stop].clone()


@dataclass
class StoredWeights:
    """A model whose weights a worker reads from a store folder every worker can see."""

    skeleton: nn.Module
    path: str
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def of(cls, model: nn.Module, path: str) -> StoredWeights:
        persistent = set(model.state_dict())
        buffers = {
            name: b.detach().clone() for name, b in model.named_buffers() if name not in persistent
        }
        return cls(copy.deepcopy(model).to("meta"), path, buffers)

    def load(self) -> nn.Module:
        from safetensors.torch import load_file

        model = copy.deepcopy(self.skeleton)
        state = load_file(self.path)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if missing or unexpected:
            raise EvaluationError(
                f"the weights in {self.path} do not fit the model (missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}); send weights by value (weights='value')"
            )
        for name, value in self.buffers.items():
            owner, _, attr = name.rpartition(".")
            model.get_submodule(owner).register_buffer(attr, value, persistent=False)
        return model


class Payload:
    """What travels to a worker for one model: the model, pickled once in this process.

    Every task unpickles its own copy (:meth:`load`), so tasks side by side on one worker
    (threads, a model's shards, its efficiency measurement) never share a module whose hooks
    and modes they change, and Dask copying a payload between workers while a task runs
    copies bytes, never a module with a task's hooks attached. (Dask's own serializer for a
    bare ``nn.Module`` also rebuilds it without its hook dictionaries.) Pickled with
    cloudpickle when installed, so classes defined in a notebook travel too.
    """

    def __init__(self, model: nn.Module | StoredWeights) -> None:
        self._model: nn.Module | StoredWeights | None = model
        self._blob: bytes | None = None

    def blob(self) -> bytes:
        """The pickled model (made on first use, then kept)."""
        if self._blob is None:
            self._blob = _dumps(self._model)
        return self._blob

    def __getstate__(self) -> dict[str, bytes]:
        return {"blob": self.blob()}

    def __setstate__(self, state: dict[str, bytes]) -> None:
        self._model, self._blob = None, state["blob"]

    def load(self) -> nn.Module | StoredWeights:
        """A fresh copy of the model, this task's own."""
        return pickle.loads(self.blob())


def _dumps(value: Any) -> bytes:
    try:
        import cloudpickle
    except ImportError:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _identity(value: Any) -> Any:
    return value


def _materialise(payload: Payload | nn.Module | StoredWeights) -> nn.Module:
    model = payload.load() if isinstance(payload, Payload) else payload
    return model.load() if isinstance(model, StoredWeights) else model


def evaluate_shard(
    model: Payload | nn.Module | StoredWeights,
    inputs: Inputs,
    *,
    batch_size: int,
    embedding: str | None,
    name: str,
    hist_ranges: Mapping[str, tuple[float, float]] | None = None,
    task: Any = None,
) -> EvalResult:
    """One shard of one model: :func:`evaluate_model` on ``inputs``, no progress bar."""
    with roomy_heap():
        return evaluate_model(
            _materialise(model),
            inputs,
            batch_size=batch_size,
            embedding=embedding,
            activations=True,
            progress=False,
            name=name,
            hist_ranges=hist_ranges,
            stats_thread=False,  # the workers already fill the cores
            task=task,
        )


def measure_efficiency(
    model: Payload | nn.Module | StoredWeights, example: Inputs
) -> dict[str, Any]:
    """Efficiency of one model on one batch (latency measured on the worker that runs it)."""
    with roomy_heap():
        return measure_cost(_materialise(model), example)


@dataclass
class _Job:
    name: str
    payload: Any
    bounds: list[tuple[int, int]]
    parts: dict[int, EvalResult] = field(default_factory=dict)
    cost: dict[str, Any] | None = None
    failed: bool = False


def fan_out(
    executor: Any,
    models: Mapping[str, nn.Module],
    data: EvalData,
    finish: Callable[[str, EvalResult, dict[str, Any]], None],
    *,
    shard_rows: int | None = None,
    weights: str = "value",
    weight_paths: Mapping[str, str] | None = None,
    progress: bool = True,
) -> list[EvaluationError]:
    """Evaluate ``models`` on ``data`` through ``executor``; ``finish`` gets each model's
    merged result and efficiency (in this process, as each model completes).

    Returns the failures (one :class:`EvaluationError` per failed model, naming its shard);
    the other models have been finished.
    """
    if data.inputs is None:
        raise ValueError("the evaluation inputs are not loaded: call reg.set_data(inputs, labels)")
    if weights not in ("value", "store"):
        raise ValueError(f"weights= is 'value' or 'store', got {weights!r}")
    client = executor if hasattr(executor, "scatter") else None
    pool = as_executor(executor)
    n = n_rows(data.inputs)
    bounds = shard_bounds(n, shard_rows or DEFAULT_SHARD_ROWS, data.batch_size)
    example = data.batch(0, min(n, data.batch_size))
    jobs: dict[str, _Job] = {}
    for name, model in models.items():
        if weights == "store":
            path = (weight_paths or {}).get(name)
            if path is None:
                raise ValueError(
                    f"weights='store' needs {name!r}'s weights in the store: open the registry "
                    "with keep_weights=True (and a store folder every worker can read)"
                )
            payload: Any = Payload(StoredWeights.of(model, path))
        else:
            payload = Payload(model)
        if client is not None:
            # A task that returns the payload, not scatter(): scattered data dies with its
            # worker, while a task is recomputed elsewhere when its worker is lost.
            payload = client.submit(_identity, payload, pure=False)
        jobs[name] = _Job(name, payload, bounds)

    pending: dict[Future, tuple[str, str, int]] = {}
    lock = threading.Lock()

    def submit(job: _Job, kind: str, shard: int, ranges: Any = None) -> None:
        if kind == "cost":
            future = pool.submit(measure_efficiency, job.payload, example)
        else:
            start, stop = job.bounds[shard]
            future = pool.submit(
                evaluate_shard,
                job.payload,
                _rows(data.inputs, start, stop),
                batch_size=data.batch_size,
                embedding=data.embedding,
                name=job.name,
                hist_ranges=ranges,
                task=data_task(data),
            )
        with lock:
            pending[future] = (job.name, kind, shard)

    for job in jobs.values():
        submit(job, "shard", 0)
        submit(job, "cost", 0)
    total = sum(len(j.bounds) + 1 for j in jobs.values())
    failures: list[EvaluationError] = []
    bar = tqdm(total=total, desc="evaluate", unit="task", disable=not progress, leave=False)
    try:
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                name, kind, shard = pending.pop(future)
                job = jobs[name]
                bar.update(1)
                if job.failed:
                    continue
                try:
                    value = future.result()
                except Exception as exc:
                    job.failed = True
                    what = "measuring efficiency" if kind == "cost" else _shard_text(job, shard)
                    error = EvaluationError(f"model {name!r}, {what}: {type(exc).__name__}: {exc}")
                    error.__cause__ = exc
                    failures.append(error)
                    continue
                if kind == "cost":
                    job.cost = value
                else:
                    job.parts[shard] = value
                    if shard == 0:
                        for i in range(1, len(job.bounds)):
                            submit(job, "shard", i, value.hist_ranges())
                if job.cost is not None and len(job.parts) == len(job.bounds):
                    merged = merge_results([job.parts[i] for i in range(len(job.bounds))])
                    try:
                        finish(name, merged, job.cost)
                    except EvaluationError as exc:
                        job.failed = True
                        failures.append(exc)
    finally:
        bar.close()
        for future in pending:
            future.cancel()
    return failures


def _shard_text(job: _Job, shard: int) -> str:
    start, stop = job.bounds[shard]
    return f"shard {shard + 1} of {len(job.bounds)} (rows {start}:{stop})"
