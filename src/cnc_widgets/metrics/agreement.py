"""Prediction-level comparison of two models on the same instances.

Model ``a`` is the reference and ``b`` the model compared with it: differences are ``b - a``
and ratios ``b / a``. Inputs may be numpy arrays, torch tensors or sequences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "agreement",
    "change_matrix",
    "error_jaccard",
    "group_accuracy_change",
    "instance_table",
    "jaccard",
]


def _array(x: Any, name: str, ndim: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16; logits are analysed in float64 anyway.
        if x.is_floating_point():
            x = x.double()
        x = x.numpy()
    arr = np.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _labels(x: Any, name: str) -> np.ndarray:
    arr = _array(x, name, 1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices")
        arr = arr.astype(np.int64)
    return arr.astype(np.int64, copy=False)


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shapes = ", ".join(f"{name} {a.shape}" for name, a in arrays.items())
        raise ValueError(f"inputs must describe the same instances; got shapes {shapes}")
    return next(iter(lengths.values()))


def jaccard(set_a: Any, set_b: Any) -> float:
    """Jaccard index ``|A & B| / |A | B|`` of two boolean membership masks.

    Parameters
    ----------
    set_a, set_b : array-like of bool, shape (N,)
        Membership of each instance in A and in B.

    Returns
    -------
    float
        1.0 when both sets are empty: two models that agree on having nothing to flag agree.

    Examples
    --------
    >>> jaccard([True, True, False], [True, False, False])
    0.5
    """
    a = _array(set_a, "set_a", 1).astype(bool)
    b = _array(set_b, "set_b", 1).astype(bool)
    _same_length(set_a=a, set_b=b)
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b) / union)


def agreement(pred_a: Any, pred_b: Any) -> float:
    """Fraction of instances on which both models predict the same class.

    Parameters
    ----------
    pred_a, pred_b : array-like of int, shape (N,)
        Predicted class indices of model a and model b.

    Returns
    -------
    float
        ``mean_i [pred_a(i) == pred_b(i)]``.

    Examples
    --------
    >>> agreement([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    a, b = _labels(pred_a, "pred_a"), _labels(pred_b, "pred_b")
    n = _same_length(pred_a=a, pred_b=b)
    if n == 0:
        raise ValueError("agreement of zero instances is undefined")
    return float(np.mean(a == b))


def error_jaccard(pred_a: Any, pred_b: Any, labels: Any) -> float:
    """Jaccard index of the two models' error sets.

    Parameters
    ----------
    pred_a, pred_b : array-like of int, shape (N,)
        Predicted class indices.
    labels : array-like of int, shape (N,)
        True class indices.

    Returns
    -------
    float
        ``|E_a & E_b| / |E_a | E_b|`` with ``E_m = {i : pred_m(i) != y(i)}``; 1.0 when
        neither model makes an error.

    Examples
    --------
    >>> error_jaccard([0, 1, 0, 0], [0, 0, 0, 1], labels=[0, 0, 1, 1])
    0.3333333333333333
    """
    a, b = _labels(pred_a, "pred_a"), _labels(pred_b, "pred_b")
    y = _labels(labels, "labels")
    _same_length(pred_a=a, pred_b=b, labels=y)
    return jaccard(a != y, b != y)


def change_matrix(
    pred_a: Any,
    pred_b: Any,
    n_classes: int,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Count instances by (a's prediction, b's prediction).

    Parameters
    ----------
    pred_a, pred_b : array-like of int, shape (N,)
        Predicted class indices in ``[0, n_classes)``.
    n_classes : int
        Number of classes; the matrix is ``n_classes x n_classes`` even for unused classes.
    classes : sequence of str, optional
        Class names for the index and columns; default the class indices.

    Returns
    -------
    pandas.DataFrame
        ``[c, c'] = #{i : pred_a(i) = c, pred_b(i) = c'}``; index named ``pred_a``, columns
        named ``pred_b``. The diagonal holds agreements.

    Examples
    --------
    >>> change_matrix([0, 0, 1], [0, 1, 1], n_classes=2).to_numpy().tolist()
    [[1, 1], [0, 1]]
    """
    a, b = _labels(pred_a, "pred_a"), _labels(pred_b, "pred_b")
    _same_length(pred_a=a, pred_b=b)
    for name, p in (("pred_a", a), ("pred_b", b)):
        if p.size and (p.min() < 0 or p.max() >= n_classes):
            raise ValueError(
                f"{name} holds class {p.min() if p.min() < 0 else p.max()} outside "
                f"[0, {n_classes}); pass the model's number of classes as n_classes"
            )
    names = list(range(n_classes)) if classes is None else list(classes)
    if len(names) != n_classes:
        raise ValueError(f"classes has {len(names)} names for n_classes={n_classes}")
    counts = np.bincount(a * n_classes + b, minlength=n_classes * n_classes)
    return pd.DataFrame(
        counts.reshape(n_classes, n_classes),
        index=pd.Index(names, name="pred_a"),
        columns=pd.Index(names, name="pred_b"),
    )


def _log_softmax(z: np.ndarray) -> np.ndarray:
    # Shift by the row max so exp never overflows, then subtract log-sum-exp.
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def instance_table(
    logits_a: Any,
    logits_b: Any,
    labels: Any,
    ids: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """One row per instance comparing the two models' outputs.

    Parameters
    ----------
    logits_a, logits_b : array-like of float, shape (N, C)
        Logits of model a and model b over the same C classes.
    labels : array-like of int, shape (N,)
        True class indices.
    ids : sequence, optional
        Instance identifiers used as the index (named ``id``); default ``0 .. N-1``.

    Returns
    -------
    pandas.DataFrame
        Columns ``label, pred_a, pred_b, conf_true_a, conf_true_b, conf_true_diff`` (b - a),
        ``conf_true_ratio`` (b / a, computed as ``exp(log p_b - log p_a)`` so it stays finite
        when a's probability underflows), ``kl`` (``KL(p_a || p_b)`` in nats, from
        log-softmax in float64), ``mse`` (mean over classes of squared logit difference),
        ``correct_a, correct_b`` and ``difference_argmax``: ``p_b[c] - p_a[c]`` for the class
        ``c = argmax p_a`` that the reference predicts (the first on a tie), what Compress and
        Compare calls "difference_argmax" on probabilities; in [-1, 1) and defined for every
        row, true labels or not.

    Raises
    ------
    ValueError
        If the models have different numbers of classes or the inputs different lengths.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[2.0, 0.0], [0.0, 1.0]])
    >>> instance_table(z, z, labels=[0, 0])["kl"].tolist()
    [0.0, 0.0]
    """
    za = _array(logits_a, "logits_a", 2).astype(np.float64, copy=False)
    zb = _array(logits_b, "logits_b", 2).astype(np.float64, copy=False)
    y = _labels(labels, "labels")
    if za.shape[1] != zb.shape[1]:
        raise ValueError(
            f"logits_a has {za.shape[1]} classes but logits_b has {zb.shape[1]}; "
            "compare models that share one label set (slice both logits to the common "
            "classes first if one model has extra outputs)"
        )
    n = _same_length(logits_a=za, logits_b=zb, labels=y)
    n_classes = za.shape[1]
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be class indices in [0, {n_classes})")
    log_pa, log_pb = _log_softmax(za), _log_softmax(zb)
    pa = np.exp(log_pa)
    rows = np.arange(n)
    with np.errstate(invalid="ignore"):
        # 0 * log 0 = 0: a class a gives no probability contributes nothing (avoids 0 * inf).
        terms = np.where(pa > 0, pa * (log_pa - log_pb), 0.0)
    # Rounding can leave a tiny negative sum where the distributions coincide.
    kl = np.maximum(terms.sum(axis=1), 0.0)
    pred_a, pred_b = za.argmax(axis=1), zb.argmax(axis=1)
    conf_a, conf_b = pa[rows, y], np.exp(log_pb[rows, y])
    top_a, top_b = pa[rows, pred_a], np.exp(log_pb[rows, pred_a])
    index = pd.RangeIndex(n, name="id") if ids is None else pd.Index(list(ids), name="id")
    if len(index) != n:
        raise ValueError(f"ids has {len(index)} entries for {n} instances")
    return pd.DataFrame(
        {
            "label": y,
            "pred_a": pred_a,
            "pred_b": pred_b,
            "conf_true_a": conf_a,
            "conf_true_b": conf_b,
            "conf_true_diff": conf_b - conf_a,
            "conf_true_ratio": np.exp(log_pb[rows, y] - log_pa[rows, y]),
            "kl": kl,
            "mse": np.mean((za - zb) ** 2, axis=1),
            "correct_a": pred_a == y,
            "correct_b": pred_b == y,
            "difference_argmax": top_b - top_a,
        },
        index=index,
    )


def group_accuracy_change(
    pred_a: Any,
    pred_b: Any,
    labels: Any,
    groups: Any | None = None,
    names: Mapping[Any, str] | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Accuracy of both models within each group of instances, and its change.

    Parameters
    ----------
    pred_a, pred_b : array-like of int, shape (N,)
        Predicted class indices.
    labels : array-like of int, shape (N,)
        True class indices.
    groups : array-like, shape (N,), optional
        Group of each instance; default the true class.
    names : mapping or sequence, optional
        Display name of each group id (a sequence is indexed by integer group id, e.g. class
        names); groups without a name keep their id.

    Returns
    -------
    pandas.DataFrame
        One row per group present (sorted by group id; instances whose group is None or
        NaN form one more group, keyed NaN, last), index named ``group``, columns
        ``count, accuracy_a, accuracy_b, change`` with ``change = accuracy_b - accuracy_a``.

    Examples
    --------
    >>> group_accuracy_change([0, 1, 1], [0, 0, 1], labels=[0, 1, 1])["change"].tolist()
    [0.0, -0.5]
    """
    a, b = _labels(pred_a, "pred_a"), _labels(pred_b, "pred_b")
    y = _labels(labels, "labels")
    g = y if groups is None else _array(groups, "groups", 1)
    _same_length(pred_a=a, pred_b=b, labels=y, groups=g)
    frame = pd.DataFrame({"group": g, "correct_a": a == y, "correct_b": b == y})
    # Instances without a group (None, NaN) are counted as a group of their own.
    table = frame.groupby("group", sort=True, dropna=False).agg(
        count=("correct_a", "size"),
        accuracy_a=("correct_a", "mean"),
        accuracy_b=("correct_b", "mean"),
    )
    table["change"] = table["accuracy_b"] - table["accuracy_a"]
    if names is not None:
        lookup = names if isinstance(names, Mapping) else dict(enumerate(names))
        table.index = pd.Index([lookup.get(key, key) for key in table.index], name="group")
    return table
