"""Which modules did the damage: group the changed weights, rank them, restore them one by one.

Between a reference ``a`` and a compressed ``b`` of the same architecture, every parameter
tensor present in both (quantized and cast tensors read back as float32, as in the layer
table) is a candidate. Tensors are grouped (:func:`damage_groups`): by module kind and by
block (``"auto"``), one group per module (``"module"``), or by the user's regexes. Each
group gets a cheap ``proxy`` from the weights alone, the relative weight change
``||w_b - w_a|| / ||w_a||`` over its tensors; only the ``top`` groups by proxy are then
measured: the group is restored into a copy of ``b`` (the ``restore`` operation:
values copied back, quantized modules taken back whole) and the copy is evaluated on a few
hundred rows (:func:`damage_table`). ``recovered`` is the fraction of the quality gap that
restoring the group closes,

    recovered = (q_restored - q_b) / (q_a - q_b),

which has the metric's direction built in: 1 means the group alone brings back a's
quality, 0 means no change, negative means restoring it made things worse (and NaN when a
and b have the same quality on those rows). This is AIMET's per-layer analysis and the
ranking step of NNCF's accuracy control, for pruning and quantization alike.

Example
-------
>>> table = reg.compare("base", "pruned").sensitivity()        # doctest: +SKIP
>>> table[["group", "proxy", "recovered"]].head(3)             # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..compress import apply_operation
from ..compress.pruning import is_norm
from ..evaluate.inference import evaluate_model
from .weights import module_weights

__all__ = [
    "DEFAULT_ROWS",
    "DEFAULT_TOP",
    "Group",
    "changed_tensors",
    "damage_groups",
    "damage_table",
    "default_rows",
    "module_kind",
    "restore_group",
]

#: Groups measured by a restore run unless ``top`` says otherwise (the rest keep their proxy).
DEFAULT_TOP = 8
#: Rows a restore run is measured on by default: instances of a classifier, sequences of a
#: language model (each holds many scored tokens, and a forward costs more).
DEFAULT_ROWS = {"instance": 256, "token": 32}

KINDS = ("norms", "attention", "feed_forward", "embeddings", "head", "other")
_HEAD = {"classifier", "head", "lm_head", "score", "pooler", "fc_out", "output_layer"}
_ATTENTION = re.compile(r"attn|attention|(^|\.)(q|k|v|o|qkv|out)_proj(\.|$)|query|key|value")
_FEED_FORWARD = re.compile(
    r"mlp|ffn|feed_?forward|intermediate|(^|\.)(fc\d|linear\d|gate_proj|up_proj|down_proj|wi|wo)"
    r"(\.|$)|(^|\.)output\.dense$"
)
_BLOCK = re.compile(r"^(.*?(?:^|\.)(?:layer|layers|h|block|blocks)\.\d+)(?:\.|$)")


@dataclass
class Group:
    """A named set of parameter tensors (``module.param`` names) restored together."""

    name: str
    by: str  # "kind", "block", "module" or "pattern"
    tensors: list[str]
    pattern: str  # the regex the restore operation is given

    @property
    def modules(self) -> list[str]:
        return sorted({t.rpartition(".")[0] for t in self.tensors})


def module_kind(name: str, module: nn.Module) -> str:
    """What a module with parameters does: one of ``KINDS``.

    Norm layers by type (:func:`cnc_widgets.compress.pruning.is_norm`), embeddings by type or
    name, then attention, feed-forward and head by the names transformers and torch use
    (``attention``/``self_attn``/``q_proj``; ``intermediate``/``mlp``/``linear1``/
    ``down_proj``; ``classifier``/``lm_head``/``head``/``pooler``).

    Examples
    --------
    >>> module_kind("encoder.layer.0.attention.self.query", nn.Linear(2, 2))
    'attention'
    >>> module_kind("model.layers.1.post_attention_layernorm", nn.RMSNorm(2))
    'norms'
    """
    low = name.lower()
    parts = set(low.split("."))
    if is_norm(module):
        return "norms"
    if isinstance(module, nn.Embedding | nn.EmbeddingBag) or "embed" in low.rsplit(".", 1)[-1]:
        return "embeddings"
    if isinstance(module, nn.MultiheadAttention) or _ATTENTION.search(low):
        return "attention"
    if parts & _HEAD:
        return "head"
    if _FEED_FORWARD.search(low):
        return "feed_forward"
    return "other"


def block_of(name: str) -> str | None:
    """The block a module belongs to (``encoder.layer.3``, ``model.layers.0``), or None."""
    found = _BLOCK.match(name)
    return found.group(1) if found else None


def _paired_weights(
    model_a: nn.Module, model_b: nn.Module
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, str]]:
    """Float32 tensors of both models by ``module.param`` name (only those present in both
    with one shape), and each tensor's module kind."""
    wa, wb = module_weights(model_a), module_weights(model_b)
    kinds_of = dict(model_a.named_modules())
    ta, tb, kinds = {}, {}, {}
    for module, tensors in wa.items():
        other = wb.get(module, {})
        for key, value in tensors.items():
            if key in other and other[key].shape == value.shape:
                full = f"{module}.{key}"
                ta[full], tb[full] = value, other[key]
                kinds[full] = module_kind(module, kinds_of[module])
    if not ta:
        raise ValueError(
            "the two models share no parameter tensor by name and shape; sensitivity needs "
            "b to keep a's architecture (pruning, quantization, casts), not structured "
            "pruning, low_rank or drop_layers"
        )
    return ta, tb, kinds


def _module_pattern(modules: Sequence[str]) -> str:
    """A regex matching exactly the state_dict entries owned by these modules."""
    inner = "|".join(re.escape(m) for m in modules)
    return rf"^(?:{inner})\.[^.]+$"


def damage_groups(
    model_a: nn.Module, model_b: nn.Module, groups: str | Sequence[str] = "auto"
) -> tuple[list[Group], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The groups of parameter tensors to rank, and both models' tensors by name.

    ``"auto"``: one group per module kind present (``norms``, ``attention``,
    ``feed_forward``, ``embeddings``, ``head``, ``other``) and one per block (encoder or
    decoder layer); ``"module"``: one group per module with parameters; a list of regexes:
    one group per regex, holding the tensors whose ``module.param`` name it matches
    (``re.search``).
    """
    ta, tb, kinds = _paired_weights(model_a, model_b)
    names = list(ta)
    found: list[Group] = []
    if isinstance(groups, str) and groups in ("auto", "module"):
        if groups == "auto":
            for kind in KINDS:
                members = [t for t in names if kinds[t] == kind]
                if members:
                    pattern = _module_pattern(sorted({t.rpartition(".")[0] for t in members}))
                    found.append(Group(kind, "kind", members, pattern))
            blocks: dict[str, list[str]] = {}
            for t in names:
                block = block_of(t.rpartition(".")[0])
                if block is not None:
                    blocks.setdefault(block, []).append(t)
            for block, members in blocks.items():
                found.append(Group(block, "block", members, rf"^{re.escape(block)}\."))
        else:
            by_module: dict[str, list[str]] = {}
            for t in names:
                by_module.setdefault(t.rpartition(".")[0], []).append(t)
            for module, members in by_module.items():
                found.append(Group(module, "module", members, _module_pattern([module])))
        return found, ta, tb
    if isinstance(groups, str) or not isinstance(groups, Sequence) or not groups:
        raise ValueError(
            f"groups must be 'auto', 'module' or a list of regexes over parameter names, "
            f"got {groups!r}"
        )
    for pattern in groups:
        try:
            regex = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ValueError(f"groups: {pattern!r} is not a valid regular expression") from exc
        members = [t for t in names if regex.search(t)]
        if not members:
            raise ValueError(
                f"groups: {pattern!r} matches no parameter present in both models; names "
                f"look like {names[:4]}"
            )
        found.append(Group(pattern, "pattern", members, pattern))
    return found, ta, tb


def relative_change(ta: dict, tb: dict, tensors: Sequence[str]) -> float:
    """``||w_b - w_a|| / ||w_a||`` over the concatenated tensors (float64)."""
    num = den = 0.0
    for t in tensors:
        a, b = ta[t].double(), tb[t].double()
        num += float(torch.sum((b - a) ** 2))
        den += float(torch.sum(a**2))
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return float(np.sqrt(num / den))


def changed_tensors(model_a: nn.Module, model_b: nn.Module) -> list[str]:
    """``module.param`` names of the tensors b holds with other values than a."""
    ta, tb, _ = _paired_weights(model_a, model_b)
    return [t for t in ta if not torch.equal(ta[t], tb[t])]


def restore_group(model_b: nn.Module, model_a: nn.Module, pattern: str) -> nn.Module:
    """A copy of ``model_b`` with the tensors matching ``pattern`` taken back from ``model_a``.

    The built-in ``restore`` operation: values are copied into b's tensors (a half ``b``
    stays half), and quantized modules (int8 dynamic, torchao) are replaced by copies of
    a's modules. ``model_b`` is not modified.
    """
    return apply_operation(model_b, "restore", pattern=pattern, source=model_a)


def default_rows(n: int, token_level: bool = False) -> np.ndarray:
    """Evenly spaced row indices (deterministic) of an n-row evaluation set.

    Examples
    --------
    >>> default_rows(1000)[:3].tolist(), len(default_rows(1000)), len(default_rows(10))
    ([0, 4, 8], 256, 10)
    """
    want = DEFAULT_ROWS["token" if token_level else "instance"]
    if n <= want:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, want).round().astype(np.int64))


def check_rows(rows: Any, n: int, token_level: bool = False) -> np.ndarray:
    """``rows`` as sorted unique indices: None (default), a count, or indices."""
    if rows is None:
        return default_rows(n, token_level)
    if isinstance(rows, int | np.integer) and not isinstance(rows, bool):
        if rows < 1:
            raise ValueError(f"rows must be a positive count or row indices, got {rows}")
        return np.unique(np.linspace(0, n - 1, min(int(rows), n)).round().astype(np.int64))
    array = np.asarray(rows)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError("rows must be a count or a non-empty list of integer row indices")
    if array.min() < 0 or array.max() >= n:
        raise ValueError(f"rows must index the evaluation set's {n} rows, got {array.min()}..")
    return np.unique(array.astype(np.int64))


def digest(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]


def subset(data: Any, rows: np.ndarray) -> Any:
    """The evaluation set restricted to ``rows`` (inputs, labels, ids)."""
    idx = torch.from_numpy(rows)
    inputs = data.inputs
    inputs = {k: v[idx] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[idx]
    return dataclasses.replace(
        data,
        inputs=inputs,
        labels=data.labels[rows],
        ids=[data.ids[i] for i in rows],
        instances=None,
    )


def run_quality(model: nn.Module, part: Any, task: Any, name: str) -> tuple[dict, dict]:
    """The task's quality metrics of ``model`` on the subset ``part``, and its outputs."""
    result = evaluate_model(
        model,
        part.inputs,
        batch_size=part.batch_size,
        embedding=part.embedding,
        activations=False,
        progress=False,
        name=name,
        task=task,
    )
    return task.finish(name, result.outputs, part), result.outputs


def _mean_kl(logits_a: np.ndarray, logits_r: np.ndarray) -> float:
    """Mean over rows of KL(p_a || p_r) in nats (docs/definitions.md: kl per instance)."""
    la = torch.log_softmax(torch.from_numpy(logits_a).double(), 1)
    lr = torch.log_softmax(torch.from_numpy(logits_r).double(), 1)
    return float((la.exp() * (la - lr)).sum(1).mean())


def _order(table: pd.DataFrame, tolerance: float) -> list[int]:
    """Measured groups by recovery, best first; among those within ``tolerance`` of the
    best left, the fewest parameters first. Unmeasured groups follow by proxy."""
    measured = table[table["recovered"].notna()]
    left = list(measured.index)
    order = []
    while left:
        best = max(float(measured.at[i, "recovered"]) for i in left)
        close = [i for i in left if float(measured.at[i, "recovered"]) >= best - tolerance]
        pick = min(close, key=lambda i: (measured.at[i, "params"], -measured.at[i, "recovered"]))
        order.append(pick)
        left.remove(pick)
    rest = table[table["recovered"].isna()].sort_values("proxy", ascending=False, kind="stable")
    return order + list(rest.index)


def damage_table(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    task: Any,
    *,
    groups: str | Sequence[str] = "auto",
    metric: str | None = None,
    rows: Any = None,
    top: int | None = None,
    memo: Callable[[str, dict, Callable[[], Any]], Any],
    logits_a: np.ndarray | None = None,
) -> pd.DataFrame:
    """Sensitivity of ``b``'s quality to each group of its changed weights, worst first.

    Parameters
    ----------
    model_a, model_b
        The reference and the compressed model (same parameter names).
    data, task
        The evaluation set (inputs loaded) and its task (:mod:`cnc_widgets.tasks`).
    groups
        ``"auto"``, ``"module"`` or a list of regexes (:func:`damage_groups`).
    metric
        A quality metric of the task (default: the task's ``quality``).
    rows
        Rows of ``data`` the restores are measured on: indices, a count (evenly spaced),
        or None (:func:`default_rows`: 256 instances, 32 sequences of a language model).
    top
        How many groups, by proxy, get a restore run (default :data:`DEFAULT_TOP`).
        Groups whose weights did not change get none: restoring them changes nothing.
    memo
        ``memo(measure, params, compute)``: caches each run (``Comparison._memo``).
    logits_a
        ``a``'s cached logits over all of ``data`` (a classifier): ``kl_restored`` is then
        the mean KL(p_a || p_restored) in nats over the rows.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``group``, ``by`` (kind, block, module, pattern), ``modules``,
        ``params``, ``proxy``, ``quality_restored``, ``recovered``, ``kl_restored``
        (classifiers), ``pattern`` (what ``restore`` is given). ``attrs`` hold
        ``metric``, ``better``, ``quality_a``, ``quality_b`` (on the rows), ``rows``,
        ``restore_runs`` (groups measured) and ``runs_made`` (model runs this call
        made; 0 when everything came from the cache).
    """
    metric = metric or task.quality
    if metric not in task.better:
        raise ValueError(
            f"metric={metric!r} is not a quality metric of task {task.name!r}; "
            f"choose one of {sorted(task.better)}"
        )
    top = DEFAULT_TOP if top is None else int(top)
    if top < 0:
        raise ValueError(f"top must be a count of groups to measure (>= 0), got {top}")
    token_level = bool(getattr(task, "token_level", False))
    picked = check_rows(rows, len(data), token_level)
    part = subset(data, picked)
    key = digest(picked)
    found, ta, tb = damage_groups(model_a, model_b, groups)
    runs = [0]

    def reference() -> dict:
        runs[0] += 2
        return {
            "a": run_quality(model_a, part, task, "a")[0],
            "b": run_quality(model_b, part, task, "b")[0],
        }

    ref = memo("sensitivity_reference", {"rows": key, "v": 1}, reference)
    q_a, q_b = float(ref["a"][metric]), float(ref["b"][metric])
    gap = q_a - q_b
    rows_out = []
    for group in found:
        rows_out.append(
            {
                "group": group.name,
                "by": group.by,
                "modules": group.modules,
                "params": int(sum(ta[t].numel() for t in group.tensors)),
                "proxy": relative_change(ta, tb, group.tensors),
                "quality_restored": np.nan,
                "recovered": np.nan,
                "kl_restored": np.nan,
                "pattern": group.pattern,
            }
        )
    table = pd.DataFrame(rows_out)
    by_proxy = table.sort_values("proxy", ascending=False, kind="stable")
    chosen = [i for i in by_proxy.index if table.at[i, "proxy"] > 0][:top]
    sub_a = None if logits_a is None else logits_a[picked]
    for i in table.index:
        if table.at[i, "proxy"] == 0:  # the same weights: restoring changes nothing
            table.at[i, "quality_restored"] = q_b
            table.at[i, "recovered"] = 0.0 if gap != 0 else np.nan
            continue
        if i not in chosen:
            continue
        pattern = table.at[i, "pattern"]

        def measure(pattern: str = pattern) -> dict:
            runs[0] += 1
            restored = restore_group(model_b, model_a, pattern)
            quality, outputs = run_quality(restored, part, task, "restored")
            out = {"quality": quality}
            if sub_a is not None and "logits" in outputs:
                out["kl"] = _mean_kl(sub_a, outputs["logits"])
            return out

        value = memo("sensitivity_restore", {"rows": key, "pattern": pattern, "v": 1}, measure)
        q_r = float(value["quality"][metric])
        table.at[i, "quality_restored"] = q_r
        table.at[i, "recovered"] = (q_r - q_b) / gap if gap != 0 else np.nan
        table.at[i, "kl_restored"] = float(value.get("kl", np.nan))
    if sub_a is None:
        table = table.drop(columns="kl_restored")
    # "One instance" of recovery: 1/n of accuracy, else 1/n of the gap.
    n = len(picked)
    one = (1.0 / n) / abs(gap) if (metric == "accuracy" and gap) else 1.0 / n
    table = table.loc[_order(table, one + 1e-12)].reset_index(drop=True)
    table.attrs.update(
        {
            "metric": metric,
            "better": task.better[metric],
            "quality_a": q_a,
            "quality_b": q_b,
            "rows": picked.tolist(),
            "restore_runs": len(chosen),
            "runs_made": runs[0],
            "top": top,
            "tolerance": one,
        }
    )
    return table
