"""Comparison of two registered models: b is compared with a, the reference.

Predictions, errors and per-instance measures (what the task defines), neighbourhoods
and OOD flags from the cached embeddings, adversarial sets; the per-module measures are
in :mod:`.modules`. Every measure is cached through :meth:`Comparison._memo`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import metrics as m
from ..metrics.adversarial import (
    CraftedCache,
    adversarial_overlap,
    attack_model,
    has_gradients,
    plan_attack,
    row_batches,
)
from ..tasks import get_task
from .modules import ModuleMeasures
from .source import ResultSource

DEFAULT_KS = (10, 20, 50, 100, 200, 500)


class Comparison(ModuleMeasures):
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
        data = registry.data
        assert data is not None
        #: What the models do (:mod:`cnc_widgets.tasks`): it defines predictions, errors,
        #: agreement and the per-instance table.
        self.task = get_task(data.task, data.task_options)
        self.task.check_pair(a, b, self._ra, self._rb)
        # Bound to the data it was made on: measures computed later come from these
        # results and are cached under this data's key, so new data must not sneak in.
        self.data = data
        self.labels = data.labels
        width = self._ra["logits"].shape[1] if "logits" in self._ra else 0
        self.classes = data.class_names(width)

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

    @property
    def pred_a(self) -> np.ndarray:
        return self.task.predictions(self._ra)

    @property
    def pred_b(self) -> np.ndarray:
        return self.task.predictions(self._rb)

    @cached_property
    def agreement(self) -> float:
        """Fraction of instances (tokens, answers: per task) both models predict alike."""
        return self.task.agreement(self._ra, self._rb, self.data)

    @cached_property
    def error_jaccard(self) -> float:
        """|E_a ∩ E_b| / |E_a ∪ E_b| of the two error sets; 1.0 when neither errs."""
        return self.task.error_jaccard(self._ra, self._rb, self.data)

    @cached_property
    def change_matrix(self) -> pd.DataFrame:
        """Counts of (a's prediction, b's prediction); rows are a's, columns b's."""
        return m.change_matrix(self.pred_a, self.pred_b, len(self.classes), classes=self.classes)

    @cached_property
    def instances(self) -> pd.DataFrame:
        """One row per instance: label, predictions, true-class confidences, KL, MSE.

        ``conf_true_diff`` is b - a and ``conf_true_ratio`` is b / a; ``kl`` is
        KL(p_a || p_b) in nats; ``mse`` the mean squared logit difference;
        ``label_name``, ``pred_a_name`` and ``pred_b_name`` the class names. Other tasks
        give their own columns (see :mod:`cnc_widgets.tasks`).
        """
        if getattr(self.task, "token_level", False):
            tokens = self.tokens if self._models_here() else None
            return self.task.instance_table(self._ra, self._rb, self.data, tokens)
        if getattr(self.task, "paired_measure", None):
            paired = self.paired if self._models_here() else None
            return self.task.instance_table(self._ra, self._rb, self.data, paired)
        return self.task.instance_table(self._ra, self._rb, self.data)

    @property
    def paired(self) -> Any:
        """What the task measures by running both models together, computed once and
        cached (generation: per question the token KL of b teacher-forced along a's
        answer, :func:`cnc_widgets.evaluate.generation.generation_kl`)."""
        task = self.task
        if not getattr(task, "paired_measure", None):
            raise ValueError(f"task {task.name!r} has no measure that runs both models")

        def compute() -> Any:
            return task.paired(
                self.registry.model(self.a),
                self.registry.model(self.b),
                self._ra,
                self._inputs(task.paired_measure),
                self.data,
            )

        return self._memo(task.paired_measure, {"v": 1}, compute)

    def _models_here(self) -> bool:
        try:
            self.registry.model(self.a), self.registry.model(self.b)
        except KeyError:
            return False
        return self.registry.data is not None and self.registry.data.inputs is not None

    @property
    def tokens(self) -> pd.DataFrame:
        """Language models: one row per scored token, as llama.cpp's ``--kl-divergence``.

        Columns ``instance`` (row of the data), ``position`` (t, predicting token t+1),
        ``token`` (the id of token t+1), ``text`` (its text, with a tokenizer),
        ``nll_a``, ``nll_b`` (nats), ``kl`` (KL(p_a || p_b) over the full vocabulary, nats),
        ``dp`` (p_b(next) - p_a(next)), ``top_a``, ``top_b``. Both models run over the same
        batches once; the table (not the distributions) is cached.
        """
        if not getattr(self.task, "token_level", False):
            raise ValueError(
                f"tokens are defined for language models; this data's task is {self.task.name!r}"
            )
        from ..metrics.tokens import paired_token_stats

        data = self.data

        def compute() -> pd.DataFrame:
            return paired_token_stats(
                self.registry.model(self.a),
                self.registry.model(self.b),
                self._inputs("tokens"),
                batch_size=data.batch_size,
                tokenizer=data.task_options.get("_tokenizer"),
            )

        return self._memo("tokens", {"v": 1}, compute)

    @property
    def token_stats(self) -> pd.Series:
        """llama.cpp ``perplexity --kl-divergence`` statistics of :attr:`tokens` (a Series:
        kl_mean, kl_sem, kl_median, kl percentiles, same_top, dp statistics, ppl_a, ppl_b,
        ppl_ratio, ln_ppl_ratio, logloss_corr)."""
        from ..metrics.tokens import token_stats

        return token_stats(self.tokens)

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

    def _embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        return self._ra["embeddings"], self._rb["embeddings"]

    def knn_agreement(self, k: int = 10) -> float:
        """Mean Jaccard overlap of each instance's k nearest neighbours under a and b.

        ``k`` is clipped to N - 1 (as in :meth:`knn_sweep`): :meth:`knn_k` gives the k used.
        """
        used = self.knn_k(k)
        return self._memo(
            "knn", {"k": used}, lambda: m.knn_agreement(*self._embeddings(), used)
        )

    def knn_k(self, k: int = 10) -> int:
        """The k :meth:`knn_agreement` uses for a requested ``k`` (clipped to N - 1)."""
        return m.effective_k(k, len(self.labels))

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

    def adversarial_overlap(
        self,
        *,
        eps: float | None = None,
        steps: int = 10,
        max_instances: int = 256,
        seed: int = 0,
        embedding_module: str | None = None,
    ) -> float:
        """Jaccard of the instances an attack flips for a and for b (1.0 when it flips none
        for either); :meth:`adversarial_details` says which attack, its budget and sources.

        Continuous inputs (a float tensor, or a dict with float entries) get an L-inf
        PGD attack on every float input (``eps`` default: 5% of the float data's range,
        inputs clipped to that range); token inputs (integer tensors only: ids, masks,
        under any key names) a PGD attack on the output of ``embedding_module``
        (default: the ``nn.Embedding`` with most rows; ``eps`` default 0.5, relative to
        the embeddings' mean magnitude). What the attack ascends and what counts as a
        flip is the task's (``Task.attack_objective``, docs/definitions.md):

        - classification: cross-entropy of the labels; a correctly classified instance
          whose predicted class changes;
        - causal_lm: the next-token loss of the scored positions; a sequence whose top-1
          token at its last scored position changes from the clean one;
        - extractive_qa: start + end cross-entropy of the model's own clean best span; a
          question whose best span (start and end token) changes;
        - generation: the teacher-forced loss of the model's own clean greedy answer; a
          question whose first answer token changes.

        A model without float gradients (int8, torchao, half) is attacked by transfer
        from its nearest float ancestor (crafted on it, against its own clean outputs).
        Each model is attacked once per data, rows and budget, and the outcome cached, so
        comparing a reference with n variants runs n + 1 attacks.

        Examples
        --------
        >>> cmp = reg.compare("base", "int8")
        >>> cmp.adversarial_overlap(max_instances=64)
        >>> cmp.adversarial_details(max_instances=64)["source_b"]
        'transfer from base'
        """
        details = self.adversarial_details(
            eps=eps,
            steps=steps,
            max_instances=max_instances,
            seed=seed,
            embedding_module=embedding_module,
        )
        return float(details["value"])

    def adversarial_details(
        self,
        *,
        eps: float | None = None,
        steps: int = 10,
        max_instances: int = 256,
        seed: int = 0,
        embedding_module: str | None = None,
    ) -> dict[str, Any]:
        """The adversarial overlap with what it was computed from (the same arguments as
        :meth:`adversarial_overlap`, whose attack it runs or reads from the cache).

        Returns
        -------
        dict
            ``value`` (the overlap), ``flipped_a``, ``flipped_b`` (instances flipped),
            ``eligible_a``, ``eligible_b`` (instances the attack may flip: for
            classification the correctly classified ones; a warning says when both
            models flip all of theirs, which makes the overlap 1.0 by construction),
            ``source_a``, ``source_b`` ("direct" or "transfer from NAME"), ``instances``
            (rows attacked), ``success`` (what counts as a flip, in words; absent from
            results cached before it was recorded), ``attack``, ``eps``, ``steps``,
            ``step_size``, ``embedding_module``.
        """
        data = self.data
        inputs = self._inputs("adversarial_overlap()")
        objective = self.task.attack_objective()
        rows = np.sort(np.random.default_rng(seed).permutation(len(data))[:max_instances])
        attack = plan_attack(
            inputs, eps=eps, steps=steps, seed=seed, embedding_module=embedding_module
        )
        params = {**attack.describe(), "rows": _digest(rows)}
        # The registry's own (a source without one: crafted batches kept for this call only).
        crafted_cache = getattr(self.registry, "crafted_attacks", None) or CraftedCache()

        def batches() -> list[tuple[Any, torch.Tensor]]:
            return row_batches(inputs, data.labels, rows, data.batch_size)

        def attacked(name: str) -> dict[str, Any]:
            model = self.registry.model(name)
            surrogate = None if has_gradients(model) else self._float_ancestor(name)
            spec = dict(params)
            if surrogate is not None:
                spec["surrogate"] = self.registry.record(surrogate).fingerprint

            crafter = surrogate or name
            crafted_key = (
                self.registry.record(crafter).fingerprint,
                data.fingerprint,
                repr(sorted(params.items())),
            )

            def compute_one() -> dict[str, Any]:
                result = attack_model(
                    model,
                    batches(),
                    attack,
                    surrogate=None if surrogate is None else self.registry.model(surrogate),
                    surrogate_name=surrogate,
                    crafted=crafted_cache.get(crafted_key),
                    objective=objective,
                )
                crafted_cache.put(crafted_key, result.crafted)
                return {
                    "flipped": np.flatnonzero(result.flipped).tolist(),
                    "correct": int(result.correct.sum()),
                    "source": result.source,
                }

            # One model's attack is a measure of that model alone: cached under (name, name).
            return self.registry.cached_measure(name, name, "attack", spec, compute_one)

        def compute() -> dict[str, Any]:
            sets, sources, eligible = [], [], []
            for name in (self.a, self.b):
                outcome = attacked(name)
                flipped = np.zeros(len(rows), dtype=bool)
                flipped[np.asarray(outcome["flipped"], dtype=np.int64)] = True
                sets.append(flipped)
                sources.append(outcome["source"])
                eligible.append(outcome["correct"])
            return {
                "value": adversarial_overlap(*sets),
                "flipped_a": int(sets[0].sum()),
                "flipped_b": int(sets[1].sum()),
                "eligible_a": eligible[0],
                "eligible_b": eligible[1],
                "source_a": sources[0],
                "source_b": sources[1],
                "instances": len(rows),
                "success": objective.success,
                **attack.describe(),
            }

        details = dict(self._memo("adversarial", params, compute))
        _warn_if_saturated(details)
        return details

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

    def summary(self, *, k: int = 10, adversarial: bool = True) -> dict[str, Any]:
        """Every scalar measure, as one row of :meth:`ModelRegistry.compare_many`."""
        row: dict[str, Any] = {
            "reference": self.a,
            "model": self.b,
            **self.task.summary(self._ra, self._rb, self.data, self.instances),
            f"knn_agreement@{k}": self.knn_agreement(k),
            "knn_k": self.knn_k(k),
            "ood_agreement": self.ood_agreement(),
        }
        if adversarial:
            details = self.adversarial_details()
            row["adversarial_overlap"] = float(details["value"])
            row["adversarial_attack"] = details["attack"]
            row["adversarial_eps"] = details["eps"]
            row["adversarial_source_b"] = details["source_b"]
        return row


def _warn_if_saturated(details: dict[str, Any]) -> None:
    """An attack that flips every instance it may flip, for both models, makes the overlap
    1.0 whatever the models are: say so, with the fix."""
    ea, eb = details.get("eligible_a"), details.get("eligible_b")
    if not ea or not eb or details["flipped_a"] < ea or details["flipped_b"] < eb:
        return
    warnings.warn(
        f"adversarial overlap: the attack (eps={details.get('eps')}) flipped every instance it "
        f"could for both models ({ea} and {eb}), so the overlap is 1.0 whatever the models "
        "are; pass a smaller eps (e.g. a tenth) to compare what they are robust to",
        UserWarning,
        stacklevel=3,
    )


def _digest(value: Any) -> Any:
    """A short stable stand-in for an index array in a cache key."""
    if value is None:
        return None
    import hashlib

    array = np.ascontiguousarray(np.asarray(value, dtype=np.int64))
    return hashlib.sha256(array.tobytes()).hexdigest()[:16]
