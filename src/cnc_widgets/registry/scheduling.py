"""Scheduling: evaluation and comparison, here or on an executor (a Dask client too),
with one way to report failures (the others finish and are stored first).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import as_completed
from typing import Any

from tqdm.auto import tqdm

from ..comparison import Comparison, DetachedSource, MissingMeasure, summary_task
from ..evaluate.fanout import as_executor, fan_out
from ..evaluate.inference import EvalResult
from ..evaluate.runner import EvaluationError, evaluate_one, finish_record, measure_latency
from ..metrics.adversarial import has_gradients


class Scheduling:
    """Evaluation and comparison runs of :class:`~.facade.ModelRegistry` (a mixin)."""

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
        done = []
        for name in todo if executor is None else []:
            try:
                result = evaluate_one(
                    name, self._models[name], self._data, progress=progress, latency=False
                )
            except EvaluationError as exc:
                failures.append(exc)
                continue
            self._keep_result(name, result)
            done.append(name)
        failures += self._time_together(done)
        raise_failures(failures, "models failed; the others were evaluated")

    def _time_together(self, names: list[str]) -> list[EvaluationError]:
        """Latency of the models just evaluated, timed in interleaved rounds so that load
        from other processes hits them alike (see :mod:`cnc_widgets.evaluate.latency`)."""
        if not names:
            return []
        data = self._data
        example = data.batch(0, min(len(data), data.batch_size))
        models = {name: self._models[name] for name in names}
        failures: list[EvaluationError] = []
        try:
            timed = measure_latency(models, example)
        except Exception:  # one model fails its timed passes: time each alone, name it
            timed = {}
            for name, model in models.items():
                try:
                    timed.update(measure_latency({name: model}, example))
                except Exception as exc:
                    failures.append(
                        EvaluationError(f"model {name!r}: measuring latency failed: {exc}")
                    )
        for name, columns in timed.items():
            result = self._cached(self._key(name))
            result["metrics"].update(columns)
            self._keep_result(name, result)
        return failures

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
        raise_failures(failures, "comparisons failed; the others were stored")
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


def raise_failures(failures: Sequence[Any], what: str) -> None:
    """The one way a batch of runs reports failures, after every other run finished: a
    single :class:`EvaluationError` as it is, several in one error listing each."""
    if not failures:
        return
    if len(failures) == 1 and isinstance(failures[0], EvaluationError):
        raise failures[0]
    first = next((f for f in failures if isinstance(f, BaseException)), None)
    raise EvaluationError(
        f"{len(failures)} {what}:\n" + "\n".join(f"- {f}" for f in failures)
    ) from first
