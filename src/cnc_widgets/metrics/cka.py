"""Exact linear CKA (Kornblith et al., ICML 2019), streamed over batches of instances.

For column-centred activations X (N x p) and Y (N x q)::

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)

over all N instances, so the value does not depend on how the data was batched. Two ways to
accumulate it, chosen per layer by size:

- feature space: the column sums and X^T X (p x p), plus X^T Y (p x q) for every pair, in
  float64; centring is applied at the end, ``X_c^T Y_c = X^T Y - n mean_x mean_y^T``.
- instance space: when p exceeds N the N x N Gram matrix is smaller than X^T X. Its entries
  pair every instance with every other, so the rows are kept until :meth:`result` and the
  centred Gram K = X_c X_c^T is built then; ``||Y_c^T X_c||_F^2 = <K, L>_F`` and
  ``||X_c^T X_c||_F = ||K||_F``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

__all__ = ["CKAMatrix", "LinearCKA", "cka_memory_estimate", "linear_cka"]

Mode = Literal["auto", "feature", "instance"]
_GRAM_BLOCK_BYTES = 64 * 2**20


def _flat64(x: Any, name: str) -> torch.Tensor:
    """Activations as a (B, features) float64 CPU tensor; trailing dimensions are flattened."""
    t = torch.as_tensor(x).detach().to("cpu")
    if t.ndim < 2:
        raise ValueError(f"{name} must have shape (batch, features...), got {tuple(t.shape)}")
    return t.reshape(t.shape[0], -1).to(torch.float64)


# Symmetric products (X^T X, the Gram X X^T) multiply only the row blocks on and above the
# diagonal, as BLAS's syrk does (torch does not expose it), and copy them below it at the
# end: each entry is the same float64 dot product as in the full product, in ~0.6 the
# time. Below a few blocks the full product is quicker.
_CHUNK = 128


def _add_upper(out: torch.Tensor, a: torch.Tensor) -> None:
    """``out += a @ a.T`` in place, on the blocks of rows on and above the diagonal."""
    n = a.shape[0]
    if n <= 3 * _CHUNK:
        out.addmm_(a, a.T)
        return
    for top in range(0, n, _CHUNK):
        out[top : top + _CHUNK, top:].addmm_(a[top : top + _CHUNK], a[top:].T)


def _mirror_upper(m: torch.Tensor) -> None:
    """Copy the blocks :func:`_add_upper` filled to their mirror images below the diagonal."""
    n = m.shape[0]
    if n <= 3 * _CHUNK:
        return
    for top in range(_CHUNK, n, _CHUNK):
        m[top:, top - _CHUNK : top] = m[top - _CHUNK : top, top:].T


class _Layer:
    """Per-layer running statistics (self terms are computed once per layer)."""

    def __init__(self, name: str, width: int, instance: bool) -> None:
        self.name, self.width, self.instance = name, width, instance
        self.keep_rows = instance
        self.shift: torch.Tensor | None = None
        self.total = torch.zeros(width, dtype=torch.float64)
        self.xtx = None if instance else torch.zeros(width, width, dtype=torch.float64)
        self.rows: list[torch.Tensor] = []

    def shifted(self, x: torch.Tensor) -> torch.Tensor:
        # Subtracting a fixed per-column shift (the first batch's mean) changes no centred
        # quantity but keeps the final `X^T X - n m m^T` free of catastrophic cancellation
        # when activations have large means.
        if self.shift is None:
            self.shift = x.mean(dim=0)
        return x - self.shift

    def update(self, xs: torch.Tensor) -> None:
        self.total += xs.sum(dim=0)
        if self.xtx is not None:
            _add_upper(self.xtx, xs.T)
        if self.keep_rows:
            self.rows.append(xs)

    def centred_self(self, n: int) -> torch.Tensor:
        _mirror_upper(self.xtx)
        return self.xtx - torch.outer(self.total, self.total) / n

    def centred_gram(self) -> torch.Tensor:
        rows = torch.cat(self.rows)
        n = rows.shape[0]
        mean = self.total / n
        gram = torch.zeros(n, n, dtype=torch.float64)
        step = max(1, _GRAM_BLOCK_BYTES // (8 * n))
        for start in range(0, self.width, step):
            _add_upper(gram, rows[:, start : start + step] - mean[start : start + step])
        _mirror_upper(gram)
        return gram


def cka_memory_estimate(
    widths_a: Sequence[int],
    widths_b: Sequence[int],
    n: int | None = None,
    mode: Mode = "auto",
) -> dict[str, int]:
    """Bytes a :class:`CKAMatrix` will hold for these layer widths.

    Parameters
    ----------
    widths_a, widths_b : sequence of int
        Flattened activation widths of the layers of model a and of model b.
    n : int, optional
        Number of instances; needed for instance-space layers.
    mode : {"auto", "feature", "instance"}
        As in :class:`CKAMatrix`.

    Returns
    -------
    dict
        ``self_terms`` (per-layer X^T X), ``cross_terms`` (X^T Y of feature-space pairs),
        ``rows`` (kept activations, float64), ``grams`` (N x N matrices built at the end)
        and ``total``.

    Examples
    --------
    >>> cka_memory_estimate([384] * 8, [384] * 8, n=10_000)["total"] // 2**20
    90
    """
    inst_a = [_is_instance(p, n, mode) for p in widths_a]
    inst_b = [_is_instance(p, n, mode) for p in widths_b]
    keep_a, keep_b = _keeps_rows(inst_a, inst_b)
    widths = list(widths_a) + list(widths_b)
    instance = inst_a + inst_b
    keep = keep_a + keep_b
    self_terms = sum(8 * p * p for p, inst in zip(widths, instance, strict=True) if not inst)
    cross = (
        8
        * sum(p for p, i in zip(widths_a, inst_a, strict=True) if not i)
        * sum(q for q, i in zip(widths_b, inst_b, strict=True) if not i)
    )
    n_rows = n or 0
    rows = sum(8 * n_rows * p for p, k in zip(widths, keep, strict=True) if k)
    grams = 8 * n_rows * n_rows * sum(keep)
    return {
        "self_terms": self_terms,
        "cross_terms": cross,
        "rows": rows,
        "grams": grams,
        "total": self_terms + cross + rows + grams,
    }


def _is_instance(width: int, n: int | None, mode: Mode) -> bool:
    if mode not in ("auto", "feature", "instance"):
        raise ValueError(f"mode must be 'auto', 'feature' or 'instance', got {mode!r}")
    if mode == "auto":
        return n is not None and width > n
    return mode == "instance"


def _keeps_rows(inst_a: list[bool], inst_b: list[bool]) -> tuple[list[bool], list[bool]]:
    # A pair needs Gram matrices if either side is in instance space, so a feature-space
    # layer paired with an instance-space one keeps its rows too.
    any_a, any_b = any(inst_a), any(inst_b)
    return [i or any_b for i in inst_a], [i or any_a for i in inst_b]


class CKAMatrix:
    """Streaming exact linear CKA between every layer of model a and every layer of model b.

    Self terms (X^T X or the Gram) are accumulated once per layer and cross terms once per
    pair, so an L_a x L_b matrix costs L_a + L_b self terms rather than 2 L_a L_b.

    Parameters
    ----------
    layers_a, layers_b : sequence of str
        Layer names of model a and model b (the result's index and columns).
    n : int, optional
        Total number of instances, if known; lets ``mode="auto"`` pick instance space for
        layers wider than n.
    mode : {"auto", "feature", "instance"}
        ``"auto"`` uses instance space for a layer whose width exceeds ``n`` and feature
        space otherwise (always feature space when ``n`` is None).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 5))
    >>> acc = CKAMatrix(["l0", "l1"], ["m0"])
    >>> for rows in np.array_split(np.arange(100), 4):
    ...     acc.update([x[rows], x[rows] ** 2], [3 * x[rows]])
    >>> acc.result().round(6).loc["l0", "m0"]
    np.float64(1.0)
    """

    def __init__(
        self,
        layers_a: Sequence[str],
        layers_b: Sequence[str],
        *,
        n: int | None = None,
        mode: Mode = "auto",
    ) -> None:
        self.names_a, self.names_b = list(layers_a), list(layers_b)
        if not self.names_a or not self.names_b:
            raise ValueError("give at least one layer for each model")
        _is_instance(1, n, mode)  # validates mode early
        self.n_expected, self.mode = n, mode
        self.n = 0
        self._a: list[_Layer] = []
        self._b: list[_Layer] = []
        self._cross: torch.Tensor | None = None

    def _ordered(self, acts: Sequence[Any] | Mapping[str, Any], names: list[str]) -> list[Any]:
        if isinstance(acts, Mapping):
            missing = [name for name in names if name not in acts]
            if missing:
                raise ValueError(f"activations missing for layers {missing}")
            return [acts[name] for name in names]
        if len(acts) != len(names):
            raise ValueError(f"expected {len(names)} activations, got {len(acts)}")
        return list(acts)

    def _setup(self, xs_a: list[torch.Tensor], xs_b: list[torch.Tensor]) -> None:
        inst_a = [_is_instance(x.shape[1], self.n_expected, self.mode) for x in xs_a]
        inst_b = [_is_instance(x.shape[1], self.n_expected, self.mode) for x in xs_b]
        self._a = [
            _Layer(s, x.shape[1], i) for s, x, i in zip(self.names_a, xs_a, inst_a, strict=True)
        ]
        self._b = [
            _Layer(s, x.shape[1], i) for s, x, i in zip(self.names_b, xs_b, inst_b, strict=True)
        ]
        keep_a, keep_b = _keeps_rows(inst_a, inst_b)
        for layer, keep in zip(self._a + self._b, keep_a + keep_b, strict=True):
            layer.keep_rows = keep
        p = sum(layer.width for layer in self._a if not layer.instance)
        q = sum(layer.width for layer in self._b if not layer.instance)
        self._cross = torch.zeros(p, q, dtype=torch.float64)

    def update(
        self,
        acts_a: Sequence[Any] | Mapping[str, Any],
        acts_b: Sequence[Any] | Mapping[str, Any],
    ) -> None:
        """Add one batch: the activations of every layer of a and of b on the same instances.

        Parameters
        ----------
        acts_a, acts_b : sequence (in layer order) or mapping by layer name
            Arrays or tensors of shape (B, ...), flattened to (B, width).
        """
        xs_a = [
            _flat64(x, f"layer {s!r}")
            for s, x in zip(self.names_a, self._ordered(acts_a, self.names_a), strict=True)
        ]
        xs_b = [
            _flat64(x, f"layer {s!r}")
            for s, x in zip(self.names_b, self._ordered(acts_b, self.names_b), strict=True)
        ]
        sizes = {x.shape[0] for x in xs_a + xs_b}
        if len(sizes) != 1:
            raise ValueError(f"every layer must see the same batch; got batch sizes {sizes}")
        if not self._a:
            self._setup(xs_a, xs_b)
        for layer, x in zip(self._a + self._b, xs_a + xs_b, strict=True):
            if x.shape[1] != layer.width:
                raise ValueError(f"layer {layer.name!r} had width {layer.width}, now {x.shape[1]}")
        shifted_a = [layer.shifted(x) for layer, x in zip(self._a, xs_a, strict=True)]
        shifted_b = [layer.shifted(x) for layer, x in zip(self._b, xs_b, strict=True)]
        for layer, xs in zip(self._a + self._b, shifted_a + shifted_b, strict=True):
            layer.update(xs)
        feat_a = [x for layer, x in zip(self._a, shifted_a, strict=True) if not layer.instance]
        feat_b = [x for layer, x in zip(self._b, shifted_b, strict=True) if not layer.instance]
        if feat_a and feat_b:
            # One matmul for all feature-space pairs is faster than L_a x L_b small ones;
            # in place: a p x q temporary a batch costs more than the product (page faults).
            cat_a = feat_a[0] if len(feat_a) == 1 else torch.cat(feat_a, dim=1)
            cat_b = feat_b[0] if len(feat_b) == 1 else torch.cat(feat_b, dim=1)
            self._cross.addmm_(cat_a.T, cat_b)
        self.n += sizes.pop()

    def result(self) -> pd.DataFrame:
        """CKA of every (layer of a, layer of b) pair over all instances seen.

        Returns
        -------
        pandas.DataFrame
            Index the layers of a, columns the layers of b, values in [0, 1]; NaN for a pair
            involving a constant layer (zero centred activations), where CKA is undefined.
        """
        if self.n < 2:
            raise ValueError(f"CKA needs at least 2 instances, got {self.n}")
        layers = self._a + self._b
        norms = {}
        grams = {}
        for layer in layers:
            if layer.keep_rows:
                grams[id(layer)] = layer.centred_gram()
            if layer.instance:
                norms[id(layer)] = torch.linalg.norm(grams[id(layer)]).item()
            else:
                norms[id(layer)] = torch.linalg.norm(layer.centred_self(self.n)).item()
        hsic = np.zeros((len(self._a), len(self._b)))
        feat_a = [i for i, layer in enumerate(self._a) if not layer.instance]
        feat_b = [j for j, layer in enumerate(self._b) if not layer.instance]
        row = 0
        for i in feat_a:
            la = self._a[i]
            col = 0
            for j in feat_b:
                lb = self._b[j]
                block = self._cross[row : row + la.width, col : col + lb.width]
                centred = block - torch.outer(la.total, lb.total) / self.n
                hsic[i, j] = torch.sum(centred * centred).item()
                col += lb.width
            row += la.width
        for i, la in enumerate(self._a):
            for j, lb in enumerate(self._b):
                if la.instance or lb.instance:
                    hsic[i, j] = torch.dot(grams[id(la)].ravel(), grams[id(lb)].ravel()).item()
        denom = np.outer([norms[id(la)] for la in self._a], [norms[id(lb)] for lb in self._b])
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(denom > 0, hsic / denom, np.nan)
        # Cauchy-Schwarz bounds CKA by 1; clipping removes rounding overshoot like 1 + 2e-16.
        return pd.DataFrame(
            np.clip(values, 0.0, 1.0), index=pd.Index(self.names_a), columns=pd.Index(self.names_b)
        )

    def memory_estimate(self) -> dict[str, int]:
        """Bytes held for the layers seen so far (see :func:`cka_memory_estimate`)."""
        if not self._a:
            raise ValueError("widths are known after the first update")
        return cka_memory_estimate(
            [la.width for la in self._a],
            [lb.width for lb in self._b],
            self.n_expected or self.n,
            self.mode,
        )


class LinearCKA:
    """Streaming exact linear CKA between two activations X and Y.

    Parameters
    ----------
    n : int, optional
        Total number of instances, if known (lets ``mode="auto"`` choose instance space).
    mode : {"auto", "feature", "instance"}
        See :class:`CKAMatrix`.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(64, 4))
    >>> acc = LinearCKA()
    >>> for start in range(0, 64, 16):
    ...     acc.update(x[start:start + 16], 2 * x[start:start + 16])
    >>> round(acc.result(), 6)
    1.0
    """

    def __init__(self, *, n: int | None = None, mode: Mode = "auto") -> None:
        self._matrix = CKAMatrix(["x"], ["y"], n=n, mode=mode)

    def update(self, x_batch: Any, y_batch: Any) -> None:
        """Add a batch of X rows and the Y rows of the same instances."""
        self._matrix.update([x_batch], [y_batch])

    def result(self) -> float:
        """CKA over every instance seen so far."""
        return float(self._matrix.result().iloc[0, 0])


def linear_cka(x: Any, y: Any, *, mode: Mode = "auto") -> float:
    """Exact linear CKA of two activation matrices of the same N instances.

    Parameters
    ----------
    x : array or Tensor, shape (N, p) or (N, ...)
    y : array or Tensor, shape (N, q) or (N, ...)
        Trailing dimensions are flattened.
    mode : {"auto", "feature", "instance"}
        ``"auto"`` uses instance space (N x N Gram) for a side wider than N.

    Returns
    -------
    float
        ``||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)`` in [0, 1]; NaN if either
        side is constant.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 3))
    >>> round(linear_cka(x, 5 * x + 1), 6)
    1.0
    """
    if len(x) != len(y):
        raise ValueError(
            f"x and y must hold the same instances: shapes {tuple(np.shape(x))} and "
            f"{tuple(np.shape(y))}"
        )
    acc = LinearCKA(n=len(x), mode=mode)
    acc.update(x, y)
    return acc.result()
