"""ModelRegistry: the models of one compression study, their provenance and results.

The facade: traits every view follows (``selected``, ``filters``, ``revision``) and the
public verbs. The catalogue of records and models, the result cache and scheduling are
mixins in their own modules of this package.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import traitlets
from torch import nn

from ..comparison import Comparison
from ..evaluate.data import EvalData, as_tensors, make_data, rows_of
from ..evaluate.fingerprint import data_fingerprint
from ..formatting import format_table
from ..metrics.adversarial import CraftedCache
from ..metrics.pareto import frontier_names
from ..provenance import ModelRecord, check_parent, cnc_json, topological
from ..provenance.comparability import comparability as _comparability
from ..tasks import Task, get_task
from .cache import ResultCache
from .catalogue import PROVENANCE_COLUMNS, Catalogue
from .filters import check_filters, outside
from .restores import Restores
from .scheduling import Scheduling
from .store import Store

# Measurements every metrics() table has, NaN until a model is evaluated (after the
# task's quality columns: accuracy for a classifier).
EFFICIENCY_COLUMNS = [
    "params",
    "nonzero_params",
    "sparsity",
    "size_bytes",
    "sparse_size_bytes",
    "latency_ms",
    "macs",
]


class ModelRegistry(Catalogue, ResultCache, Scheduling, Restores, traitlets.HasTraits):
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
        #: Adversarial batches crafted on this registry's models, reused by transfer attacks
        #: (``compare_many`` crafts once per crafter); this registry's alone.
        self.crafted_attacks = CraftedCache()
        # metric -> {"format", "unit", "min", "max"} where a source declares them (C&C files).
        self.metric_info: dict[str, dict[str, Any]] = {}
        self._store = None
        self.keep_weights = keep_weights
        if store is not None:
            self._store = Store(store)
            self._load_from_store()

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

    def __repr__(self) -> str:
        quality = self.task.quality
        evaluated = int(self.metrics()[quality].notna().sum()) if self._records else 0
        text = f"ModelRegistry({len(self)} models, {evaluated} evaluated"
        if self.filters:
            text += f", {len(self.filtered_out())} outside filters {dict(self.filters)}"
        return text + ")"

    def _repr_html_(self) -> str:
        """The metrics table with units (15.5 MB, 94.37%), as a notebook shows it."""
        table = self.metrics().drop(columns=["operation_params"])
        summary = html.escape(repr(self))
        return f"<p>{summary}</p>" + format_table(table, self.metric_info).to_html(na_rep="n/a")

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

    def set_data(
        self,
        inputs: Any,
        labels: Any = None,
        *,
        task: str = "classification",
        classes: Sequence[str] | None = None,
        instances: Any = None,
        ids: Sequence[Any] | None = None,
        batch_size: int = 64,
        embedding: str | None = None,
        **task_options: Any,
    ) -> None:
        """Set the evaluation set every model is run on.

        Parameters
        ----------
        inputs : Tensor (N, ...) or dict of Tensors with N rows
            Passed to the model as ``model(batch)`` or ``model(**batch)``.
        labels : array-like of N integer class indices
            Required for classification; other tasks take their references as options.
        task : str
            What the models do: ``"classification"`` (the default), or another name of
            :func:`cnc_widgets.tasks.task_names`. It defines the quality metrics, the
            predictions and errors a comparison counts, and what the views show.
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
        **task_options
            The task's own options (a tokenizer, references, ...); see the task's module.
        """
        the_task = get_task(task)
        given, inputs = inputs, as_tensors(inputs)
        n = rows_of(inputs)
        if n == 0:
            raise ValueError("inputs has no rows; pass at least one instance")
        options = the_task.options(task_options, n)
        # A tokenizer's BatchEncoding still knows its sequence_ids: the task may check them.
        the_task.check_inputs(given if hasattr(given, "sequence_ids") else inputs, options)
        checked = the_task.labels(labels, n, options)
        data = make_data(
            inputs,
            checked,
            classes=classes,
            instances=instances,
            ids=ids,
            batch_size=batch_size,
            embedding=embedding,
            fingerprint="",
            task=the_task.name,
            task_options=options,
        )
        data.fingerprint = f"{data_fingerprint(data.inputs, data.labels)}|emb={embedding}"
        if the_task.name != "classification":
            # The batch size is part of the key: an int8 dynamic model scales activations
            # per batch, so its language-model numbers depend on how rows were batched.
            spec = json.dumps(
                {**data.stored_options(), "batch_size": data.batch_size},
                sort_keys=True,
                default=str,
            )
            digest = hashlib.sha256(spec.encode()).hexdigest()[:16]
            data.fingerprint += f"|task={the_task.name}:{digest}"
        self._data = data
        if self._store is not None:
            self._store.put_data(data)
        self._touch()

    @property
    def task(self) -> Task:
        """The task of the evaluation set (classification before :meth:`set_data`)."""
        if self._data is None:
            return get_task("classification")
        return get_task(self._data.task, self._data.task_options)

    @property
    def data(self) -> EvalData | None:
        """The evaluation set, or ``None`` before :meth:`set_data`."""
        return self._data

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
        columns = [*self.task.metric_columns(), *EFFICIENCY_COLUMNS]
        missing = [c for c in columns if c not in frame.columns]
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

    def _touch(self) -> None:
        self.revision += 1

    def _load_from_store(self) -> None:
        assert self._store is not None
        for record in self._store.records():
            self._records[record.name] = record
        self._static.update(self._store.statics())
        self._data = self._store.get_data()
