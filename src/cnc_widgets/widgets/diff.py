"""PredictionDiff: what compression did to predictions, for a reference and 1-4 models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import traitlets

from ..comparison import Comparison
from ..registry import ModelRegistry
from ._bundle import bundle
from ._diff_answers import answers_view, context_rows
from ._diff_lm import lm_view, token_rows
from ._previews import EMBED_LIMIT, previews
from ._sync import json_value
from ._view import RegistryView, Summary
from ._wire import pack, smallest_int, split_buffers

MAX_COMPARED = 4
TOP_CHANGES = 3

# One line each, shown on hover beside the numbers.
EXPLAIN = {
    "accuracy": "fraction of instances whose prediction is the true label",
    "agreement": "fraction of instances on which this model and the reference predict the same",
    "error_jaccard": "|errors of both| / |errors of either|: do they get the same ones wrong? "
    "(1 when neither errs)",
    "knn": "mean Jaccard overlap of each instance's 10 nearest neighbours (cosine, embeddings) "
    "under the two models",
    "ood": "Jaccard of the instances each model flags as out of distribution (Deep kNN, k=50, "
    "95th percentile of held-out scores; random 50/25/25 split, seed 0)",
    "adversarial": "Jaccard of the instances an L-inf PGD attack flips for each model (256 "
    "instances, eps 5% of the input range, 10 steps); int8/half models by transfer from their "
    "float ancestor",
}


def resolve(registry: ModelRegistry, a: str | None, b: str | Sequence[str] | None) -> list[str]:
    """The reference then the compared models; checks names and results, errors say what to do."""
    compared = [b] if isinstance(b, str) else list(b or [])
    names = [a, *compared]
    if a is None or not compared:
        raise ValueError(
            "give a reference and at least one model to compare: PredictionDiff(reg, a='base', "
            "b='int8'), or neither to follow reg.selected"
        )
    if len(compared) > MAX_COMPARED:
        raise ValueError(
            f"{len(compared)} models to compare; the diff shows a reference and at most "
            f"{MAX_COMPARED} (pass b as a list of up to {MAX_COMPARED} names)"
        )
    records = [registry.record(name) for name in names]  # KeyError naming the known models
    for name, record in zip(names, records, strict=True):
        if record.fingerprint is None:
            raise ValueError(
                f"model {name!r} has metrics only (read from {record.info.get('source', 'a file')})"
                ", no predictions to compare; add the model with reg.add and reg.evaluate() it"
            )
    if registry.data is None:
        raise ValueError("the registry has no evaluation data: call reg.set_data(inputs, labels)")
    for name in names:
        try:
            registry.result(name)
        except KeyError:
            raise ValueError(
                f"model {name!r} has not been evaluated on this data: call reg.evaluate()"
            ) from None
    return [a, *compared]


def instance_columns(registry: ModelRegistry, names: Sequence[str]) -> dict[str, Any]:
    """Per-instance columns of ``names`` (first = reference), as typed binary buffers.

    ``pred`` and ``conf`` (probability of the true label) have one row per model;
    ``kl`` (KL(p_ref || p_m), nats) and ``mse`` (mean squared logit difference) one row
    per compared model. Predictions travel as the narrowest integer type, the rest as
    float32.
    """
    data = registry.data
    labels = data.labels
    n = len(labels)
    logits = [np.asarray(registry.result(name)["logits"], dtype=np.float64) for name in names]
    log_p = [z - z.max(1, keepdims=True) for z in logits]
    log_p = [lp - np.log(np.exp(lp).sum(1, keepdims=True)) for lp in log_p]
    pred = np.stack([z.argmax(1) for z in logits])
    conf = np.stack([np.exp(lp[np.arange(n), labels]) for lp in log_p])
    p_ref = np.exp(log_p[0])
    kl, mse = [], []
    for lp, z in zip(log_p[1:], logits[1:], strict=True):
        with np.errstate(invalid="ignore"):
            terms = np.where(p_ref > 0, p_ref * (log_p[0] - lp), 0.0)
        kl.append(np.maximum(terms.sum(1), 0.0))
        mse.append(np.mean((logits[0] - z) ** 2, axis=1))
    width = len(names) - 1
    int_type = smallest_int(np.concatenate([labels, pred.ravel()]))
    default_ids = data.ids == [str(i) for i in range(n)]
    return {
        "n": n,
        "ids": None if default_ids else list(data.ids),
        "label": pack(labels, int_type),
        "pred": pack(pred, int_type),
        "conf": pack(conf, "float32"),
        "kl": pack(np.stack(kl) if kl else np.zeros((0, n)), "float32"),
        "mse": pack(np.stack(mse) if mse else np.zeros((width, n)), "float32"),
    }


def class_summary(registry: ModelRegistry, names: Sequence[str]) -> dict[str, Any]:
    """Per true class: count, each model's accuracy, and per compared model the change matrix
    and the most common prediction changes (reference's class -> compared model's class)."""
    data = registry.data
    labels, n_classes = data.labels, len(data.classes)
    preds = [registry.result(name)["logits"].argmax(1) for name in names]
    count = np.bincount(labels, minlength=n_classes)
    correct = np.stack(
        [np.bincount(labels, weights=p == labels, minlength=n_classes) for p in preds]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, correct / np.maximum(count, 1), np.nan)
    matrices, changes = [], []
    for p in preds[1:]:
        matrices.append(
            np.bincount(preds[0] * n_classes + p, minlength=n_classes * n_classes).reshape(
                n_classes, n_classes
            )
        )
        moved = preds[0] != p
        key = (labels[moved] * n_classes + preds[0][moved]) * n_classes + p[moved]
        triples = np.bincount(key, minlength=n_classes**3).reshape(n_classes, n_classes**2)
        per_class = []
        for c in range(n_classes):
            top = np.argsort(-triples[c], kind="stable")[:TOP_CHANGES]
            per_class.append(
                [
                    [int(k // n_classes), int(k % n_classes), int(triples[c, k])]
                    for k in top
                    if triples[c, k] > 0
                ]
            )
        changes.append(per_class)
    return {
        "count": pack(count, "int32"),
        "accuracy": pack(accuracy, "float64"),
        "change": pack(
            np.stack(matrices) if matrices else np.zeros((0, n_classes, n_classes)), "int32"
        ),
        "top_changes": changes,
    }


class _NotCached(Exception):
    """Raised instead of computing a measure (see :class:`_CachedOnly`)."""


class _CachedOnly:
    """The registry as a comparison's result source that answers from its cache only:
    a measure that was never computed raises :class:`_NotCached` instead of running."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    def cached_measure(self, a: str, b: str, measure: str, params: dict, compute: Any) -> Any:
        def refuse() -> Any:
            raise _NotCached(measure)

        return self._registry.cached_measure(a, b, measure, params, refuse)


def cached_adversarial(registry: ModelRegistry, a: str, b: str) -> dict[str, Any] | None:
    """The adversarial overlap of ``b`` with ``a`` and its description, if it was computed
    before (in this session or in the registry's store); ``None`` otherwise, never attacking."""
    try:
        details = Comparison(_CachedOnly(registry), a, b).adversarial_details()
    except (_NotCached, KeyError, ValueError):
        return None
    return {"value": float(details["value"]), "info": json_value(details)}


def summary_rows(registry: ModelRegistry, names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per model: accuracy, then for compared models the agreement measures."""
    labels = registry.data.labels
    rows = []
    for i, name in enumerate(names):
        pred = registry.result(name)["logits"].argmax(1)
        row: dict[str, Any] = {"name": name, "accuracy": float(np.mean(pred == labels))}
        if i:
            cmp = registry.compare(names[0], name)
            row["agreement"] = cmp.agreement
            row["error_jaccard"] = cmp.error_jaccard
            for key, compute in (
                ("knn", lambda c=cmp: c.knn_agreement(10)),
                ("ood", cmp.ood_agreement),
            ):
                try:
                    row[key] = float(compute())
                except (KeyError, ValueError) as exc:
                    row[key] = None
                    row[f"{key}_error"] = str(exc)
            cached = cached_adversarial(registry, names[0], name)
            row["adversarial"] = None if cached is None else cached["value"]
            if cached is not None:
                row["adversarial_info"] = cached["info"]
        rows.append(json_value(row))
    return rows


class PredictionDiff(RegistryView):
    """Predictions of a reference model against one to four compressed variants.

    Given no names it follows ``reg.selected``: the first selected model is the
    reference, the next (up to four) are compared with it. Shows the summary
    measures, the change matrix, per-class accuracy and a sortable, filterable
    table of every instance; ``selected_instances`` holds the ids of the rows
    chosen in the table (set it from Python to highlight rows).

    Examples
    --------
    >>> diff = cnc.PredictionDiff(reg, a="base", b="int8")
    >>> diff.selected_instances      # ids of the rows clicked in the table
    >>> diff.selected_instances = [5, "7"]   # ints or strings; kept as the ids' strings

    Traits (besides :class:`RegistryView`'s ``selected``, ``filters``, ``filtered_out``), all
    Python -> browser except ``selected_instances`` (both ways): ``reference`` and
    ``compared`` (names), ``status`` (why nothing is shown, "" otherwise), ``classes``,
    ``summary`` (one row of measures per model), ``explain`` (what each measure means),
    ``per_class`` (:func:`class_summary`), ``table`` (:func:`instance_columns`), ``previews``
    (the embedded instance previews) and ``embed_limit``. Previews beyond those and the
    adversarial attack travel as custom messages (``ping``, ``rows``, ``adversarial``).

    Other tasks (``task``: the data's task) replace ``table`` and ``per_class`` with
    ``task_view``: language models (:func:`~._diff_lm.lm_view`: one row per sequence, the
    llama.cpp statistics, top-1 substitutions; ``details`` holds the scored tokens of the
    first sequences, the rest come with a ``tokens`` message) and answer tasks
    (:func:`~._diff_answers.answers_view`: both answers per question, EM/F1; ``details``
    holds the first contexts and answer spans, the rest come with a ``context`` message).
    """

    _esm = bundle("diff")
    reference = traitlets.Unicode("").tag(sync=True)
    compared = traitlets.List(traitlets.Unicode()).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    classes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    summary = traitlets.List(traitlets.Dict()).tag(sync=True)
    explain = traitlets.Dict(EXPLAIN).tag(sync=True)
    per_class = traitlets.Dict().tag(sync=True)
    table = traitlets.Dict().tag(sync=True)
    previews = traitlets.Dict().tag(sync=True)
    task = traitlets.Unicode("classification").tag(sync=True)
    task_view = traitlets.Dict().tag(sync=True)
    details = traitlets.Dict().tag(sync=True)
    embed_limit = traitlets.Int(EMBED_LIMIT).tag(sync=True)
    # Any element type here: _instance_ids turns ints (numpy's too) into the ids' strings.
    selected_instances = traitlets.List().tag(sync=True)

    def __init__(
        self,
        registry: ModelRegistry,
        a: str | None = None,
        b: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.a, self.b = a, b
        if a is not None or b is not None:
            resolve(registry, a, b)  # wrong names fail here, before anything is shown
        self._shown: tuple[Any, ...] | None = None
        super().__init__(registry, **kwargs)
        self.observe_registry(self._refresh, ["revision", "selected"])
        self.on_msg(self._on_message)
        self._refresh()

    @traitlets.validate("selected_instances")
    def _instance_ids(self, proposal: dict[str, Any]) -> list[str]:
        """Ids as the data holds them (strings): ``[5]`` and ``["5"]`` name the same row."""
        wanted = []
        for value in proposal["value"]:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, int, np.integer)):
                raise traitlets.TraitError(
                    f"selected_instances holds instance ids (int or str), got {value!r}"
                )
            wanted.append(str(int(value)) if not isinstance(value, str) else value)
        data = self.registry.data
        if data is not None and wanted:
            known = set(data.ids)
            unknown = [v for v in wanted if v not in known]
            if unknown:
                raise traitlets.TraitError(
                    f"no instance with id {unknown[:5]} in the evaluation data; ids are "
                    f"{data.ids[:3]}... (reg.data.ids)"
                )
        return wanted

    def summary_table(self) -> Summary:
        """The summary measures of each compared model against the reference."""
        if not self.reference or not self.summary:
            return Summary("Prediction diff: nothing to compare", pd.DataFrame(), [self.status])
        table = pd.DataFrame(self.summary)
        if "name" in table:
            table = table.set_index("name").rename_axis("model")
        shown = ", ".join(self.compared)
        return Summary(f"Prediction diff: {shown} against {self.reference}", table)

    @property
    def follows_selection(self) -> bool:
        """True when no names were given: the view compares ``reg.selected``."""
        return self.a is None and self.b is None

    def _names(self) -> list[str]:
        if not self.follows_selection:
            return resolve(self.registry, self.a, self.b)
        chosen = list(self.registry.selected)
        if len(chosen) < 2:
            hint = (
                f"Select a second model to compare with {chosen[0]!r}"
                if chosen
                else "Select two models"
            )
            raise ValueError(
                f"{hint} (shift-click in the scatter or the provenance graph; the first is the "
                "reference), or show cnc.PredictionDiff(reg, a='base', b='pruned')"
            )
        return resolve(self.registry, chosen[0], chosen[1 : 1 + MAX_COMPARED])

    def _refresh(self, _change: Any = None) -> None:
        try:
            names = self._names()
        except (KeyError, ValueError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            with self.hold_sync():
                self.status = str(message)
                self.reference, self.compared = "", []
            self._shown = None
            return
        data = self.registry.data
        signature = (
            tuple(names),
            tuple(self.registry.record(n).fingerprint for n in names),
            data.fingerprint,
        )
        if signature == self._shown:
            return
        self._shown = signature
        payload, buffers = previews(data, range(min(len(data), self.embed_limit)))
        payload["count"] = len(payload.pop("rows"))
        task = self.registry.task
        if task.name != "classification":
            self._refresh_task(task, names, {**payload, "data": buffers[0] if buffers else None})
            return
        with self.hold_sync():
            self.task, self.task_view, self.details = "classification", {}, {}
            self.classes = list(data.classes)
            self.table = instance_columns(self.registry, names)
            self.per_class = class_summary(self.registry, names)
            self.summary = summary_rows(self.registry, names)
            self.previews = {**payload, "data": buffers[0] if buffers else None}
            self.reference, self.compared = names[0], names[1:]
            self.status = ""

    def _refresh_task(self, task: Any, names: list[str], shown_previews: dict) -> None:
        """Language models and answer tasks: their own payload instead of the classifier's."""
        if task.name == "causal_lm":
            view = lm_view(self.registry, names)
            details = token_rows(self.registry, names, range(view["embedded"]))
            extra = [m["stats"] or {} for m in view["models"]]
        else:
            view = answers_view(self.registry, names)
            details = context_rows(self.registry, names, range(view["embedded"]))
            extra = [m["summary"] for m in view["models"]]
        rows = [{"name": names[0]}]
        for name, more in zip(names[1:], extra, strict=True):
            rows.append(json_value({"name": name, **more}))
        with self.hold_sync():
            self.classes, self.table, self.per_class = [], {}, {}
            self.task, self.task_view, self.details = task.name, view, details
            self.summary = rows
            self.previews = shown_previews
            self.reference, self.compared = names[0], names[1:]
            self.status = ""

    # -- messages from the browser ---------------------------------------------------

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: list[Any]) -> None:
        kind = content.get("type")
        if kind == "ping":
            self.send({"type": "pong"})
        elif kind == "rows":
            rows = [int(r) for r in content.get("rows", [])][:500]
            payload, buffers = previews(self.registry.data, rows)
            self.send({"type": "rows", **payload}, buffers)
        elif kind in ("tokens", "context") and self.reference:
            rows = [int(r) for r in content.get("rows", [])][:50]
            names = [self.reference, *self.compared]
            make = token_rows if kind == "tokens" else context_rows
            message, buffers = split_buffers({"type": kind, **make(self.registry, names, rows)})
            self.send(message, buffers)
        elif kind == "adversarial":
            self._adversarial(str(content.get("model", "")))

    def _adversarial(self, name: str) -> None:
        if name not in self.compared:
            return
        self.send({"type": "adversarial", "model": name, "status": "running"})
        try:
            details = self.registry.compare(self.reference, name).adversarial_details()
            value = float(details["value"])
            info = json_value(details)
        except (KeyError, ValueError, RuntimeError) as exc:
            self.send(
                {"type": "adversarial", "model": name, "status": "error", "message": str(exc)}
            )
            return
        rows = [dict(r) for r in self.summary]
        for row in rows:
            if row["name"] == name:
                row["adversarial"] = float(value)
                row["adversarial_info"] = info
        self.summary = rows
        self.send({"type": "adversarial", "model": name, "status": "done", "value": value})
