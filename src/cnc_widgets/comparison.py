"""Comparison of two registered models: b is compared with a, the reference.

Predictions, errors and per-instance measures come from the cached results of
both models; neighbourhoods and OOD flags from their cached embeddings; the layer
table, CKA and adversarial sets run the models (their weights must be in the
session). Every measure is cached in the registry's store under both models'
fingerprints, the data's fingerprint and the measure's parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import metrics as m
from .evaluate.data import EvalData
from .evaluate.heap import roomy_heap
from .metrics.adversarial import (
    Attack,
    adversarial_overlap,
    attack_model,
    has_gradients,
    is_continuous,
)
from .metrics.histograms import module_histograms
from .metrics.layers import cka_between, default_cka_modules, layers_and_cka, module_weights
from .provenance import ModelRecord, ModuleCorrespondence, module_correspondence

DEFAULT_KS = (10, 20, 50, 100, 200, 500)


class ResultSource(Protocol):
    """What a comparison needs from whoever holds the models: :class:`ModelRegistry` is one.

    A narrow interface, so that a comparison can be built and tested without a registry
    and the registry can import this module without this module importing it.
    """

    @property
    def data(self) -> EvalData | None:
        """The evaluation set both models were run on."""

    def result(self, name: str) -> dict[str, Any]:
        """Cached evaluation arrays of ``name`` (``logits``, ``embeddings``, ...)."""

    def model(self, name: str) -> nn.Module:
        """The module registered as ``name`` (raises ``KeyError`` without weights)."""

    def record(self, name: str) -> ModelRecord:
        """The provenance record of ``name`` (its ``parent``)."""

    def cached_measure(
        self, a: str, b: str, measure: str, params: dict[str, Any], compute: Callable[[], Any]
    ) -> Any:
        """``compute()`` once per (weights of a and b, data, measure, params), then cached."""


class Comparison:
    """What compression changed between model ``a`` (reference) and model ``b``.

    Examples
    --------
    >>> cmp = reg.compare("base", "int8")
    >>> cmp.agreement, cmp.error_jaccard
    >>> cmp.knn_agreement(10), cmp.ood_agreement(), cmp.adversarial_overlap()
    >>> cmp.layers[["weight_rel_change", "cka"]]
    """

    def __init__(self, registry: ResultSource, a: str, b: str) -> None:
        self.registry, self.a, self.b = registry, a, b
        self._ra, self._rb = registry.result(a), registry.result(b)
        ca, cb = self._ra["logits"].shape[1], self._rb["logits"].shape[1]
        if ca != cb:
            raise ValueError(
                f"model {a!r} has {ca} classes but {b!r} has {cb}; compare models that "
                "share one label set"
            )
        data = registry.data
        assert data is not None
        # Bound to the data it was made on: measures computed later come from these
        # results and are cached under this data's key, so new data must not sneak in.
        self.data = data
        self.labels = data.labels
        self.classes = data.class_names(ca)
        self.adversarial: dict[str, Any] = {}
        self.knn_k: int | None = None

    def __repr__(self) -> str:
        return (
            f"Comparison({self.a!r} -> {self.b!r}: agreement {self.agreement:.4f}, "
            f"error_jaccard {self.error_jaccard:.4f})"
        )

    def _memo(self, measure: str, params: dict[str, Any], compute: Callable[[], Any]) -> Any:
        current = self.registry.data
        if current is None or current.fingerprint != self.data.fingerprint:
            raise ValueError(
                f"this comparison of {self.a!r} and {self.b!r} was made on other evaluation "
                "data (set_data was called since); call reg.compare("
                f"{self.a!r}, {self.b!r}) again for the current data"
            )
        return self.registry.cached_measure(self.a, self.b, measure, params, compute)

    # -- predictions and errors ---------------------------------------------------

    @property
    def pred_a(self) -> np.ndarray:
        return self._ra["logits"].argmax(1)

    @property
    def pred_b(self) -> np.ndarray:
        return self._rb["logits"].argmax(1)

    @cached_property
    def agreement(self) -> float:
        """Fraction of instances on which both models predict the same class."""
        return m.agreement(self.pred_a, self.pred_b)

    @cached_property
    def error_jaccard(self) -> float:
        """|E_a ∩ E_b| / |E_a ∪ E_b| of the two error sets; 1.0 when neither errs."""
        return m.error_jaccard(self.pred_a, self.pred_b, self.labels)

    @cached_property
    def change_matrix(self) -> pd.DataFrame:
        """Counts of (a's prediction, b's prediction); rows are a's, columns b's."""
        return m.change_matrix(self.pred_a, self.pred_b, len(self.classes), classes=self.classes)

    @cached_property
    def instances(self) -> pd.DataFrame:
        """One row per instance: label, predictions, true-class confidences, KL, MSE.

        ``conf_true_diff`` is b - a and ``conf_true_ratio`` is b / a; ``kl`` is
        KL(p_a || p_b) in nats; ``mse`` the mean squared logit difference.
        """
        data = self.data
        table = m.instance_table(self._ra["logits"], self._rb["logits"], self.labels, ids=data.ids)
        if isinstance(data.instances, list):
            table.insert(0, "instance", data.instances)
        return table

    def group_accuracy(
        self, groups: Sequence[Any] | None = None, names: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Accuracy of a and b and its change per group (default: per true class).

        ``groups`` is one label per instance (an attribute, a source, a length bucket).
        """
        if groups is None:
            return m.group_accuracy_change(
                self.pred_a, self.pred_b, self.labels, names=names or self.classes
            )
        return m.group_accuracy_change(
            self.pred_a, self.pred_b, self.labels, groups=groups, names=names
        )

    # -- representations -------------------------------------------------------------

    def _embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        return self._ra["embeddings"], self._rb["embeddings"]

    def knn_agreement(self, k: int = 10) -> float:
        """Mean Jaccard overlap of each instance's k nearest neighbours under a and b.

        ``k`` is clipped to N - 1 (as in :meth:`knn_sweep`); ``self.knn_k`` is the k used.
        """
        self.knn_k = min(int(k), max(len(self.labels) - 1, 1))
        return self._memo(
            "knn", {"k": self.knn_k}, lambda: m.knn_agreement(*self._embeddings(), self.knn_k)
        )

    def knn_sweep(self, ks: Sequence[int] = DEFAULT_KS) -> pd.Series:
        """kNN agreement for several k (one search at the largest k), as a curve."""
        return self._memo(
            "knn_sweep",
            {"ks": list(ks)},
            lambda: m.knn_agreement_sweep(*self._embeddings(), ks=tuple(ks)),
        )

    def ood_agreement(
        self,
        *,
        reference: Any = None,
        heldout: Any = None,
        evaluated: Any = None,
        k: int = m.ood.DEFAULT_K,
        percentile: float = m.ood.DEFAULT_PERCENTILE,
        seed: int = 0,
    ) -> float:
        """Jaccard of the instances each model flags as out of distribution (Deep kNN).

        By default the evaluation set is split at random (``seed``) into 50%
        in-distribution reference, 25% held-out (sets the threshold at its
        ``percentile``-th score) and 25% evaluated. Pass row indices of the evaluation
        set as ``reference`` / ``heldout`` / ``evaluated`` to choose the splits, e.g.
        the training rows as reference and a shifted subset as evaluated.
        """

        def split(value: Any) -> Any:
            return None if value is None else np.asarray(value, dtype=np.int64)

        params = {
            "reference": _digest(reference),
            "heldout": _digest(heldout),
            "evaluated": _digest(evaluated),
            "k": k,
            "percentile": percentile,
            "seed": seed,
        }
        return self._memo(
            "ood",
            params,
            lambda: m.ood_agreement(
                *self._embeddings(),
                reference=split(reference),
                heldout=split(heldout),
                evaluated=split(evaluated),
                k=k,
                percentile=percentile,
                seed=seed,
            ),
        )

    # -- adversarial -------------------------------------------------------------------

    def adversarial_overlap(
        self,
        *,
        eps: float | None = None,
        steps: int = 10,
        max_instances: int = 256,
        seed: int = 0,
        embedding_module: str | None = None,
    ) -> float:
        """Jaccard of the instances an attack flips for a and for b.

        Continuous inputs (a float tensor, or a dict with float entries) get an L-inf
        PGD attack on every float input (``eps`` default: 5% of the float data's range,
        inputs clipped to that range); token inputs (integer tensors only: ids, masks,
        under any key names) a PGD attack on the output of ``embedding_module``
        (default: the ``nn.Embedding`` with most rows; ``eps`` default 0.5, relative to
        the embeddings' mean magnitude). A model without float gradients (int8, half) is
        attacked by transfer from its nearest float ancestor. Each model is attacked
        once per data, rows and budget, and the outcome cached, so comparing a reference
        with n variants runs n + 1 attacks. The attack, budget and sources are in
        ``self.adversarial`` afterwards.
        """
        data = self.data
        inputs = self._inputs("adversarial_overlap()")
        rows = np.sort(np.random.default_rng(seed).permutation(len(data))[:max_instances])
        if is_continuous(inputs):
            tensors = inputs.values() if isinstance(inputs, dict) else [inputs]
            floats = [v for v in tensors if v.is_floating_point()]
            lo = min(float(v.min()) for v in floats)
            hi = max(float(v.max()) for v in floats)
            attack = Attack(
                eps=0.05 * (hi - lo) if eps is None else eps, steps=steps, clip=(lo, hi), seed=seed
            )
        else:
            attack = Attack(
                eps=0.5 if eps is None else eps,
                steps=steps,
                clip=None,
                embedding_module=embedding_module,
                seed=seed,
            )
        params = {**attack.describe(), "rows": _digest(rows)}

        def batches() -> list[tuple[Any, torch.Tensor]]:
            out = []
            idx = torch.from_numpy(rows)
            labels = torch.from_numpy(data.labels)[idx]
            for s in range(0, len(rows), data.batch_size):
                part = idx[s : s + data.batch_size]
                batch = (
                    {k: v[part] for k, v in inputs.items()}
                    if isinstance(inputs, dict)
                    else inputs[part]
                )
                out.append((batch, labels[s : s + data.batch_size]))
            return out

        def attacked(name: str) -> dict[str, Any]:
            model = self.registry.model(name)
            surrogate = None if has_gradients(model) else self._float_ancestor(name)
            spec = dict(params)
            if surrogate is not None:
                spec["surrogate"] = self.registry.record(surrogate).fingerprint

            def compute_one() -> dict[str, Any]:
                result = attack_model(
                    model,
                    batches(),
                    attack,
                    surrogate=None if surrogate is None else self.registry.model(surrogate),
                    surrogate_name=surrogate,
                )
                return {
                    "flipped": np.flatnonzero(result.flipped).tolist(),
                    "correct": int(result.correct.sum()),
                    "source": result.source,
                }

            # One model's attack is a measure of that model alone: cached under (name, name).
            return self.registry.cached_measure(name, name, "attack", spec, compute_one)

        def compute() -> dict[str, Any]:
            sets, sources = [], []
            for name in (self.a, self.b):
                outcome = attacked(name)
                flipped = np.zeros(len(rows), dtype=bool)
                flipped[np.asarray(outcome["flipped"], dtype=np.int64)] = True
                sets.append(flipped)
                sources.append(outcome["source"])
            return {
                "value": adversarial_overlap(*sets),
                "flipped_a": int(sets[0].sum()),
                "flipped_b": int(sets[1].sum()),
                "source_a": sources[0],
                "source_b": sources[1],
                "instances": len(rows),
                **attack.describe(),
            }

        self.adversarial = self._memo("adversarial", params, compute)
        return float(self.adversarial["value"])

    def _inputs(self, what: str) -> Any:
        """The evaluation inputs, or an error saying what to call when they are not loaded."""
        data = self.registry.data
        if data is None or data.inputs is None:
            raise ValueError(
                f"{what} runs both models on the evaluation inputs, which are not loaded "
                "(a store reopened without them): call reg.set_data(inputs, labels) with "
                "the same data first"
            )
        return data.inputs

    def _float_ancestor(self, name: str) -> str:
        cursor = self.registry.record(name).parent
        while cursor is not None:
            try:
                if has_gradients(self.registry.model(cursor)):
                    return cursor
            except KeyError:
                pass
            cursor = self.registry.record(cursor).parent
        raise ValueError(
            f"model {name!r} has no float gradients (int8 or half) and no float ancestor with "
            "weights in this session to craft a transfer attack on; add its float parent"
        )

    # -- layers ---------------------------------------------------------------------------

    @cached_property
    def correspondence(self) -> ModuleCorrespondence:
        """Which module of b each module of a became, composed along their provenance.

        Operations that rename or remove modules (``drop_layers``) record it; the path
        runs from a up to the nearest common ancestor and down to b.
        """
        return module_correspondence(self.registry.record, self.a, self.b)

    @property
    def layers(self) -> pd.DataFrame:
        """One row per module with parameters in a or b (see :func:`layer_table`).

        Modules pair through :attr:`correspondence`: after ``drop_layers`` a kept block
        pairs with its origin and a removed one is listed as ``only_a``. The ``note``
        column says why a row has empty cells (a module used through a functional
        call, an output shared by the whole batch, a removed block). The same forward
        passes also fill the default :meth:`cka_matrix`, cached beside it.
        """
        data = self.data
        pairing = self.correspondence

        def compute() -> pd.DataFrame:
            inputs = self._inputs("layers")
            model_a, model_b = self.registry.model(self.a), self.registry.model(self.b)
            mods_a, mods_b = default_cka_modules(model_a), default_cka_modules(model_b)
            options = {"batch_size": data.batch_size, "correspondence": pairing}
            try:
                table, matrix = layers_and_cka(
                    model_a, model_b, inputs, cka_modules=(mods_a, mods_b), **options
                )
            except MemoryError:  # the matrix is too big to ride along: the table alone
                return layers_and_cka(model_a, model_b, inputs, **options)[0]
            self._memo("cka_matrix", {"a": mods_a, "b": mods_b}, lambda: matrix)
            return table

        table = self._memo("layers", {"pairing": pairing.describe(), "table": 3}, compute)
        # A table read back from the store holds NaN where b has no module: keep None.
        table["module_b"] = table["module_b"].astype(object).where(table["module_b"].notna(), None)
        return table

    def histograms(
        self, module: str, *, bins: int = 40, shared: bool = False
    ) -> dict[str, pd.DataFrame]:
        """Weight and activation histograms of ``module`` in a and b, for the views.

        ``module`` is a row of :attr:`layers` (a's name; b's name for a module only in
        b); its partner in b is found through :attr:`correspondence`. ``weights``: one
        row per bin over a common range of both models' parameters (columns ``left``,
        ``right``, ``a``, ``b``: element counts; all zero for a model that lacks the
        module; no rows for a module without parameters). ``activations``: the streaming
        histograms kept at evaluation, rows ``(model, bin)``, with under- and overflow
        bins at either end. ``shared=True`` puts both models on one set of bins: "nice"
        weight bins (at most ``bins``), and activations on their common edges where that
        is exact (``activations.attrs["bins"]`` says ``"shared"`` or ``"per-model"``);
        see :func:`cnc_widgets.metrics.histograms.module_histograms`.
        """
        model_a, model_b = self.registry.model(self.a), self.registry.model(self.b)
        modules_a, modules_b = dict(model_a.named_modules()), dict(model_b.named_modules())
        name_a: str | None = module
        name_b: str | None = self.correspondence.map(module)[0]
        if module.endswith(" (b)") or module not in modules_a:
            # A module only in b: the table lists it under b's name (" (b)" on a clash).
            name_a, name_b = None, module.removesuffix(" (b)")
        if name_b not in modules_b:
            name_b = None
        if name_a is None and name_b is None:
            raise KeyError(
                f"module {module!r} is in neither {self.a!r} nor {self.b!r}; pass a row "
                "name of .layers"
            )
        acts = []
        for res, name in ((self._ra, name_a), (self._rb, name_b)):
            recorded = list(res.get("modules", []))
            i = recorded.index(name) if name in recorded else None
            acts.append(None if i is None else (res["act_hist_edges"][i], res["act_hist"][i]))
        wa = module_weights(model_a).get(name_a) if name_a else None
        wb = module_weights(model_b).get(name_b) if name_b else None
        return module_histograms(wa, wb, *acts, bins=bins, shared=shared)

    def histogram_chart(self, module: str, *, bins: int = 40, shared: bool = False) -> Any:
        """The weight and activation histograms of ``module`` as an altair chart.

        Both models overlaid (the reference in blue, the compared model in vermillion);
        the layers view draws the same chart when a module is clicked.

        Examples
        --------
        >>> cmp.histogram_chart("encoder.encoder.layer.0.output.dense")  # doctest: +SKIP
        """
        from .charts import histogram_chart

        hist = self.histograms(module, bins=bins, shared=shared)
        return histogram_chart(hist, (self.a, self.b), module)

    def cka_matrix(
        self, modules_a: Sequence[str] | None = None, modules_b: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Linear CKA between layers of a (rows) and layers of b (columns), exact over all data.

        Defaults: the encoder blocks of transformer models, else every module with weights.
        """
        model_a, model_b = self.registry.model(self.a), self.registry.model(self.b)
        mods_a = list(modules_a or default_cka_modules(model_a))
        mods_b = list(modules_b or default_cka_modules(model_b))
        data = self.data
        return self._memo(
            "cka_matrix",
            {"a": mods_a, "b": mods_b},
            lambda: cka_between(
                model_a,
                model_b,
                self._inputs("cka_matrix()"),
                mods_a,
                mods_b,
                batch_size=data.batch_size,
                matrix=True,
            ),
        )

    # -- all at once -------------------------------------------------------------------

    def summary(self, *, k: int = 10, adversarial: bool = True) -> dict[str, Any]:
        """Every scalar measure, as one row of :meth:`ModelRegistry.compare_many`."""
        acc_a = float(np.mean(self.pred_a == self.labels))
        acc_b = float(np.mean(self.pred_b == self.labels))
        inst = self.instances
        row: dict[str, Any] = {
            "reference": self.a,
            "model": self.b,
            "accuracy_a": acc_a,
            "accuracy_b": acc_b,
            "accuracy_change": acc_b - acc_a,
            "agreement": self.agreement,
            "error_jaccard": self.error_jaccard,
            "mean_kl": float(inst["kl"].mean()),
            "mean_mse": float(inst["mse"].mean()),
            f"knn_agreement@{k}": self.knn_agreement(k),
            "knn_k": self.knn_k,
            "ood_agreement": self.ood_agreement(),
        }
        if adversarial:
            row["adversarial_overlap"] = self.adversarial_overlap()
            row["adversarial_attack"] = self.adversarial["attack"]
            row["adversarial_eps"] = self.adversarial["eps"]
            row["adversarial_source_b"] = self.adversarial["source_b"]
        return row


def _digest(value: Any) -> Any:
    """A short stable stand-in for an index array in a cache key."""
    if value is None:
        return None
    import hashlib

    array = np.ascontiguousarray(np.asarray(value, dtype=np.int64))
    return hashlib.sha256(array.tobytes()).hexdigest()[:16]


class MissingMeasure(LookupError):
    """Raised by :class:`DetachedSource` in lookup-only mode for a measure not computed yet."""


class DetachedSource:
    """A :class:`ResultSource` over copies of what one comparison needs, for a worker.

    It holds the evaluation set, both models' results, the models (and the float ancestors
    a transfer attack needs) and the provenance records, and nothing else, so it pickles and
    travels to a ``concurrent.futures`` or Dask worker. Measures computed there are kept in
    :attr:`computed` for the caller to store; with ``lookup`` set, values come from that
    function and an uncached measure raises :class:`MissingMeasure` instead of computing.
    """

    def __init__(
        self,
        data: EvalData,
        results: dict[str, dict[str, Any]],
        models: dict[str, nn.Module],
        records: dict[str, ModelRecord],
        lookup: Callable[[str, str, str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self._data, self._results, self._models, self._records = data, results, models, records
        self._lookup = lookup
        self.computed: list[tuple[str, str, str, dict[str, Any], Any]] = []
        # Models are shared with the registry until this source travels (a pickled copy
        # is its own): model() copies them first, so tasks side by side in threads never
        # hook or switch the modes of one module together.
        self._own: set[str] = set()

    @property
    def data(self) -> EvalData | None:
        return self._data

    def result(self, name: str) -> dict[str, Any]:
        return self._results[name]

    def model(self, name: str) -> nn.Module:
        if name not in self._models:
            raise KeyError(f"model {name!r} was not sent with this comparison")
        if name not in self._own:
            self._models[name] = copy.deepcopy(self._models[name])
            self._own.add(name)
        return self._models[name]

    def record(self, name: str) -> ModelRecord:
        return self._records[name]

    def cached_measure(
        self, a: str, b: str, measure: str, params: dict[str, Any], compute: Callable[[], Any]
    ) -> Any:
        if self._lookup is not None:
            return self._lookup(a, b, measure, params)
        for ca, cb, cm, cp, value in self.computed:
            if (ca, cb, cm, cp) == (a, b, measure, params):
                return value
        value = compute()
        self.computed.append((a, b, measure, params, value))
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_lookup": None, "_own": set(self._models)}


def summary_task(
    source: DetachedSource, a: str, b: str, k: int, adversarial: bool
) -> tuple[dict[str, Any], list[tuple[str, str, str, dict[str, Any], Any]]]:
    """One row of ``compare_many`` computed on a worker, with the measures it computed."""
    with roomy_heap():
        row = Comparison(source, a, b).summary(k=k, adversarial=adversarial)
    return row, source.computed
