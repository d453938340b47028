"""The embedded store: a folder with a SQLite database and arrays beside it.

Layout::

    STORE/registry.sqlite      models, provenance, metrics, data and the result index
    STORE/arrays/KEY.npz       result arrays, named by a hash of their result key
    STORE/weights/FINGERPRINT.safetensors   weights, only with keep_weights=True

Every write is atomic: rows in one SQLite transaction, array files written to a
temporary name, fsynced and renamed into place before their index row commits.
A process killed at any moment leaves the store as it was before the write or
after it. Arrays are loaded with ``allow_pickle=False`` and checked against the
SHA-256 recorded in the index; a file that fails is dropped and recomputed.

A store is safe from any thread: widget messages can be handled on another thread
than the one that opened it (ipykernel 7), so one connection serves all threads and
every statement runs under one lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import threading
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..compress.bnb_weight import is_bnb_linear
from ..compress.tensor_subclass import is_tensor_subclass
from ..evaluate.data import EvalData
from ..provenance import ModelRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, position INTEGER, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS statics (name TEXT PRIMARY KEY, metrics TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, metrics TEXT NOT NULL,
    file TEXT, sha256 TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
VERSION = "1"
F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """Run ``method`` under the store's lock.

    An array file and its index row change together: without the lock, a reader on one
    thread could check a file that a writer on another is replacing, find the old
    checksum wrong and delete the new entry.
    """

    @wraps(method)
    def run(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class StoreError(RuntimeError):
    """The store folder cannot be used; the message says why and what to do."""


class Store:
    """A registry's persistent state in ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"store path {self.path} is a file; pass a folder path")
        (self.path / "arrays").mkdir(parents=True, exist_ok=True)
        self.db_path = self.path / "registry.sqlite"
        # One connection shared by every thread, serialised by this lock: a transaction
        # never interleaves with another thread's statements, and no thread needs its own
        # connection to be opened and closed.
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._one("PRAGMA integrity_check")
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.db_path} is not a readable SQLite database ({exc}); move the folder "
                "aside and open a new store, or restore it from a backup"
            ) from None
        row = self._one("SELECT value FROM meta WHERE key='version'")
        if row is None:
            self._write("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (VERSION,))
        elif row[0] != VERSION:
            raise StoreError(f"{self.path} is store version {row[0]}; this library reads {VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple = ()) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(sql, args)

    def _one(self, sql: str, args: tuple = ()) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- provenance and static metrics --------------------------------------------

    def put_record(self, record: ModelRecord) -> None:
        self._write(
            "INSERT INTO models VALUES (?, (SELECT COALESCE(MAX(position), 0) + 1 FROM models), ?) "
            "ON CONFLICT(name) DO UPDATE SET record=excluded.record",
            (record.name, json.dumps(record.to_dict(), sort_keys=True)),
        )

    def records(self) -> list[ModelRecord]:
        rows = self._all("SELECT record FROM models ORDER BY position")
        return [ModelRecord.from_dict(json.loads(r[0])) for r in rows]

    def put_static(self, name: str, metrics: dict[str, Any]) -> None:
        self._write(
            "INSERT OR REPLACE INTO statics VALUES (?, ?)", (name, json.dumps(metrics, default=str))
        )

    def statics(self) -> dict[str, dict[str, Any]]:
        rows = self._all("SELECT name, metrics FROM statics")
        return {name: json.loads(m) for name, m in rows}

    # -- evaluation data --------------------------------------------------------------

    @_locked
    def put_data(self, data: EvalData) -> None:
        """Remember labels, classes, instances and ids (not the inputs) of the current data."""
        arrays = {"labels": data.labels}
        if isinstance(data.instances, np.ndarray):
            arrays["instances"] = data.instances
        meta = {
            "classes": data.classes,
            "classes_given": data.classes_given,
            "ids": data.ids,
            "instances": data.instances if isinstance(data.instances, list) else None,
            "batch_size": data.batch_size,
            "embedding": data.embedding,
            "fingerprint": data.fingerprint,
            "task": data.task,
            "task_options": data.stored_options(),
        }
        file, digest = self._save_arrays("data-" + data.fingerprint, arrays)
        self._write(
            "INSERT OR REPLACE INTO meta VALUES ('data', ?)",
            (json.dumps({**meta, "file": file, "sha256": digest}),),
        )

    @_locked
    def get_data(self) -> EvalData | None:
        row = self._one("SELECT value FROM meta WHERE key='data'")
        if row is None:
            return None
        meta = json.loads(row[0])
        arrays = self._load_arrays(meta["file"], meta["sha256"])
        if arrays is None:
            return None
        instances = arrays["instances"] if "instances" in arrays else meta["instances"]
        return EvalData(
            inputs=None,
            labels=arrays["labels"],
            classes=meta["classes"],
            instances=instances,
            ids=meta["ids"],
            batch_size=meta["batch_size"],
            embedding=meta["embedding"],
            fingerprint=meta["fingerprint"],
            classes_given=meta.get("classes_given", True),
            task=meta.get("task", "classification"),
            task_options=meta.get("task_options", {}),
        )

    # -- results ------------------------------------------------------------------------

    @_locked
    def put_result(self, key: str, result: dict[str, Any]) -> None:
        """Store the arrays of ``result`` and its metrics under ``key``, atomically."""
        arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
        rest = {k: v for k, v in result.items() if not isinstance(v, np.ndarray) and k != "metrics"}
        file, digest = self._save_arrays(key, arrays) if arrays else (None, None)
        payload = {"metrics": result.get("metrics", {}), "extra": rest}
        self._write(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
            (key, key.split("|", 1)[0], json.dumps(payload, default=_json_default), file, digest),
        )

    @_locked
    def get_result(self, key: str) -> dict[str, Any] | None:
        """The result stored under ``key``, or None (also when its file is damaged)."""
        row = self._one("SELECT metrics, file, sha256 FROM results WHERE key=?", (key,))
        if row is None:
            return None
        payload, file, digest = json.loads(row[0]), row[1], row[2]
        result: dict[str, Any] = {"metrics": payload["metrics"], **payload.get("extra", {})}
        if file is not None:
            arrays = self._load_arrays(file, digest)
            if arrays is None:
                self._write("DELETE FROM results WHERE key=?", (key,))
                return None
            result.update(arrays)
        return result

    def get_metrics(self, key: str) -> dict[str, Any] | None:
        """Only the metrics stored under ``key`` (no array file is read)."""
        row = self._one("SELECT metrics FROM results WHERE key=?", (key,))
        return None if row is None else json.loads(row[0])["metrics"]

    @_locked
    def verify_result(self, key: str) -> bool:
        """True when ``key`` is stored and its array file passes its checksum.

        A damaged entry is deleted, so the caller recomputes it.
        """
        row = self._one("SELECT file, sha256 FROM results WHERE key=?", (key,))
        if row is None:
            return False
        file, digest = row
        if file is None:
            return True
        path = self.path / "arrays" / file
        if path.is_file() and _sha256(path) == digest:
            return True
        warnings.warn(
            f"store array file {path} is missing or fails its checksum; it is recomputed",
            RuntimeWarning,
            stacklevel=3,
        )
        self._write("DELETE FROM results WHERE key=?", (key,))
        path.unlink(missing_ok=True)
        return False

    @_locked
    def drop_results(self, fingerprint: str) -> None:
        rows = self._all("SELECT file FROM results WHERE fingerprint=?", (fingerprint,))
        self._write("DELETE FROM results WHERE fingerprint=?", (fingerprint,))
        for (file,) in rows:
            if file:
                (self.path / "arrays" / file).unlink(missing_ok=True)

    # -- weights ---------------------------------------------------------------------------

    def weights_path(self, fingerprint: str) -> Path:
        return self.path / "weights" / f"{fingerprint[:40]}.safetensors"

    def put_weights(self, fingerprint: str, model: Any) -> bool:
        """Save ``model``'s tensors with safetensors; False when they are not plain tensors.

        int8 dynamic quantized layers keep packed parameters, and torchao's layers tensor
        subclasses, that safetensors cannot hold; such models are rebuilt from their parent
        by replaying their operation.
        """
        from safetensors.torch import save_model

        target = self.weights_path(fingerprint)
        if target.is_file():
            return True
        if any(is_tensor_subclass(v) for v in model.state_dict().values()):
            return False  # torchao's quantized tensors: safetensors holds plain tensors only
        if any(is_bnb_linear(m) for m in model.modules()):
            return False  # bitsandbytes' layers load their codes only by being quantized again
        target.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        try:
            save_model(model, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except (ValueError, TypeError, AttributeError, RuntimeError):
            Path(tmp).unlink(missing_ok=True)
            return False
        return True

    def load_weights(self, fingerprint: str, model: Any) -> bool:
        """Load saved tensors into ``model`` (same architecture); False when none are saved."""
        from safetensors.torch import load_model

        path = self.weights_path(fingerprint)
        if not path.is_file():
            return False
        load_model(model, str(path), strict=True)
        return True

    # -- array files -----------------------------------------------------------------------

    def _save_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> tuple[str, str]:
        name = hashlib.sha256(key.encode()).hexdigest()[:32] + ".npz"
        target = self.path / "arrays" / name
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            digest = _sha256(Path(tmp))
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return name, digest

    def _load_arrays(self, file: str, digest: str | None) -> dict[str, np.ndarray] | None:
        path = self.path / "arrays" / file
        if not path.is_file() or (digest is not None and _sha256(path) != digest):
            warnings.warn(
                f"store array file {path} is missing or fails its checksum; "
                "it is dropped and will be recomputed",
                RuntimeWarning,
                stacklevel=3,
            )
            path.unlink(missing_ok=True)
            return None
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
