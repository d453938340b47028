"""Evaluation fanned out on a real Dask LocalCluster of two worker processes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import cloudpickle  # ships with distributed (the test extra installs cnc-widgets[dask])
import distributed
import numpy as np
import pytest
import torch
from torch import nn

import cnc_widgets as cnc
from cnc_widgets.evaluate.fanout import shard_bounds

# Models defined here travel by value, as classes defined in a notebook do.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

COMPARED = ["accuracy", "params", "nonzero_params", "size_bytes", "macs", "effective_macs"]
ARRAYS = ["logits", "embeddings", "act_count", "act_mean", "act_std", "act_zero_frac", "act_hist"]


class FailsOnBright(nn.Module):
    """The digits CNN, except that it raises on any batch holding a pixel above 10."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.max()) > 10:
            raise ValueError("sensor saturated")
        return self.inner(x)


class Slow(nn.Module):
    """The digits CNN with a pause per forward pass, so a run lasts long enough to be cut."""

    def __init__(self, inner: nn.Module, seconds: float) -> None:
        super().__init__()
        self.inner, self.seconds = inner, seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.inner(x)


@pytest.fixture(scope="module")
def client():
    # LocalCluster writes OMP_NUM_THREADS, MALLOC_TRIM_THRESHOLD_, PYTHONHASHSEED, ... into
    # this process's environment; later tests' subprocesses must not inherit them.
    environ = dict(os.environ)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()
    os.environ.clear()
    os.environ.update(environ)


def registry(digits, digits_cnn, store=None, **kw) -> cnc.ModelRegistry:
    reg = cnc.ModelRegistry(store=store, **kw)
    reg.set_data(digits.test_inputs, digits.test_labels, classes=digits.classes, batch_size=64)
    reg.add("base", digits_cnn)
    reg.compress("base", "prune", amount=0.6, name="pruned")
    reg.compress("base", "quantize_dynamic", name="int8")
    reg.compress("pruned", "half", name="pruned-half")
    return reg


@pytest.fixture(scope="module")
def local(digits, digits_cnn):
    reg = registry(digits, digits_cnn)
    reg.evaluate(progress=False)
    return reg


def assert_same(reg: cnc.ModelRegistry, local: cnc.ModelRegistry) -> None:
    a, b = reg.metrics()[COMPARED], local.metrics()[COMPARED]
    assert a.index.tolist() == b.index.tolist()
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-9)
    for name in local.names:
        for key in ARRAYS:
            np.testing.assert_allclose(
                reg.result(name)[key],
                local.result(name)[key],
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{name}: {key}",
            )
        assert reg.result(name)["modules"] == local.result(name)["modules"]


def test_shard_bounds_cover_rows_on_batch_edges():
    assert shard_bounds(10, 4, 3) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert shard_bounds(10, 100, 4) == [(0, 10)]
    bounds = shard_bounds(540, 128, 64)
    assert bounds[0] == (0, 128) and bounds[-1] == (512, 540)
    with pytest.raises(ValueError, match="shard_rows"):
        shard_bounds(10, 0, 4)


def test_cluster_run_matches_local_and_lands_in_store(digits, digits_cnn, local, client, tmp_path):
    reg = registry(digits, digits_cnn, store=tmp_path / "store")
    reg.evaluate(executor=client, shard_rows=128, progress=False)  # 5 shards a model
    assert_same(reg, local)
    reopened = cnc.ModelRegistry(store=tmp_path / "store")
    assert_same(reopened, local)

    before = reg.revision
    reg.evaluate(executor=client, progress=False)  # everything cached: nothing runs or lands
    assert reg.revision == before


def test_plain_executor_and_weights_from_the_store(digits, digits_cnn, local, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    reg = registry(digits, digits_cnn, store=tmp_path / "store", keep_weights=True)
    with ThreadPoolExecutor(2) as pool:
        reg.evaluate(
            ["base", "pruned"], executor=pool, shard_rows=200, weights="store", progress=False
        )
    for name in ("base", "pruned"):
        np.testing.assert_allclose(
            reg.result(name)["logits"], local.result(name)["logits"], rtol=1e-5, atol=1e-6
        )
    no_weights = registry(digits, digits_cnn)
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="keep_weights=True"):
        no_weights.evaluate(executor=pool, weights="store")


def test_shards_of_one_model_run_side_by_side_in_threads(digits, digits_cnn, local):
    """Concurrent tasks never share a module: each has its own copy of the model, so
    one task's hooks do not see another's activations."""
    from concurrent.futures import ThreadPoolExecutor

    reg = registry(digits, digits_cnn)
    with ThreadPoolExecutor(2) as pool:
        reg.evaluate(["base", "int8"], executor=pool, shard_rows=64, progress=False)
    for name in ("base", "int8"):
        for key in ARRAYS:
            np.testing.assert_allclose(
                reg.result(name)[key], local.result(name)[key], rtol=1e-5, atol=1e-6, err_msg=key
            )
    assert not digits_cnn._forward_hooks and digits_cnn.training is False


def test_failing_shard_is_named_and_others_are_kept(digits, digits_cnn, client, tmp_path):
    x = digits.test_inputs.clone()
    x[300] = 20.0  # one saturated image, in the third shard of 128 rows
    reg = cnc.ModelRegistry(store=tmp_path / "store")
    reg.set_data(x, digits.test_labels, classes=digits.classes)
    reg.add("base", digits_cnn)
    reg.add("fragile", FailsOnBright(digits_cnn), parent="base", operation="wrap")
    with pytest.raises(
        cnc.EvaluationError,
        match=r"'fragile', shard 3 of 5 \(rows 256:384\).*"
        r"sensor saturated",
    ):
        reg.evaluate(executor=client, shard_rows=128, progress=False)
    assert not np.isnan(reg.metrics().loc["base", "accuracy"])
    assert np.isnan(reg.metrics().loc["fragile", "accuracy"])
    assert cnc.ModelRegistry(store=tmp_path / "store").result("base")["logits"].shape[0] == len(x)


def test_run_survives_a_killed_worker(digits, digits_cnn, local, client):
    reg = cnc.ModelRegistry()
    reg.set_data(digits.test_inputs, digits.test_labels, classes=digits.classes, batch_size=64)
    slow = {f"slow{i}": Slow(digits_cnn, 0.05) for i in range(4)}
    for name, model in slow.items():
        reg.add(name, model)
    errors = []
    run = threading.Thread(
        target=lambda: _catch(errors, reg.evaluate, executor=client, shard_rows=64, progress=False)
    )
    run.start()
    deadline = time.time() + 60
    while time.time() < deadline and not any(client.processing().values()):
        time.sleep(0.05)
    time.sleep(0.5)
    busy = [w for w, tasks in client.processing().items() if tasks]
    assert busy, "no task was running to interrupt"
    # Kill the worker process outright (its nanny starts a new one); Dask reschedules its tasks.
    pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
    os.kill(pid, signal.SIGKILL)
    run.join(timeout=300)
    assert not run.is_alive() and errors == []
    for name in slow:
        np.testing.assert_allclose(
            reg.result(name)["logits"], local.result("base")["logits"], rtol=1e-5, atol=1e-6
        )


def _catch(errors: list, fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except Exception as exc:
        errors.append(exc)


def test_compare_many_on_the_cluster_matches_local(local, client, tmp_path, digits, digits_cnn):
    expected = local.compare_many("base", ["pruned", "int8"])
    reg = registry(digits, digits_cnn, store=tmp_path / "store")
    reg.evaluate(progress=False)
    got = reg.compare_many("base", ["pruned", "int8"], executor=client, progress=False)
    assert got.index.tolist() == expected.index.tolist()
    numeric = expected.select_dtypes("number").columns
    np.testing.assert_allclose(
        got[numeric].to_numpy(float), expected[numeric].to_numpy(float), rtol=1e-6, atol=1e-9
    )
    assert (got["adversarial_source_b"] == expected["adversarial_source_b"]).all()
    # Every measure came back to the kernel's cache and store: nothing runs a second time.
    reopened = cnc.ModelRegistry(store=tmp_path / "store")
    reopened.set_data(digits.test_inputs, digits.test_labels, classes=digits.classes, batch_size=64)
    again = reopened.compare_many("base", ["pruned", "int8"], executor=_Refusing(), progress=False)
    np.testing.assert_allclose(again[numeric].to_numpy(float), got[numeric].to_numpy(float))


class _Refusing:
    """An executor that fails any submission: proves everything was read from the cache."""

    def submit(self, *args, **kwargs):
        raise AssertionError("nothing should be submitted: every measure is cached")


def test_compare_many_in_threads_matches_local(local, digits, digits_cnn):
    """compare_many on a thread pool: the local numbers, the registry's models left as found."""
    from concurrent.futures import ThreadPoolExecutor

    others = ["pruned", "int8", "pruned-half"]
    expected = local.compare_many("base", others)
    reg = registry(digits, digits_cnn)
    reg.evaluate(progress=False)
    with ThreadPoolExecutor(3) as pool:
        got = reg.compare_many("base", others, executor=pool, progress=False)
    numeric = expected.select_dtypes("number").columns
    np.testing.assert_allclose(
        got[numeric].to_numpy(float), expected[numeric].to_numpy(float), rtol=1e-6, atol=1e-9
    )
    assert not digits_cnn._forward_hooks and digits_cnn.training is False


def test_generation_on_the_cluster_equals_the_local_run(client):
    """A generation task ships its tokenizer and references to the workers (by pickle) and
    the shards' answers, scores and embeddings merge into the local run's."""
    from cnc_widgets.examples.cloze import cloze_questions

    from .lm_builders import tiny_llama, word_tokenizer

    qa = cloze_questions(limit=12, window=0)
    prompts = [f"{q} A:" for q in qa.question]
    words = sorted({w for text in [*prompts, *qa.answer] for w in text.split()})
    tok = word_tokenizer(words)
    tok.padding_side = "left"
    model = tiny_llama(
        len(tok), max_position_embeddings=128, pad_token_id=0, eos_token_id=2, bos_token_id=None
    )

    def run(executor=None) -> cnc.ModelRegistry:
        reg = cnc.ModelRegistry()
        reg.set_data(
            dict(tok(prompts, padding=True, return_tensors="pt")), task="generation",
            tokenizer=tok, references=[[a] for a in qa.answer], instances=prompts,
            max_new_tokens=4, batch_size=4,
        )
        reg.add("base", model)
        if executor is None:
            reg.evaluate(progress=False)
        else:
            reg.evaluate(executor=executor, shard_rows=4, progress=False)  # 3 shards
        return reg

    local, fanned = run(), run(client)
    a, b = fanned.result("base"), local.result("base")
    assert sorted(a) == sorted(b)
    for key in b:
        if isinstance(b[key], np.ndarray) and b[key].dtype.kind in "fiub":
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for column in ("exact_match", "f1"):
        assert fanned.metrics().loc["base", column] == local.metrics().loc["base", column]
    assert fanned.compare("base", "base").instances["output_a"].tolist() == (
        local.compare("base", "base").instances["output_a"].tolist()
    )
