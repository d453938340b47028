"""The compiled reductions behind activation statistics, against direct computations and
against the torch operations they replace (which still serve accelerators and machines
without numba)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from cnc_widgets import examples
from cnc_widgets.evaluate import kernels, stats
from cnc_widgets.evaluate.histogram import Bins, torch_bins
from cnc_widgets.evaluate.inference import EvaluationError, evaluate_model
from cnc_widgets.evaluate.kernels import bin_sample, moments, reduce_and_bin
from cnc_widgets.evaluate.stats import RunningStats

STAT_FIELDS = ["act_count", "act_zero_frac", "act_min", "act_max"]


@pytest.fixture
def torch_path(monkeypatch):
    """RunningStats as on a machine without numba: torch reductions on the CPU."""
    monkeypatch.setattr(stats, "_KERNELS", None)


def direct(x: np.ndarray, shift: float) -> tuple[float, float, float, float, int]:
    """Exact sums (math.fsum over float64 values) and NumPy's min, max and nonzero count."""
    d = x.astype(np.float64) - shift
    return (
        float(x.min()),
        float(x.max()),
        math.fsum(d),
        math.fsum(d * d),
        int(np.count_nonzero(x)),
    )


@pytest.mark.parametrize("n", [1, 7, 4095, 4096, 4097, 3 * 4096 + 5, 100_003])
@pytest.mark.parametrize("shift", [0.0, 2.5])
def test_moments_match_a_direct_computation(n, shift):
    gen = np.random.default_rng(n)
    x = (gen.standard_normal(n) * 3 + 1).astype(np.float32)
    x[gen.random(n) < 0.3] = 0.0  # ReLU-like zeros
    x[gen.random(n) < 0.05] = -0.0
    lo, hi, s1, s2, nonzero = moments(x, shift)
    want = direct(x, shift)
    assert (lo, hi, nonzero) == (want[0], want[1], want[4])
    # float64 sums of float32 values, in another order: about 1e-16 * n relative
    assert s1 == pytest.approx(want[2], rel=1e-12, abs=1e-12 * math.fsum(np.abs(x)))
    assert s2 == pytest.approx(want[3], rel=1e-12)


def test_moments_order_negatives_zeros_and_extremes_like_floats():
    values = [-3.0e38, -1.5, -1e-45, -0.0, 0.0, 1e-45, 2.0, 3.0e38]
    for i in range(len(values)):
        x = np.array(values[i:] + values[:i], np.float32)  # every rotation
        lo, hi, _, _, nonzero = moments(x, 0.0)
        assert (lo, hi) == (float(np.float32(-3.0e38)), float(np.float32(3.0e38)))
        assert nonzero == 6  # -0.0 and 0.0 are zeros; denormals are not
    lo, hi, *_ = moments(np.array([-0.0, -2.0, -1e-45], np.float32), 0.0)
    assert (lo, hi) == (-2.0, 0.0) and math.copysign(1.0, hi) == -1.0  # -0.0 above -1e-45


@pytest.mark.parametrize(
    ("bad", "where"), [(np.nan, "hi"), (-np.nan, "lo"), (np.inf, "hi"), (-np.inf, "lo")]
)
def test_moments_bring_non_finite_values_to_an_end(bad, where):
    x = np.arange(-5000, 5000, dtype=np.float32)
    x[7777] = bad
    lo, hi, *_ = moments(x, 0.0)
    value = {"lo": lo, "hi": hi}[where]
    assert not math.isfinite(value)
    assert math.isnan(value) == math.isnan(bad)
    other = {"lo": hi, "hi": lo}[where]
    assert other == (4999.0 if where == "lo" else -5000.0)


def numpy_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``[underflow, bins..., overflow]`` by NumPy over the reported edges: np.histogram of
    the values in ``[e_0, e_bins)`` (bins ``[e_k, e_k+1)``), and the values outside."""
    x = np.asarray(x, np.float64)
    inner = x[(x >= edges[0]) & (x < edges[-1])]
    under, over = np.sum(x < edges[0]), np.sum(x >= edges[-1])
    return np.concatenate([[under], np.histogram(inner, edges)[0], [over]])


def compiled_counts(x: np.ndarray, bins: Bins, positions=None, rows: int = 1) -> np.ndarray:
    hist = np.zeros(bins.edges.size + 1, np.int64)
    positions = np.zeros(0, np.int64) if positions is None else positions
    bin_sample(x, rows, positions, bins.scale32, bins.offset32, bins.edges32, hist)
    return hist


def torch_counts(x: np.ndarray, bins: Bins) -> np.ndarray:
    t = torch.from_numpy(x)
    width = bins.edges.size + 1
    lower, upper = bins.tables(t.device)
    scale, offset = float(bins.scale32), float(bins.offset32)
    idx = torch_bins(t, scale, offset, lower, upper, width - 1.0, bins.slack, bins.steps)
    return torch.bincount(idx, minlength=width).numpy()


# Ranges whose edges are float32 values (x on an edge is in the bin above it) and ranges
# whose edges fall between float32 values; narrow ranges far from zero, where the float32
# arithmetic is off by one bin or (bins narrower than a float32 step) by many.
RANGES = [
    (-1.0, 1.0),
    (0.0, 3.0),
    (-0.3, 0.7),
    (-5.0, -4.9),
    (1e3, 1e3 + 0.01),
    (300.0, 300.0 + 2e-4),
]


def on_and_beside_every_edge(edges: np.ndarray, seed: int) -> np.ndarray:
    """Each edge as float32 (exactly on it where it is one), one and two float32 steps
    either side, the smallest float32 at or above it, and uniform values around them."""
    e32 = edges.astype(np.float32)
    up, down = np.nextafter(e32, np.float32(np.inf)), np.nextafter(e32, np.float32(-np.inf))
    near = [e32, up, down, np.nextafter(up, np.float32(np.inf)), np.nextafter(down, -np.inf)]
    span = edges[-1] - edges[0]
    noise = np.random.default_rng(seed).uniform(edges[0] - span / 4, edges[-1] + span / 4, 3000)
    return np.concatenate([*near, noise.astype(np.float32)]).astype(np.float32)


@pytest.mark.parametrize(("lo", "hi"), RANGES)
def test_both_binnings_count_as_numpy_on_and_beside_every_edge(lo, hi):
    bins = Bins(lo, hi, 64)
    x = on_and_beside_every_edge(bins.edges, 1)
    want = numpy_counts(x, bins.edges)
    assert want[1:-1].sum() > 0 and want[0] > 0 and want[-1] > 0
    np.testing.assert_array_equal(compiled_counts(x, bins), want)
    np.testing.assert_array_equal(torch_counts(x, bins), want)


@pytest.mark.parametrize("path", ["compiled", "torch"])
@pytest.mark.parametrize(("lo", "hi"), RANGES)
def test_running_stats_histograms_are_numpys_over_the_reported_edges(lo, hi, path, request):
    """End to end, both paths, several outputs per batch binned together (torch)."""
    if path == "torch":
        request.getfixturevalue("torch_path")
    ranges = {"a": (lo, hi), "b": (-1.0, 1.0)}
    running = RunningStats(hist_sample=None, hist_ranges=ranges)
    seen: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    for batch in range(3):
        for name, (a, b) in ranges.items():
            x = on_and_beside_every_edge(np.linspace(a, b, 65), 10 * batch + len(name))
            x = x[: x.size // 5 * 5]
            running.collect(name, torch.from_numpy(x).reshape(5, -1))
            seen[name].append(x)
        running.flush()
    running.close()
    got = running.arrays()
    np.testing.assert_array_equal(got["act_hist_edges"][0], np.linspace(lo, hi, 65))
    for i, name in enumerate(got["modules"]):
        want = numpy_counts(np.concatenate(seen[name]), got["act_hist_edges"][i])
        np.testing.assert_array_equal(got["act_hist"][i], want)


def test_narrow_bins_need_more_than_one_correction_step():
    """The range where one step of the torch correction would not do: the bound says so."""
    assert Bins(-1.0, 1.0, 64).steps == 1 and Bins(-5.0, -4.9, 64).steps == 1
    bins = Bins(300.0, 300.0 + 2e-4, 64)
    assert bins.steps > 1
    x = on_and_beside_every_edge(bins.edges, 2)
    t = torch.from_numpy(x)
    lower, upper = bins.tables(t.device)
    scale, offset = float(bins.scale32), float(bins.offset32)
    one = torch_bins(t, scale, offset, lower, upper, 65.0, bins.slack, 1)
    assert (one.numpy() != np.searchsorted(bins.edges, x, side="right")).any()


def test_bin_sample_counts_the_sampled_positions_of_every_row():
    rows, per_row = 5, 300
    x = torch.randn(rows, per_row, generator=torch.Generator().manual_seed(2))
    positions = torch.tensor([0, 3, 150, 299])
    bins = Bins(-2.25, 2.0, 16)
    hist = compiled_counts(x.reshape(-1).numpy(), bins, positions.numpy(), rows)
    np.testing.assert_array_equal(hist, numpy_counts(x[:, positions].numpy(), bins.edges))
    assert hist.sum() == rows * len(positions)


def test_reduce_and_bin_is_moments_then_bin_sample_and_skips_non_finite_outputs():
    x = torch.randn(6, 500, generator=torch.Generator().manual_seed(5)).reshape(-1).numpy()
    positions = np.array([1, 2, 250, 499])
    bins = Bins(-2.5, 2.5, 40)
    args = (6, positions, bins.scale32, bins.offset32, bins.edges32)
    alone, together = np.zeros(42, np.int64), np.zeros(42, np.int64)
    bin_sample(x, *args, alone)
    assert reduce_and_bin(x, 0.25, *args, together) == moments(x, 0.25)
    np.testing.assert_array_equal(together, alone)
    x[700] = np.nan
    _, hi, *_ = reduce_and_bin(x, 0.25, *args, together)
    assert math.isnan(hi)
    np.testing.assert_array_equal(together, alone)  # nothing binned


class Encoder(nn.Module):
    """A transformer encoder over 8x8 digits read as 8 tokens of 8 pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x.reshape(-1, 8, 8))).mean(1))


@pytest.fixture(scope="module")
def models():
    data = examples.digits()
    torch.manual_seed(0)
    return {
        "cnn": examples.train_digits_cnn(data, epochs=1),
        "encoder": Encoder().eval(),
        "mlp": nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.Tanh(), nn.Linear(48, 10)),
    }, data.test_inputs[:300]


@pytest.mark.parametrize("arch", ["cnn", "encoder", "mlp"])
def test_compiled_and_torch_paths_give_the_same_statistics(models, arch, monkeypatch):
    nets, x = models
    compiled = evaluate_model(nets[arch], x, batch_size=64, progress=False)
    monkeypatch.setattr(stats, "_KERNELS", None)
    # Ranges come from the first batch's mean and std (float32 sums on the torch path):
    # fixed, the histograms must agree bin for bin.
    reference = evaluate_model(
        nets[arch],
        x,
        batch_size=64,
        progress=False,
        stats_thread=False,
        hist_ranges=compiled.hist_ranges(),
    )
    assert compiled.modules == reference.modules
    for field in STAT_FIELDS:
        np.testing.assert_array_equal(getattr(compiled, field), getattr(reference, field))
    # float64 sums against torch's float32 ones
    np.testing.assert_allclose(compiled.act_mean, reference.act_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(compiled.act_std, reference.act_std, rtol=1e-5)
    np.testing.assert_array_equal(compiled.act_hist_edges, reference.act_hist_edges)
    np.testing.assert_array_equal(compiled.act_hist, reference.act_hist)


def test_compiled_sums_are_the_float64_ones(models):
    """A large mean over a small spread: float32 sums would lose digits here."""
    _, x = models
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16)).eval()
    with torch.no_grad():
        model[1].weight.mul_(1e-3)
        model[1].bias.fill_(300.0)
    r = evaluate_model(model, x, batch_size=64, progress=False, activations=["1"], embedding="1")
    with torch.inference_mode():
        out = model(x).double()
    np.testing.assert_allclose(r.act_mean[0], out.mean().item(), rtol=1e-12)
    np.testing.assert_allclose(r.act_std[0], out.std(correction=0).item(), rtol=1e-7)


def test_nan_is_named_by_module_and_batch_on_the_compiled_path(models):
    nets, x = models

    class NanAfterFirstBatch(nn.Module):
        calls = 0

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return t / 0.0 * 0.0 if self.calls == 2 else t

    model = nn.Sequential(nets["mlp"][:2], NanAfterFirstBatch(), *nets["mlp"][2:]).eval()
    with pytest.raises(EvaluationError, match=r"nan.*'1' \(NanAfterFirstBatch\) on batch 1"):
        evaluate_model(model, x, batch_size=64, progress=False, stats_thread=False)


@pytest.mark.parametrize("path", ["compiled", "torch"])
def test_running_stats_add_up_batches_on_either_path(path, request):
    if path == "torch":
        request.getfixturevalue("torch_path")
    gen = torch.Generator().manual_seed(3)
    parts = [torch.randn(16, 3, 40, generator=gen) * 2 + 1 for _ in range(4)]
    stats = RunningStats(hist_sample=None, hist_ranges={"m": (-6.0, 8.0)})
    for p in parts:
        stats.begin_batch(None)
        stats.collect("m", p)
    stats.close()
    got = stats.arrays()
    whole = torch.cat(parts).double()
    assert got["act_count"][0] == whole.numel()
    np.testing.assert_allclose(got["act_mean"][0], whole.mean().item(), rtol=1e-6)
    np.testing.assert_allclose(got["act_std"][0], whole.std(correction=0).item(), rtol=1e-6)
    assert got["act_min"][0] == whole.min().item() and got["act_max"][0] == whole.max().item()
    np.testing.assert_array_equal(got["act_hist_edges"][0], np.linspace(-6.0, 8.0, 65))
    counts = numpy_counts(whole.float().numpy().ravel(), got["act_hist_edges"][0])
    np.testing.assert_array_equal(got["act_hist"][0], counts)  # exact, not float32-close


def test_one_process_at_a_time_compiles_or_loads_the_kernels(monkeypatch):
    """The lock around compiling is held across processes (numba's cache is not safe
    against two writers), and the kernels' import takes it."""
    child = (
        "import fcntl, sys\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    try:\n"
        "        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "    except BlockingIOError:\n"
        "        print('held')\n"
        "    else:\n"
        "        print('free')\n"
    )
    seen = []
    real_open = open

    def spy(path, *args, **kwargs):
        seen.append(str(path))
        return real_open(path, *args, **kwargs)

    # A module-level name is found before the builtin.
    monkeypatch.setattr(kernels, "open", spy, raising=False)
    with kernels._one_process_at_a_time():
        (path,) = seen
        held = subprocess.run([sys.executable, "-c", child, path], capture_output=True)
    free = subprocess.run([sys.executable, "-c", child, path], capture_output=True)
    assert (held.stdout.strip(), free.stdout.strip()) == (b"held", b"free")


def test_processes_compiling_at_once_into_an_empty_cache_agree(tmp_path):
    code = (
        "import numpy as np\n"
        "from cnc_widgets.evaluate.histogram import Bins\n"
        "from cnc_widgets.evaluate.kernels import bin_sample, moments\n"
        "x = np.linspace(-3, 5, 10001, dtype=np.float32)\n"
        "h, b = np.zeros(10, np.int64), Bins(-3.0, 5.0, 8)\n"
        "bin_sample(x, 1, np.zeros(0, np.int64), b.scale32, b.offset32, b.edges32, h)\n"
        "print(moments(x, 0.5), h.tolist())\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert outs[0][0] == outs[1][0]
    index = sorted(f.name.split("-")[0] for f in tmp_path.rglob("*.nbi"))
    assert index == [f"kernels.{name}" for name in sorted(kernels.__all__)]  # one entry each


def test_an_unwritable_lock_file_means_no_lock_not_no_kernels(monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(kernels, "open", refuse, raising=False)
    ran = []
    with kernels._one_process_at_a_time():
        ran.append(True)
    assert ran == [True]


@pytest.mark.parametrize("n", [1, 4095, 100_003])
def test_pair_sums_are_the_float64_sums(n):
    """The layer table's five activation sums in one pass: float64 sums of float32 values."""
    from cnc_widgets.evaluate.kernels import pair_sums

    gen = np.random.default_rng(n)
    a = (gen.standard_normal(n) * 2 - 0.5).astype(np.float32)
    b = (a + gen.standard_normal(n).astype(np.float32) * 0.1).astype(np.float32)
    b[gen.random(n) < 0.3] = 0.0
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d = b64 - a64
    want = [
        math.fsum(a64 * a64),
        math.fsum(np.abs(a64)),
        math.fsum(np.abs(b64)),
        math.fsum(d * d),
        math.fsum(np.abs(d)),
    ]
    assert pair_sums(a, b) == pytest.approx(want, rel=1e-12)


def test_pair_sums_tokens_skip_padded_tokens():
    from cnc_widgets.evaluate.kernels import pair_sums, pair_sums_tokens

    gen = np.random.default_rng(7)
    a = gen.standard_normal((6, 5, 3)).astype(np.float32)
    b = gen.standard_normal((6, 5, 3)).astype(np.float32)
    real = gen.random((6, 5)) < 0.6
    keep = np.repeat(real.reshape(-1), 3)
    want = pair_sums(a.reshape(-1)[keep].copy(), b.reshape(-1)[keep].copy())
    got = pair_sums_tokens(a.reshape(-1), b.reshape(-1), real.reshape(-1), 3)
    assert got == pytest.approx(want, rel=1e-12)
    assert pair_sums_tokens(a.reshape(-1), b.reshape(-1), np.zeros(30, bool), 3) == (0,) * 5


def test_weight_change_equals_the_torch_path(monkeypatch):
    """The layer table's weight measures in one compiled pass equal the torch path's: zero
    counts and bins exactly (values on the bin edges, 0 -> 0, 0 -> x, NaN), sums to 1e-12."""
    from cnc_widgets.evaluate import stats
    from cnc_widgets.metrics.weights import _weight_row

    gen = np.random.default_rng(3)
    a = gen.standard_normal(50_001)
    b = a * (1 + gen.choice([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, -0.2, 0.33, 2.0], a.size))
    a[:500], b[:250] = 0.0, 0.0  # zero in both, zero in a only
    b[600:900] = 0.0  # pruned
    a[1000], b[1001] = np.nan, np.nan
    wa = {
        "weight": torch.from_numpy(a[:40_000].reshape(200, 200)),
        "bias": torch.from_numpy(a[40_000:]),
    }
    wb = {
        "weight": torch.from_numpy(b[:40_000].reshape(200, 200)),
        "bias": torch.from_numpy(b[40_000:]),
    }
    compiled = _weight_row(wa, wb)
    monkeypatch.setattr(stats, "_KERNELS", None)
    reference = _weight_row(wa, wb)
    assert compiled.keys() == reference.keys()
    for key, want in reference.items():
        if key.startswith(("zero_", "sparsity_", "weight_elem_change", "params")):
            assert compiled[key] == want, key
        else:
            assert compiled[key] == pytest.approx(want, rel=1e-12, nan_ok=True), key
    assert sum(reference[k] for k in reference if k.startswith("weight_elem_change")) < 1.0  # NaNs
