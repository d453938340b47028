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
from cnc_widgets.evaluate import activations, kernels
from cnc_widgets.evaluate.activations import RunningStats
from cnc_widgets.evaluate.inference import EvaluationError, evaluate_model
from cnc_widgets.evaluate.kernels import bin_sample, moments, reduce_and_bin

STAT_FIELDS = ["act_count", "act_zero_frac", "act_min", "act_max"]


@pytest.fixture
def torch_path(monkeypatch):
    """RunningStats as on a machine without numba: torch reductions on the CPU."""
    monkeypatch.setattr(activations, "_KERNELS", None)


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


def torch_bins(x: torch.Tensor, scale: float, offset: float, width: int) -> np.ndarray:
    """The torch path's binning (RunningStats._add_histograms)."""
    bins = x.mul(torch.tensor(scale, dtype=torch.float32)).add_(offset)
    bins = bins.clamp_(0.0, width - 1.0).to(torch.int64)
    return torch.bincount(bins, minlength=width).numpy()


@pytest.mark.parametrize(("lo", "hi"), [(-1.0, 1.0), (0.0, 3.0), (-0.3, 0.7), (1e3, 1e3 + 0.01)])
def test_bin_sample_matches_torch_on_and_beside_every_edge(lo, hi):
    bins = 64
    edges = torch.linspace(lo, hi, bins + 1)
    near = torch.cat([edges, edges.nextafter(edges + 1), edges.nextafter(edges - 1)])
    x = torch.cat([near, torch.rand(1000, generator=torch.Generator().manual_seed(1)) * 2 - 0.5])
    scale = bins / (hi - lo)
    offset = float(np.float32(1.0 - lo * scale))
    hist = np.zeros(bins + 2, np.int64)
    bin_sample(x.numpy(), 1, np.zeros(0, np.int64), np.float32(scale), np.float32(offset), hist)
    np.testing.assert_array_equal(hist, torch_bins(x, scale, offset, bins + 2))


def test_bin_sample_counts_the_sampled_positions_of_every_row():
    rows, per_row = 5, 300
    x = torch.randn(rows, per_row, generator=torch.Generator().manual_seed(2))
    positions = torch.tensor([0, 3, 150, 299])
    hist = np.zeros(18, np.int64)
    bin_sample(
        x.reshape(-1).numpy(), rows, positions.numpy(), np.float32(4.0), np.float32(9.0), hist
    )
    np.testing.assert_array_equal(hist, torch_bins(x[:, positions].reshape(-1), 4.0, 9.0, 18))
    assert hist.sum() == rows * len(positions)


def test_reduce_and_bin_is_moments_then_bin_sample_and_skips_non_finite_outputs():
    x = torch.randn(6, 500, generator=torch.Generator().manual_seed(5)).reshape(-1).numpy()
    positions = np.array([1, 2, 250, 499])
    args = (6, positions, np.float32(8.0), np.float32(20.0))
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
    monkeypatch.setattr(activations, "_KERNELS", None)
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
    counts, _ = np.histogram(whole.numpy().ravel(), np.linspace(-6.0, 8.0, 65))
    assert np.abs(got["act_hist"][0][1:-1] - counts).sum() <= 4  # float32 bins vs float64


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
        "from cnc_widgets.evaluate.kernels import bin_sample, moments\n"
        "x = np.linspace(-3, 5, 10001, dtype=np.float32)\n"
        "h = np.zeros(10, np.int64)\n"
        "bin_sample(x, 1, np.zeros(0, np.int64), np.float32(1), np.float32(4), h)\n"
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
