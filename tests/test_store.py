"""The embedded store: reopen, cache by content, crash safety, damaged files."""

from __future__ import annotations

import copy
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
import torch

import cnc_widgets as cnc
from cnc_widgets.registry.store import Store, StoreError


class Counter:
    """Counts forward calls of a model through a hook, without changing it."""

    def __init__(self, model):
        self.calls = 0
        model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.calls += 1


def build(path, digits, model):
    reg = cnc.ModelRegistry(store=path)
    reg.set_data(
        digits.test_inputs,
        digits.test_labels,
        classes=digits.classes,
        instances=digits.test_instances,
    )
    reg.add("base", model)
    return reg


@pytest.fixture
def models(digits_cnn):
    base = copy.deepcopy(digits_cnn)
    child = copy.deepcopy(digits_cnn)
    with torch.no_grad():
        child.classifier[-1].weight.mul_(0.5)
    return base, child


def test_reopen_gives_back_everything_without_models(tmp_path, digits, models):
    base, child = models
    reg = build(tmp_path / "s", digits, base)
    reg.add("child", child, parent="base", operation="scale", params={"f": 0.5})
    reg.evaluate(progress=False)
    table = reg.metrics()
    logits = reg.result("child")["logits"]

    again = cnc.ModelRegistry(store=tmp_path / "s")
    assert again.names == ["base", "child"]
    assert again.record("child").params == {"f": 0.5}
    reopened = again.metrics()
    assert reopened.loc["child", "accuracy"] == table.loc["child", "accuracy"]
    assert reopened.loc["base", "size_bytes"] == table.loc["base", "size_bytes"]
    np.testing.assert_array_equal(again.result("child")["logits"], logits)
    assert again.data.classes == digits.classes
    np.testing.assert_array_equal(again.data.instances, digits.test_instances)
    from cnc_widgets.widgets.provenance import provenance_nodes

    nodes = {n["name"]: n for n in provenance_nodes(again)}
    assert nodes["child"]["metrics"]["accuracy"] == table.loc["child", "accuracy"]


def test_cache_runs_nothing_twice_and_reruns_only_changed(tmp_path, digits, models):
    base, child = models
    reg = build(tmp_path / "s", digits, base)
    reg.add("child", child, parent="base")
    counters = {"base": Counter(base), "child": Counter(child)}
    reg.evaluate(progress=False)
    first = {k: c.calls for k, c in counters.items()}
    assert first["base"] > 0 and first["child"] > 0
    reg.evaluate(progress=False)
    assert {k: c.calls for k, c in counters.items()} == first

    # A fresh session on the same store: same weights, same data, no inference at all.
    base2, child2 = copy.deepcopy(base), copy.deepcopy(child)
    fresh = {"base": Counter(base2), "child": Counter(child2)}
    reg2 = build(tmp_path / "s", digits, base2)
    reg2.add("child", child2, parent="base")
    reg2.evaluate(progress=False)
    assert fresh["base"].calls == 0 and fresh["child"].calls == 0

    # One weight changes: exactly that model runs again.
    with torch.no_grad():
        child2.classifier[-1].bias[0] += 1.0
    reg2.add("child", child2, parent="base", replace=True)
    reg2.evaluate(progress=False)
    assert fresh["base"].calls == 0 and fresh["child"].calls > 0


def test_new_data_reruns(tmp_path, digits, models):
    base, _ = models
    reg = build(tmp_path / "s", digits, base)
    counter = Counter(base)
    reg.evaluate(progress=False)
    calls = counter.calls
    reg.set_data(digits.test_inputs[:100], digits.test_labels[:100])
    reg.evaluate(progress=False)
    assert counter.calls > calls


def test_damaged_array_file_is_recomputed(tmp_path, digits, models):
    base, child = models
    reg = build(tmp_path / "s", digits, base)
    reg.add("child", child, parent="base")
    reg.evaluate(progress=False)
    expected = reg.result("child")["logits"].copy()
    key = reg._key("child")
    db = sqlite3.connect(tmp_path / "s" / "registry.sqlite")
    (file,) = db.execute("SELECT file FROM results WHERE key=?", (key,)).fetchone()
    db.close()
    path = tmp_path / "s" / "arrays" / file
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))

    base2, child2 = copy.deepcopy(base), copy.deepcopy(child)
    counts = {"base": Counter(base2), "child": Counter(child2)}
    reg2 = build(tmp_path / "s", digits, base2)
    reg2.add("child", child2, parent="base")
    with pytest.warns(RuntimeWarning, match="fails its checksum"):
        reg2.evaluate(progress=False)
    assert counts["base"].calls == 0 and counts["child"].calls > 0
    np.testing.assert_array_equal(reg2.result("child")["logits"], expected)


def test_corrupted_database_is_a_clear_error(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "registry.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable SQLite database"):
        cnc.ModelRegistry(store=folder)
    assert (folder / "registry.sqlite").read_bytes().startswith(b"this is not sqlite")


SCRIPT = """
import copy, sys, time, torch
import cnc_widgets as cnc
from cnc_widgets import examples

data = examples.digits()
base = examples.train_digits_cnn(data, epochs=1)
reg = cnc.ModelRegistry(store=sys.argv[1])
reg.set_data(data.test_inputs, data.test_labels, batch_size=32)
reg.add("base", base)
for i in range(3):
    child = copy.deepcopy(base)
    with torch.no_grad():
        child.classifier[-1].bias.add_(i + 1)
    reg.add(f"child{i}", child, parent="base")

class Slow(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
    def forward(self, x):
        time.sleep(0.2)
        return self.inner(x)

reg.add("slow", Slow(copy.deepcopy(base)), parent="base")
print("evaluating", flush=True)
reg.evaluate(progress=False)
"""


def test_sigkill_during_evaluate_keeps_earlier_results(tmp_path):
    store = tmp_path / "s"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        db = store / "registry.sqlite"
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    done = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
        if done >= 4:  # base and the three children stored; the slow one is mid-way
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    reg = cnc.ModelRegistry(store=store)
    assert reg.names == ["base", "child0", "child1", "child2", "slow"]
    table = reg.metrics()
    for name in ["base", "child0", "child1", "child2"]:
        assert 0.0 <= table.loc[name, "accuracy"] <= 1.0
        assert reg.result(name)["logits"].shape == (len(reg.data), 10)
    assert np.isnan(table.loc["slow", "accuracy"])
    leftovers = [p for p in (store / "arrays").iterdir() if p.name.startswith(".tmp-")]
    # A temporary file of the killed write may remain; it is never read as a result.
    assert all(not p.name.endswith(".npz") or p.name.startswith(".tmp-") for p in leftovers)


def test_reopen_rebuilds_descendants_by_replay(tmp_path, digits, digits_cnn):
    reg = build(tmp_path / "s", digits, copy.deepcopy(digits_cnn))
    reg.compress("base", "prune", amount=0.5, name="p50")
    reg.compress("p50", "prune", amount=0.8, name="p80")
    reg.compress("base", "quantize_dynamic", name="int8")
    reg.evaluate(progress=False)
    fingerprints = {n: reg.record(n).fingerprint for n in reg.names}

    again = build(tmp_path / "s", digits, copy.deepcopy(digits_cnn))  # only the root re-added
    counter = None
    for name in ["p80", "int8"]:
        model = again.model(name)  # replayed from the root, checked against the fingerprint
        from cnc_widgets.evaluate.fingerprint import model_fingerprint

        assert model_fingerprint(model) == fingerprints[name]
        counter = Counter(model)
    again.evaluate(progress=False)
    assert counter.calls == 0  # replayed weights hit the cache
    assert again.compare("base", "p80").agreement <= 1.0


def test_keep_weights_saves_safetensors(tmp_path, digits, digits_cnn):
    reg = cnc.ModelRegistry(store=tmp_path / "s", keep_weights=True)
    reg.set_data(digits.test_inputs, digits.test_labels)
    reg.add("base", copy.deepcopy(digits_cnn))
    reg.compress("base", "quantize_dynamic", name="int8")
    assert reg.record("base").info["weights_saved"] is True
    assert reg.record("int8").info["weights_saved"] is False  # packed int8: rebuilt by replay
    files = list((tmp_path / "s" / "weights").glob("*.safetensors"))
    assert len(files) == 1
    again = cnc.ModelRegistry(store=tmp_path / "s")
    from cnc_widgets import examples

    skeleton = examples.DigitsCNN()
    loaded = again.load("base", skeleton)
    for (k, v), (k2, v2) in zip(
        loaded.state_dict().items(), digits_cnn.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2)
    assert again.model("int8") is not None  # replayed from the loaded base
    with pytest.raises(ValueError, match="do not fit the given skeleton"):
        cnc.ModelRegistry(store=tmp_path / "s").load("base", examples.DigitsCNN(channels=8))


def test_store_is_safe_from_many_threads_at_once(tmp_path):
    # ipykernel 7 can handle widget messages on another thread than the one that opened the
    # store: reads and writes from several threads at once must all succeed and stay intact.
    store = Store(tmp_path / "s")
    rng = np.random.default_rng(0)
    shared = {f"shared|{i}": rng.normal(size=(64, 10)) for i in range(4)}
    for key, logits in shared.items():
        store.put_result(key, {"metrics": {"mean": float(logits.mean())}, "logits": logits})
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(15):
                own = np.full((32, 5), t * 100 + i, dtype=np.float32)
                store.put_result(f"t{t}|{i}", {"metrics": {"i": i}, "logits": own})
                # every thread also rewrites one shared key with the same content
                key = f"shared|{i % 4}"
                store.put_result(
                    key, {"metrics": {"mean": float(shared[key].mean())}, "logits": shared[key]}
                )
                got = store.get_result(key)
                np.testing.assert_array_equal(got["logits"], shared[key])
                assert store.get_metrics(f"t{t}|{i}") == {"i": i}
                assert store.verify_result(key)
                store.put_static(f"m{t}", {"step": i})
                store.statics()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a damaged entry would warn before being recomputed
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors[0]
    for t in range(6):
        for i in range(15):
            np.testing.assert_array_equal(
                store.get_result(f"t{t}|{i}")["logits"], np.full((32, 5), t * 100 + i)
            )
        assert store.statics()[f"m{t}"] == {"step": 14}
    for key, logits in shared.items():
        np.testing.assert_array_equal(store.get_result(key)["logits"], logits)
    store.close()
    reopened = Store(tmp_path / "s")
    assert reopened.get_metrics("t5|14") == {"i": 14}


def test_registry_with_store_answers_from_another_thread(tmp_path, digits, models):
    # the dashboard's observers run on the thread that handles the widget message; a
    # reopened registry reads its metrics and results from the store there
    base, child = models
    reg = build(tmp_path / "s", digits, base)
    reg.add("child", child, parent="base")
    reg.evaluate(progress=False)
    expected = reg.metrics()
    knn = reg.compare("base", "child").knn_agreement(5)
    again = cnc.ModelRegistry(store=tmp_path / "s")
    out: dict = {}

    def handle_click() -> None:
        try:
            out["metrics"] = again.metrics()
            cmp = again.compare("base", "child")
            out["agreement"] = cmp.agreement
            out["knn"] = cmp.knn_agreement(5)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=handle_click)
    thread.start()
    thread.join()
    assert "error" not in out, out["error"]
    assert out["metrics"].loc["child", "accuracy"] == expected.loc["child", "accuracy"]
    preds = [reg.result(n)["logits"].argmax(1) for n in ("base", "child")]
    assert out["agreement"] == float(np.mean(preds[0] == preds[1]))
    assert out["knn"] == knn
