"""ModelRegistry: the models of one compression study, their provenance and results.

Every view holds the registry and follows its ``selected`` trait, so the
registry is the one source of truth for what is shown and chosen.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import traitlets
from torch import nn
from tqdm.auto import tqdm

from .comparability import comparability as _comparability
from .comparison import Comparison, DetachedSource, MissingMeasure, summary_task
from .compress import apply_operation, operation_record, operations
from .compress.catalogue import plain_params
from .evaluate.behaviour import callable_digest
from .evaluate.data import EvalData, make_data
from .evaluate.fanout import as_executor, fan_out
from .evaluate.fingerprint import data_fingerprint, model_fingerprint
from .evaluate.inference import EvalResult
from .evaluate.model_io import call_model, eval_mode, extract_logits, prepare_inputs
from .evaluate.runner import EvaluationError, evaluate_one, finish_record
from .filters import check_filters, outside
from .formats import cnc_json
from .formatting import format_table
from .metrics.adversarial import has_gradients
from .metrics.pareto import frontier_names
from .provenance import ModelRecord, check_parent, jsonable_params, topological
from .store import Store

__all__ = ["EvaluationError", "ModelRegistry"]

# Columns that describe provenance; every other metrics column is a measurement.
PROVENANCE_COLUMNS = ["parent", "operation", "operation_params"]
# Measurements every metrics() table has, NaN until a model is evaluated.
MEASURE_COLUMNS = [
    "accuracy",
    "params",
    "nonzero_params",
    "sparsity",
    "size_bytes",
    "sparse_size_bytes",
    "latency_ms",
    "macs",
]


class ModelRegistry(traitlets.HasTraits):
    """Models, how each was made, and what each costs and does on one evaluation set.

    Parameters
    ----------
    store : str or Path or None
        ``None`` keeps everything in memory. A folder path persists provenance,
        metrics and results there; opening the same path again gives them back.
    keep_weights : bool
        Also save every model's weights in the store (safetensors). Off by default:
        forty variants of a 90 MB model is a lot of disk. Either way, after reopening,
        re-adding a root model lets the registry rebuild its descendants by replaying
        their recorded operations (checked against the stored fingerprints).

    Examples
    --------
    >>> reg = ModelRegistry()
    >>> reg.set_data(x_test, y_test, classes=[str(i) for i in range(10)])
    >>> reg.add("base", model)
    'base'
    >>> reg.evaluate()
    >>> reg.metrics()[["accuracy", "size_bytes"]]
    """

    selected = traitlets.List(traitlets.Unicode(), help="Names of the selected models.")
    revision = traitlets.Int(0, help="Bumped whenever models, data or results change.")
    filters = traitlets.Dict(
        help="metric -> (low, high); models with a filtered metric missing or outside are out."
    )

    def __init__(self, store: str | Path | None = None, *, keep_weights: bool = False) -> None:
        super().__init__()
        self._records: dict[str, ModelRecord] = {}
        self._models: dict[str, nn.Module] = {}
        self._static: dict[str, dict[str, Any]] = {}
        self._results: dict[str, dict[str, Any]] = {}
        self._measures: dict[str, Any] = {}
        self._data: EvalData | None = None
        # metric -> {"format", "unit", "min", "max"} where a source declares them (C&C files).
        self.metric_info: dict[str, dict[str, Any]] = {}
        self._store = None
        self.keep_weights = keep_weights
        if store is not None:
            self._store = Store(store)
            self._load_from_store()

    # -- selection -----------------------------------------------------------------

    @traitlets.validate("selected")
    def _check_selected(self, proposal: dict[str, Any]) -> list[str]:
        names = list(dict.fromkeys(proposal["value"]))
        unknown = [n for n in names if n not in self._records]
        if unknown:
            raise traitlets.TraitError(
                f"cannot select {unknown}: not in the registry (known: {sorted(self._records)})"
            )
        return names

    @traitlets.validate("filters")
    def _check_filters(self, proposal: dict[str, Any]) -> dict[str, Any]:
        try:
            columns = [c for c in self.metrics().columns if c not in PROVENANCE_COLUMNS]
            return check_filters(proposal["value"], columns)
        except ValueError as exc:
            raise traitlets.TraitError(str(exc)) from None

    def filtered_out(self) -> list[str]:
        """Names of the models that ``filters`` leaves out (a filtered metric missing or outside).

        Examples
        --------
        >>> reg.filters = {"accuracy": (0.9, 1.0)}
        >>> reg.filtered_out()
        ['int4']
        """
        return outside(self.metrics(), self.filters)

    def comparability(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """Which operation parameters differ along the models' provenance paths.

        One row per parameter (``"prune: amount"``), one column per model, and a
        ``status`` column: ``"differs"`` or ``"shared"``. Two models are comparable when
        exactly one row differs. ``names`` defaults to ``selected``.

        Examples
        --------
        >>> reg.comparability(["base-prune-0.5", "base-prune-0.7"])
        """
        names = list(self.selected if names is None else names)
        for name in names:
            self._require(name)
        return _comparability(self.record, names)

    # -- text and HTML reprs ------------------------------------------------------

    def __repr__(self) -> str:
        evaluated = int(self.metrics()["accuracy"].notna().sum()) if self._records else 0
        text = f"ModelRegistry({len(self)} models, {evaluated} evaluated"
        if self.filters:
            text += f", {len(self.filtered_out())} outside filters {dict(self.filters)}"
        return text + ")"

    def _repr_html_(self) -> str:
        """The metrics table with units (15.5 MB, 94.37%), as a notebook shows it."""
        table = self.metrics().drop(columns=["operation_params"])
        summary = html.escape(repr(self))
        return f"<p>{summary}</p>" + format_table(table, self.metric_info).to_html(na_rep="n/a")

    # -- models and provenance -------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    @property
    def names(self) -> list[str]:
        """Model names in the order they were added."""
        return list(self._records)

    def record(self, name: str) -> ModelRecord:
        """The provenance record of ``name``."""
        self._require(name)
        return self._records[name]

    def model(self, name: str) -> nn.Module:
        """The ``nn.Module`` registered as ``name``.

        Raises
        ------
        KeyError
            If the registry holds no weights for it (metric-only models, or a store
            reopened without the models).
        """
        self._require(name)
        if name not in self._models:
            self._materialise(name)
        return self._models[name]

    def load(self, name: str, skeleton: nn.Module | None = None) -> nn.Module:
        """Bring ``name``'s weights into this session after reopening a store.

        With ``skeleton`` (a module of the same architecture) the weights saved with
        ``keep_weights=True`` are loaded into it; without, the model is rebuilt by
        replaying its operation on its parent. Either way the result must match the
        stored fingerprint.
        """
        self._require(name)
        if name in self._models:
            return self._models[name]
        record = self._records[name]
        if skeleton is not None:
            try:
                found = self._store is not None and self._store.load_weights(
                    record.fingerprint, skeleton
                )
            except RuntimeError as exc:
                raise ValueError(
                    f"the saved weights of {name!r} do not fit the given skeleton "
                    f"({type(skeleton).__name__}): {str(exc)[:300]}; pass a module built like "
                    "the one that was added"
                ) from None
            if not found:
                raise KeyError(f"the store holds no saved weights of {name!r} (keep_weights=False)")
            self._check_skeleton_dtypes(name, skeleton)
            self._attach(name, skeleton)
            return skeleton
        self._materialise(name)
        return self._models[name]

    def _check_skeleton_dtypes(self, name: str, skeleton: nn.Module) -> None:
        """Loading casts saved tensors to the skeleton's dtypes: say so instead of reporting
        changed weights (a half model's weights loaded into a float32 skeleton)."""
        from safetensors import safe_open

        path = self._store.weights_path(self._records[name].fingerprint)
        with safe_open(str(path), framework="pt") as fh:
            saved = {k: fh.get_slice(k).get_dtype() for k in fh.keys()}
        have = skeleton.state_dict()
        wrong = sorted(
            {
                (str(have[k].dtype).removeprefix("torch."), dtype)
                for k, dtype in saved.items()
                if k in have
                and have[k].is_floating_point()
                and dtype in _FLOAT_NAMES.values()
                and _FLOAT_NAMES.get(str(have[k].dtype)) != dtype
            }
        )
        if wrong:
            saved_names = {v: k.removeprefix("torch.") for k, v in _FLOAT_NAMES.items()}
            pairs = ", ".join(
                f"{a} tensors where the saved ones are {saved_names[b]}" for a, b in wrong
            )
            raise ValueError(
                f"the skeleton given for {name!r} holds {pairs}; build it in the saved "
                f"precision first (e.g. cnc_widgets.compress.precision.half(skeleton) for a "
                f"'half' model), or call reg.load({name!r}) without a skeleton to rebuild it "
                "from its parent"
            )

    def _attach(self, name: str, model: nn.Module) -> None:
        found = model_fingerprint(model)
        if found != self._records[name].fingerprint:
            raise ValueError(
                f"the weights rebuilt for {name!r} differ from the ones it was evaluated with; "
                f"add it again with reg.add({name!r}, model, replace=True)"
            )
        self._models[name] = model

    def _materialise(self, name: str) -> None:
        record = self._records[name]
        if (
            record.fingerprint is None
            or record.parent is None
            or record.operation not in operations()
        ):
            raise KeyError(
                f"model {name!r} has no weights in this session (metric-only, reopened from a "
                f"store, or made by a custom function); add it with reg.add({name!r}, model) "
                "or load(name, skeleton) its saved weights"
            )
        if record.parent not in self._models:
            self._materialise(record.parent)
        source = None
        if record.operation == "restore":
            grandparent = self._records[record.parent].parent
            if grandparent is not None and grandparent not in self._models:
                self._materialise(grandparent)
            source = self._models.get(grandparent) if grandparent else None
        parent = self._models[record.parent]
        example = None
        if self._data is not None and self._data.inputs is not None:
            example = self._data.batch(0, min(len(self._data), self._data.batch_size))
        known = operations()[record.operation]["params"]
        params = {k: v for k, v in record.params.items() if k in known}
        with eval_mode(parent, inference=None):
            child = apply_operation(
                parent, record.operation, source=source, example_input=example, **params
            )
        _copy_modes(parent, child)
        self._attach(name, child)

    def _require(self, name: str) -> None:
        if name not in self._records:
            raise KeyError(f"no model named {name!r} (known: {sorted(self._records)})")

    def add(
        self,
        name: str,
        model: nn.Module,
        *,
        parent: str | None = None,
        operation: str | None = None,
        params: dict[str, Any] | None = None,
        replace: bool = False,
        info: dict[str, Any] | None = None,
    ) -> str:
        """Register ``model`` as ``name``, made from ``parent`` by ``operation``.

        Adding the same name with the same weights and provenance again (a re-run
        notebook cell) does nothing. The same name with other weights or other
        provenance raises, unless ``replace=True``, which also drops the model's
        cached results.

        Returns
        -------
        str
            ``name``.

        Raises
        ------
        ValueError
            For a model that is not an ``nn.Module``, an unknown parent, a parent
            that would close a cycle, or a reused name. The registry is unchanged.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"model name must be a non-empty string, got {name!r}")
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"model {name!r} is a {type(model).__name__}, not a torch.nn.Module; "
                "pass the module itself (for a pipeline, its .model)"
            )
        if operation is not None and not isinstance(operation, str):
            raise ValueError(f"operation of model {name!r} must be a string label")
        check_parent(self._records, name, parent)
        record = ModelRecord(
            name=name,
            parent=parent,
            operation=operation,
            params=jsonable_params(name, params),
            fingerprint=model_fingerprint(model),
            info=dict(info or {}),
        )
        old = self._records.get(name)
        if old is not None:
            same_op = old.info.get(OPERATION_DIGEST) == record.info.get(OPERATION_DIGEST)
            if old.fingerprint == record.fingerprint and old.same_provenance(record) and same_op:
                self._models.setdefault(name, model)
                return name
            if not replace:
                what = "weights" if old.fingerprint != record.fingerprint else "provenance"
                raise ValueError(
                    f"a model named {name!r} already exists with different {what}; "
                    f"pass replace=True to overwrite it (its cached results are dropped) "
                    f"or choose another name"
                )
            self._drop_results(name)
        if self._store is not None and self.keep_weights:
            record.info["weights_saved"] = self._store.put_weights(record.fingerprint, model)
        self._records[name] = record
        self._models[name] = model
        self._static.pop(name, None)
        if self._store is not None:
            self._store.put_record(record)
        self._touch()
        return name

    def compress(
        self,
        parent: str,
        operation: str | Callable[..., nn.Module],
        *,
        name: str | None = None,
        **params: Any,
    ) -> str:
        """Make a compressed child of ``parent`` and register it with its provenance.

        The parent is never modified. The child records the operation (a built-in name
        from :func:`cnc_widgets.compress`, or a callable's qualified name), every
        parameter including defaults, library versions and the seconds it took.

        Examples
        --------
        >>> reg.compress("base", "prune", amount=0.5)
        'base-prune-0.5'
        >>> reg.compress("base", "quantize_dynamic", name="int8")
        'int8'
        """
        source = self.model(parent)
        params = plain_params(params)
        # A batch given here stands in for the evaluation data (prune_structured before
        # set_data); it is context, not a parameter, so it is neither recorded nor named.
        given_example = params.pop("example_input", None)
        builtin = operations().get(operation) if isinstance(operation, str) else None
        if builtin is not None:
            resolved = {k: v for k, v in builtin["params"].items() if v != "<required>"}
            resolved.update(params)
        else:
            resolved = dict(params)
        grandparent = self._records[parent].parent
        restore_from = None
        if operation == "restore":
            if grandparent is None or grandparent not in self._models:
                raise ValueError(
                    f"restore copies tensors back from the parent of {parent!r}, which has "
                    "none with weights in this session; restore from a model that has a parent"
                )
            restore_from = self._models[grandparent]
        example = given_example
        if example is None and self._data is not None and self._data.inputs is not None:
            example = self._data.batch(0, min(len(self._data), self._data.batch_size))
        start = time.perf_counter()
        # Built-in operations run their passes (tracing, calibration) in eval mode, so a
        # parent left in train mode gives a child with its BatchNorm statistics; a callable
        # gets the copy as it is (it may fine-tune).
        report: dict[str, Any] = {}
        keep = contextlib.nullcontext() if builtin is None else eval_mode(source, inference=None)
        with keep:
            child = apply_operation(
                source,
                operation,
                source=restore_from,
                example_input=example,
                report=report,
                **params,
            )
        if builtin is not None:
            _copy_modes(source, child)
        elapsed = time.perf_counter() - start
        record = operation_record(operation, resolved)
        self._check_runs(child, parent, record["operation"])
        if name is None:
            name = self._free_name(
                default_name(parent, record["operation"], params), child, parent, record
            )
        # "given": the parameters the user wrote, which the views show on the edge.
        info = {
            "versions": record["versions"],
            "elapsed_s": elapsed,
            "callable": record["callable"],
            "given": sorted(params),
            # What the operation did: renamed modules (module_map), pruned widths, ranks.
            **json.loads(json.dumps(report, default=str)),
        }
        if builtin is None:
            # What the callable computes, with its parameters: behaviour the weights and
            # attributes may not show (a private attribute, a patched method) still gets
            # its own results.
            spec = json.dumps(record["params"], sort_keys=True, default=str)
            info[OPERATION_DIGEST] = hashlib.sha256(
                f"{callable_digest(operation)}|{spec}".encode()
            ).hexdigest()
        return self.add(
            name,
            child,
            parent=parent,
            operation=record["operation"],
            params=record["params"],
            info=info,
        )

    def _check_runs(self, child: nn.Module, parent: str, operation: str) -> None:
        """Refuse a child that cannot run on two rows of the evaluation data, so that
        compress() and not evaluate() reports it (skipped before set_data)."""
        if self._data is None or self._data.inputs is None:
            return
        batch = self._data.batch(0, min(2, len(self._data)))
        try:
            with eval_mode(child):
                extract_logits(call_model(child, prepare_inputs(child, batch)))
        except Exception as exc:
            raise ValueError(
                f"{operation} of {parent!r} made a model that fails on the evaluation data "
                f"({type(exc).__name__}: {str(exc)[:300]}); it was not added. Compress a "
                "different parent (e.g. the float32 one) or use another operation"
            ) from exc

    def _free_name(self, base: str, child: nn.Module, parent: str, record: dict[str, Any]) -> str:
        """``base``, or ``base-2``, ``base-3``... when another variant already holds it."""
        name, i = base, 1
        while name in self._records:
            old = self._records[name]
            same = (
                old.parent == parent
                and old.operation == record["operation"]
                and old.params == jsonable_params(name, record["params"])
                and old.fingerprint == model_fingerprint(child)
            )
            if same:
                return name  # a re-run cell: add() makes it a no-op
            i += 1
            name = f"{base}-{i}"
        return name

    def provenance(self) -> pd.DataFrame:
        """One row per model: parent, operation and its parameters."""
        rows = [
            {
                "name": r.name,
                "parent": r.parent,
                "operation": r.operation,
                "operation_params": r.params,
            }
            for r in self._records.values()
        ]
        return pd.DataFrame(rows, columns=["name", *PROVENANCE_COLUMNS]).set_index("name")

    @classmethod
    def from_cnc_json(cls, path: str | Path, *, store: str | Path | None = None) -> ModelRegistry:
        """Read a Compress and Compare experiment file: provenance and metrics, no weights.

        Examples
        --------
        >>> reg = ModelRegistry.from_cnc_json("cnc_imagenet_tutorial.json")
        >>> reg.metrics()["Top-1 Accuracy"]
        """
        records, metrics = cnc_json.read(path)
        reg = cls(store=store)
        reg.metric_info.update(cnc_json.metric_info(path))
        for record in topological(records):
            check_parent(reg._records, record.name, record.parent)
            reg._records[record.name] = record
            reg._static[record.name] = metrics[record.name]
            if reg._store is not None:
                reg._store.put_record(record)
                reg._store.put_static(record.name, metrics[record.name])
        reg._touch()
        return reg

    # -- data and evaluation ------------------------------------------------------

    def set_data(
        self,
        inputs: Any,
        labels: Any,
        *,
        classes: Sequence[str] | None = None,
        instances: Any = None,
        ids: Sequence[Any] | None = None,
        batch_size: int = 64,
        embedding: str | None = None,
    ) -> None:
        """Set the evaluation set every model is run on.

        Parameters
        ----------
        inputs : Tensor (N, ...) or dict of Tensors with N rows
            Passed to the model as ``model(batch)`` or ``model(**batch)``.
        labels : array-like of N integer class indices
        classes : list of str, optional
            Class names, one per model output. Without them the outputs are numbered
            and a model may have more outputs than the labels use (a 1,000-class
            ImageNet model on photographs of a few classes); labels must stay below
            its output width.
        instances : list of N str, or uint8 array (N, H, W) or (N, H, W, 3), optional
            What a person sees per row in the views.
        ids : list of N unique ids, optional
        batch_size : int
        embedding : str, optional
            Dotted name of the module whose output is the representation; default:
            the input of the model's last ``nn.Linear``.
        """
        data = make_data(
            inputs,
            labels,
            classes=classes,
            instances=instances,
            ids=ids,
            batch_size=batch_size,
            embedding=embedding,
            fingerprint="",
        )
        data.fingerprint = f"{data_fingerprint(inputs, data.labels)}|emb={embedding}"
        self._data = data
        if self._store is not None:
            self._store.put_data(data)
        self._touch()

    @property
    def data(self) -> EvalData | None:
        """The evaluation set, or ``None`` before :meth:`set_data`."""
        return self._data

    def _cache_id(self, name: str) -> str | None:
        """What results of ``name`` are cached under: its fingerprint, combined with the
        callable that made it when one did."""
        record = self._records[name]
        made_by = record.info.get(OPERATION_DIGEST)
        if record.fingerprint is None or not made_by:
            return record.fingerprint
        return hashlib.sha256(f"{record.fingerprint}|{made_by}".encode()).hexdigest()

    def _key(self, name: str) -> str | None:
        cache_id = self._cache_id(name)
        if cache_id is None or self._data is None:
            return None
        return f"{cache_id}|{self._data.fingerprint}"

    def evaluate(
        self,
        names: str | Sequence[str] | None = None,
        *,
        progress: bool = True,
        executor: Any = None,
        shard_rows: int | None = None,
        weights: str = "value",
    ) -> None:
        """Run every model that has no cached results for the current data.

        A model that fails (raises, or produces NaN or inf) is reported in an
        :class:`EvaluationError` after all the other models have run; their
        results stay.

        Parameters
        ----------
        names
            One name, several, or ``None`` for every model with weights in the session.
        progress
            Show a progress bar (per model locally; one over all tasks with an executor).
        executor
            A ``concurrent.futures.Executor`` or a Dask ``distributed.Client``: models and
            shards of ``shard_rows`` rows run there, and each model's results are stored
            here as soon as it completes. ``None`` runs in this process.
        shard_rows
            Rows per task with an executor (default 4096), rounded to whole batches.
        weights
            With an executor: ``"value"`` sends each model (pickled) to the workers;
            ``"store"`` sends only its architecture and workers read the weights from
            this registry's store folder (needs ``keep_weights=True`` and a folder every
            worker can read).

        Examples
        --------
        >>> from distributed import Client, LocalCluster  # doctest: +SKIP
        >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
        >>> reg.evaluate(executor=client)  # doctest: +SKIP
        """
        if self._data is None:
            raise ValueError("no evaluation data: call reg.set_data(inputs, labels) first")
        if isinstance(names, str):
            names = [names]
        todo = list(names) if names is not None else [n for n in self._records if n in self._models]
        for name in todo:
            self._require(name)
            if name not in self._models:
                raise ValueError(
                    f"model {name!r} has no weights in this session; add it with "
                    f"reg.add({name!r}, model) to evaluate it"
                )
        todo = [
            name
            for name in todo
            if not (
                self._key(name) in self._results
                or (self._store is not None and self._store.verify_result(self._key(name)))
            )
        ]
        failures: list[EvaluationError] = []
        if executor is not None:
            failures = self._evaluate_on(executor, todo, progress, shard_rows, weights)
        for name in todo if executor is None else []:
            try:
                result = evaluate_one(name, self._models[name], self._data, progress=progress)
            except EvaluationError as exc:
                failures.append(exc)
                continue
            self._keep_result(name, result)
        if failures:
            if len(failures) == 1:
                raise failures[0]
            raise EvaluationError(
                f"{len(failures)} models failed; the others were evaluated:\n"
                + "\n".join(f"- {f}" for f in failures)
            ) from failures[0]

    def _keep_result(self, name: str, result: dict[str, Any]) -> None:
        key = self._key(name)
        self._results[key] = result
        if self._store is not None:
            self._store.put_result(key, result)
        self._touch()

    def _evaluate_on(
        self,
        executor: Any,
        names: list[str],
        progress: bool,
        shard_rows: int | None,
        weights: str,
    ) -> list[EvaluationError]:
        data = self._data
        paths = {}
        if weights == "store":
            if self._store is None or not self.keep_weights:
                raise ValueError(
                    "weights='store' reads weights from the store: open the registry with "
                    "ModelRegistry(store=path, keep_weights=True) on a folder every worker "
                    "can read, or use weights='value'"
                )
            for name in names:
                fp = self._records[name].fingerprint
                if self._store.put_weights(fp, self._models[name]):
                    paths[name] = str(self._store.weights_path(fp).resolve())

        def finish(name: str, result: EvalResult, cost: dict[str, Any]) -> None:
            self._keep_result(name, finish_record(name, result, cost, data))

        return fan_out(
            executor,
            {name: self._models[name] for name in names},
            data,
            finish,
            shard_rows=shard_rows,
            weights=weights,
            weight_paths=paths,
            progress=progress,
        )

    def _cached(self, key: str | None) -> dict[str, Any] | None:
        """The result under ``key`` from memory, else from the store (then kept in memory)."""
        if key is None:
            return None
        if key not in self._results and self._store is not None:
            stored = self._store.get_result(key)
            if stored is not None:
                self._results[key] = stored
        return self._results.get(key)

    def _metrics_of(self, key: str | None) -> dict[str, Any]:
        if key is None:
            return {}
        if key in self._results:
            return self._results[key]["metrics"]
        if self._store is not None:
            return self._store.get_metrics(key) or {}
        return {}

    def result(self, name: str) -> dict[str, Any]:
        """Cached results of ``name`` on the current data: arrays and ``metrics``."""
        self._require(name)
        result = self._cached(self._key(name))
        if result is None:
            raise KeyError(
                f"model {name!r} has not been evaluated on this data: call reg.evaluate()"
            )
        return result

    def compare(self, a: str, b: str) -> Comparison:
        """Compare ``b`` with ``a`` (the reference): predictions, errors, neighbourhoods,
        OOD flags, adversarial sets, layers and CKA. Both must be evaluated.

        Examples
        --------
        >>> cmp = reg.compare("base", "int8")
        >>> cmp.agreement, cmp.knn_agreement(10)
        """
        for name in (a, b):
            self._require(name)
            if self._cached(self._key(name)) is None:
                raise ValueError(
                    f"model {name!r} has not been evaluated on this data: call reg.evaluate()"
                )
        return Comparison(self, a, b)

    def compare_many(
        self,
        reference: str,
        others: Sequence[str] | None = None,
        *,
        k: int = 10,
        adversarial: bool = True,
        executor: Any = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """One row per compared model: every scalar measure of :meth:`compare`.

        ``others`` defaults to every evaluated model but the reference. With an
        ``executor`` (a ``concurrent.futures.Executor`` or a Dask ``Client``) each pair
        whose measures are not cached yet runs as one task (attacks included) and its
        measures are stored here as it completes; cached pairs are read here.
        """
        if others is None:
            others = [
                n
                for n in self._records
                if n != reference and self._cached(self._key(n)) is not None
            ]
        if executor is None:
            rows = [
                self.compare(reference, name).summary(k=k, adversarial=adversarial)
                for name in others
            ]
        else:
            rows = self._compare_on(executor, reference, list(others), k, adversarial, progress)
        return pd.DataFrame(rows).set_index("model")

    def _compare_on(
        self,
        executor: Any,
        reference: str,
        others: list[str],
        k: int,
        adversarial: bool,
        progress: bool,
    ) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        futures = {}
        pool = as_executor(executor)
        for name in others:
            self.compare(reference, name)  # checks both are evaluated, like the local path
            try:
                lookup = self._detached(reference, name, lookup=True)
                rows[name] = Comparison(lookup, reference, name).summary(
                    k=k, adversarial=adversarial
                )
            except MissingMeasure:
                source = self._detached(reference, name, lookup=False)
                futures[pool.submit(summary_task, source, reference, name, k, adversarial)] = name
        bar = tqdm(total=len(futures), desc="compare", unit="pair", disable=not progress)
        failures = []
        try:
            for future in as_completed(futures):
                name = futures[future]
                bar.update(1)
                try:
                    row, computed = future.result()
                except Exception as exc:
                    failures.append(f"{reference!r} vs {name!r}: {type(exc).__name__}: {exc}")
                    continue
                for a, b, measure, params, value in computed:
                    self.cached_measure(a, b, measure, params, lambda v=value: v)
                rows[name] = row
        finally:
            bar.close()
        if failures:
            raise EvaluationError(
                f"{len(failures)} comparisons failed; the others were stored:\n"
                + "\n".join(f"- {f}" for f in failures)
            )
        return [rows[name] for name in others]

    def _detached(self, a: str, b: str, *, lookup: bool) -> DetachedSource:
        """What comparing ``a`` and ``b`` needs, detached from this registry."""
        names = {a, b}
        records = {}
        models = {}
        for start in (a, b):
            cursor: str | None = start
            while cursor is not None:
                records[cursor] = self._records[cursor]
                model = self._models.get(cursor)
                if model is not None and not lookup:
                    models[cursor] = model
                if cursor not in names and model is not None and has_gradients(model):
                    break  # the nearest float ancestor is all a transfer attack needs
                cursor = self._records[cursor].parent

        def cached_only(ca: str, cb: str, measure: str, params: dict[str, Any]) -> Any:
            found, value = self._lookup_measure(self._measure_key(ca, cb, measure, params))
            if not found:
                raise MissingMeasure(measure)
            return value

        return DetachedSource(
            self._data,
            {n: self.result(n) for n in names},
            models,
            records,
            lookup=cached_only if lookup else None,
        )

    def cached_measure(
        self, a: str, b: str, measure: str, params: dict[str, Any], compute: Callable[[], Any]
    ) -> Any:
        """``compute()`` once per (weights of a and b, data, measure, parameters).

        The value is kept in memory and in the store, keyed by both models'
        fingerprints, the data's fingerprint, the measure and its parameters.
        """
        key = self._measure_key(a, b, measure, params)
        found, value = self._lookup_measure(key)
        if found:
            return value
        value = compute()
        self._measures[key] = value
        if self._store is not None:
            self._store.put_result(key, {"metrics": encode_value(value)})
        return value

    def _measure_key(self, a: str, b: str, measure: str, params: dict[str, Any]) -> str:
        fa, fb = self._cache_id(a), self._cache_id(b)
        spec = json.dumps(params, sort_keys=True, default=str)
        return f"cmp|{fa}|{fb}|{self._data.fingerprint}|{measure}|{spec}"

    def _lookup_measure(self, key: str) -> tuple[bool, Any]:
        if key in self._measures:
            return True, self._measures[key]
        if self._store is not None:
            stored = self._store.get_metrics(key)
            if stored is not None:
                self._measures[key] = decode_value(stored)
                return True, self._measures[key]
        return False, None

    def metrics(self, filtered: bool = False) -> pd.DataFrame:
        """One row per model: provenance, efficiency and quality metrics.

        Columns include ``parent``, ``operation``, ``operation_params``, ``params``
        (the parameter count), ``size_bytes`` and ``accuracy``; models not yet
        evaluated have NaN measurements. ``filtered=True`` keeps only the models
        inside ``filters``.
        """
        rows = []
        for name, record in self._records.items():
            row: dict[str, Any] = {
                "name": name,
                "parent": record.parent,
                "operation": record.operation,
                "operation_params": record.params,
            }
            row.update(self._static.get(name, {}))
            row.update(self._metrics_of(self._key(name)))
            rows.append(row)
        frame = (
            pd.DataFrame(rows, columns=["name", *PROVENANCE_COLUMNS])
            if not rows
            else pd.DataFrame(rows)
        )
        frame = frame.set_index("name")
        missing = [c for c in MEASURE_COLUMNS if c not in frame.columns]
        for column in missing:
            frame[column] = np.nan
        if filtered and self.filters:
            frame = frame.drop(index=outside(frame, self.filters))
        return frame

    def pareto(
        self,
        x: str = "size_bytes",
        y: str = "accuracy",
        *,
        x_better: str = "lower",
        y_better: str = "higher",
    ) -> list[str]:
        """The models on the Pareto frontier of metrics ``x`` and ``y``, by increasing ``x``.

        A model is on it when no other model is at least as good on both metrics and
        better on one; models missing either metric are left out. Directions default
        to smaller ``x`` and larger ``y`` (size against accuracy).

        Examples
        --------
        >>> reg.pareto("size_bytes", "accuracy")
        ['int8', 'base-prune-0.5', 'base']
        >>> reg.pareto("latency_ms", "accuracy", x_better="lower")
        """
        table = self.metrics()
        for column in (x, y):
            if column not in table.columns:
                numeric = [c for c in table.columns if c not in PROVENANCE_COLUMNS]
                raise ValueError(f"no metric {column!r}; metrics() has {numeric}")
        xs = pd.to_numeric(table[x], errors="coerce").to_numpy(dtype=float)
        ys = pd.to_numeric(table[y], errors="coerce").to_numpy(dtype=float)
        return frontier_names(list(table.index), xs, ys, x_better=x_better, y_better=y_better)

    def _drop_results(self, name: str) -> None:
        """Forget every result of ``name``'s weights, on any data, here and in the store."""
        for fp in {self._records[name].fingerprint, self._cache_id(name)} - {None}:
            for k in [k for k in self._results if k.startswith(fp + "|")]:
                del self._results[k]
            if self._store is not None:
                self._store.drop_results(fp)

    def _touch(self) -> None:
        self.revision += 1

    def _load_from_store(self) -> None:
        assert self._store is not None
        for record in self._store.records():
            self._records[record.name] = record
        self._static.update(self._store.statics())
        self._data = self._store.get_data()


OPERATION_DIGEST = "operation_digest"


def _copy_modes(parent: nn.Module, child: nn.Module) -> None:
    """Give the child's modules the train/eval mode of the parent's module of that name."""
    modes = {name: m.training for name, m in parent.named_modules()}
    for name, m in child.named_modules():
        if name in modes:
            m.training = modes[name]


_FLOAT_NAMES = {  # torch dtype -> safetensors dtype name
    "torch.float32": "F32",
    "torch.float16": "F16",
    "torch.bfloat16": "BF16",
    "torch.float64": "F64",
}


def _name_part(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value.rsplit(".", 1)[-1] if "." in value and " " not in value else value
    if isinstance(value, type) or callable(value):
        return getattr(value, "__name__", type(value).__name__)
    if isinstance(value, (list, tuple, set, frozenset)):
        parts = [_name_part(v) for v in value]
        return "+".join(p for p in parts if p) or None
    return None


def default_name(parent: str, operation: str, params: dict[str, Any]) -> str:
    """``parent-operation-v1-v2`` from the parameter values, e.g. ``base-prune-0.5-global``.

    Lists join their items with ``+`` and classes give their name, so
    ``prune(amount=0.5, modules=[nn.Linear])`` is ``base-prune-0.5-Linear`` and
    ``drop_layers(layers=[3, 4])`` is ``base-drop_layers-3+4``.
    """
    short = operation.rsplit(".", 1)[-1]
    values = [part for v in params.values() if (part := _name_part(v))]
    return "-".join([parent, short, *values])


def encode_value(value: Any) -> dict[str, Any]:
    """A JSON form of a cached measure: a number, a dict, a Series or a DataFrame.

    Values travel as Python floats, which ``json`` writes with every digit (shortest
    repr that reads back to the same float64), so a table comes back from the store bit
    for bit; pandas' own JSON rounds to 10 significant digits.
    """
    if isinstance(value, pd.DataFrame):
        return {
            "kind": "table",
            "index": _column(value.index),
            "index_name": value.index.name,
            "columns": [_plain(c) for c in value.columns],
            "columns_name": value.columns.name,
            "data": [_column(value[c]) for c in value.columns],
        }
    if isinstance(value, pd.Series):
        return {
            "kind": "vector",
            "index": _column(value.index),
            "index_name": value.index.name,
            "name": _plain(value.name),
            "data": _column(value),
        }
    if isinstance(value, dict):
        return {"kind": "dict", "value": value}
    return {"kind": "float", "value": float(value)}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _column(values: Any) -> dict[str, Any]:
    array = np.asarray(values)
    return {"dtype": str(array.dtype), "values": [_plain(v) for v in array.tolist()]}


def _array(column: dict[str, Any]) -> np.ndarray:
    dtype = column["dtype"]
    if dtype == "object" or dtype.startswith(("<U", "|S")):
        return np.array(column["values"], dtype=object)
    return np.array(column["values"], dtype=dtype)


def decode_value(stored: dict[str, Any]) -> Any:
    """The value :func:`encode_value` encoded (older stores' pandas JSON too)."""
    kind, value = stored["kind"], stored.get("value")
    if kind == "table":
        index = pd.Index(_array(stored["index"]), name=stored["index_name"])
        frame = pd.DataFrame({i: _array(c) for i, c in enumerate(stored["data"])}, index=index)
        frame.columns = pd.Index(stored["columns"], name=stored["columns_name"])
        return frame
    if kind == "vector":
        index = pd.Index(_array(stored["index"]), name=stored["index_name"])
        return pd.Series(_array(stored["data"]), index=index, name=stored["name"])
    if kind == "frame":
        frame = pd.read_json(io.StringIO(value), orient="split")
        return frame.rename_axis(stored.get("index"))
    if kind == "series":
        series = pd.read_json(io.StringIO(value), orient="split", typ="series")
        return series.rename_axis(stored.get("index"))
    return value
