"""The result cache: every key results and measures are kept under, in memory and in the
store, and dropping them.

A model's results are keyed by its cache id (the weights' fingerprint, combined with the
callable that made it) and the data's fingerprint; a comparison measure by both models'
ids, the data, the measure and its parameters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from .catalogue import OPERATION_DIGEST
from .values import decode_value, encode_value


class ResultCache:
    """Results and measures of :class:`~.facade.ModelRegistry` (a mixin: state lives there)."""

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

    def _keep_result(self, name: str, result: dict[str, Any]) -> None:
        key = self._key(name)
        self._results[key] = result
        if self._store is not None:
            self._store.put_result(key, result)
        self._touch()

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

    def _drop_results(self, name: str) -> None:
        """Forget every result of ``name``'s weights, on any data, here and in the store."""
        for fp in {self._records[name].fingerprint, self._cache_id(name)} - {None}:
            for k in [k for k in self._results if k.startswith(fp + "|")]:
                del self._results[k]
            if self._store is not None:
                self._store.drop_results(fp)
