"""Histogram bins for one module's weights and activations in two models, for the charts.

Pure functions from tensors and stored counts to tables; :meth:`Comparison.histograms`
finds the module in both models and calls :func:`module_histograms`. Weights are exact
values, so any bins can be drawn: equal-width bins over the range of both models, or
"nice" bins (steps of 1, 2 or 5 x 10^k, centred on multiples of the step, so a pruned
model's zeros sit in the middle of one bin) shared by both models, as Compress and Compare
draws them. Activations are kept at evaluation only as a streaming histogram per model;
they can share bins only where one model's bin edges are also the other's, which holds
exactly when both were evaluated over the same histogram ranges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

__all__ = ["activation_histograms", "module_histograms", "nice_edges", "weight_histograms"]

WEIGHT_COLUMNS = ["left", "right", "a", "b"]
# Fewer common edges than this and a shared activation histogram says too little.
MIN_SHARED_BINS = 8


def nice_edges(lo: float, hi: float, max_bins: int = 31) -> np.ndarray:
    """At most ``max_bins`` equal bins covering ``[lo, hi]``, centred on multiples of a step.

    The step is the smallest of ``{1, 2, 5} x 10^k`` that needs no more than ``max_bins``
    bins; bin ``k`` is ``[(k - 1/2) step, (k + 1/2) step)``, so 0 is the centre of a bin.

    Examples
    --------
    >>> nice_edges(-0.9, 1.0, max_bins=5).tolist()
    [-1.25, -0.75, -0.25, 0.25, 0.75, 1.25]
    """
    if max_bins < 1:
        raise ValueError(f"max_bins must be at least 1, got {max_bins}")
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise ValueError(f"nice_edges needs a finite range lo <= hi, got [{lo}, {hi}]")
    if hi == lo:  # one value: a range around it
        pad = 0.5 * max(abs(lo), 1.0)
        lo, hi = lo - pad, hi + pad
    step = 10.0 ** math.floor(math.log10((hi - lo) / max_bins))
    while True:
        for factor in (1.0, 2.0, 5.0):
            size = factor * step
            first, last = math.floor(lo / size + 0.5), math.ceil(hi / size - 0.5)
            # The last bin is closed on the right (np.histogram), so hi may sit on its edge.
            if last - first + 1 <= max_bins:
                return (np.arange(first, last + 2) - 0.5) * size
        step *= 10.0


def _flat(tensors: Mapping[str, torch.Tensor] | None) -> np.ndarray:
    if not tensors:
        return np.zeros(0, dtype=np.float32)
    return torch.cat([t.detach().flatten().float() for t in tensors.values()]).cpu().numpy()


def weight_histograms(
    weights_a: Mapping[str, torch.Tensor] | None,
    weights_b: Mapping[str, torch.Tensor] | None,
    *,
    bins: int = 40,
    nice: bool = False,
) -> pd.DataFrame:
    """Element counts of one module's parameters in a and b over common bins.

    Parameters
    ----------
    weights_a, weights_b
        The module's parameter tensors by name (:func:`module_weights` gives them), or
        None for a model that lacks the module (its counts are all zero).
    bins
        ``nice=False``: exactly this many equal bins from the smallest to the largest
        value of both models; ``nice=True``: at most this many bins of :func:`nice_edges`.
    nice
        Use :func:`nice_edges` (Compress and Compare draws 31 of them for weights).

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``left``, ``right``, ``a``, ``b`` (counts; NaN and inf counted
        in no bin). No rows when neither model has parameters there.

    Examples
    --------
    >>> w = {"weight": torch.tensor([0.0, 0.1, 0.9])}
    >>> weight_histograms(w, None, bins=2)["a"].tolist()
    [2, 1]
    """
    va, vb = _flat(weights_a), _flat(weights_b)
    both = np.concatenate([va, vb])
    both = both[np.isfinite(both)]
    if both.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in WEIGHT_COLUMNS})
    lo, hi = float(both.min()), float(both.max())
    if nice:
        edges = nice_edges(lo, hi, bins)
    else:
        hi = hi if hi > lo else lo + 1.0
        edges = np.linspace(lo, hi, bins + 1)
    return pd.DataFrame(
        {
            "left": edges[:-1],
            "right": edges[1:],
            "a": np.histogram(va, edges)[0],
            "b": np.histogram(vb, edges)[0],
        }
    )


def _rebinned(edges: np.ndarray, counts: np.ndarray, common: np.ndarray) -> np.ndarray:
    """Counts over ``edges`` (with under- and overflow bins) summed onto ``common`` edges.

    Exact because every common edge is one of ``edges``: each bin falls whole into one
    common bin, or below or above them all.
    """
    left = np.concatenate([[-np.inf], edges])  # left edge of every bin, underflow first
    target = np.searchsorted(common, left, side="right")  # 0: below, len: above
    return np.bincount(target, weights=counts, minlength=len(common) + 1).astype(np.int64)


def activation_histograms(
    hist_a: tuple[np.ndarray, np.ndarray] | None,
    hist_b: tuple[np.ndarray, np.ndarray] | None,
    *,
    shared: bool = False,
) -> pd.DataFrame:
    """Both models' streaming activation histograms of one module, as one table.

    Parameters
    ----------
    hist_a, hist_b
        ``(edges, counts)`` as evaluation keeps them (``act_hist_edges`` and ``act_hist``
        of the module: ``len(edges) + 1`` counts, the first below ``edges[0]`` and the
        last at or above ``edges[-1]``), or None where the model did not record it.
    shared
        Put both on the bin edges the two have in common, when they share at least
        :data:`MIN_SHARED_BINS` bins (always when both were evaluated over the same
        ranges): counts are summed, never split, so the result is exact. Otherwise each
        model keeps its own bins and ``attrs["note"]`` says why.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``(model, bin)`` (model ``"a"`` or ``"b"``), columns ``left``,
        ``right`` (``-inf`` / ``inf`` for the under- and overflow bins) and ``count``;
        ``attrs["bins"]`` is ``"shared"`` or ``"per-model"``.

    Examples
    --------
    >>> e = np.array([0.0, 1.0, 2.0])
    >>> activation_histograms((e, np.array([0, 3, 1, 0])), None).attrs["bins"]
    'per-model'
    """
    given = {k: v for k, v in (("a", hist_a), ("b", hist_b)) if v is not None}
    parts, note = {}, ""
    for label, (edges, counts) in given.items():
        parts[label] = (np.asarray(edges, dtype=float), np.asarray(counts, dtype=np.int64))
    mode = "per-model"
    if shared and len(parts) == 2:
        common = np.intersect1d(parts["a"][0], parts["b"][0])
        if len(common) - 1 >= MIN_SHARED_BINS:
            parts = {k: (common, _rebinned(e, c, common)) for k, (e, c) in parts.items()}
            mode = "shared"
        else:
            note = (
                "each model's own bins: their evaluations chose different histogram ranges, "
                f"with {max(len(common) - 1, 0)} bins in common"
            )
    frames = [
        pd.DataFrame(
            {
                "model": label,
                "bin": np.arange(len(edges) + 1),
                "left": np.concatenate([[-np.inf], edges]),
                "right": np.concatenate([edges, [np.inf]]),
                "count": counts,
            }
        )
        for label, (edges, counts) in parts.items()
    ]
    frame = pd.concat(frames).set_index(["model", "bin"]) if frames else pd.DataFrame()
    frame.attrs["bins"] = mode
    frame.attrs["note"] = note
    return frame


def module_histograms(
    weights_a: Mapping[str, torch.Tensor] | None,
    weights_b: Mapping[str, torch.Tensor] | None,
    activations_a: tuple[np.ndarray, np.ndarray] | None,
    activations_b: tuple[np.ndarray, np.ndarray] | None,
    *,
    bins: int = 40,
    shared: bool = False,
) -> dict[str, pd.DataFrame]:
    """Weight and activation histograms of one module in a and b, for the views.

    ``shared=False``: :func:`weight_histograms` with ``bins`` equal bins and each model's
    own activation bins (what the charts always drew). ``shared=True``: nice weight bins
    (at most ``bins``; Compress and Compare uses 31) and activations on common edges
    where that is exact (see :func:`activation_histograms`).

    Examples
    --------
    >>> w = {"weight": torch.tensor([0.0, 0.1, 0.9])}
    >>> sorted(module_histograms(w, w, None, None))
    ['activations', 'weights']
    """
    return {
        "weights": weight_histograms(weights_a, weights_b, bins=bins, nice=shared),
        "activations": activation_histograms(activations_a, activations_b, shared=shared),
    }
