"""Structured pruning: remove whole heads, FFN units or channels so the model really shrinks.

Two paths:

- BERT-style encoders (layers with ``attention.self.query/key/value``,
  ``attention.output.dense``, ``intermediate.dense`` and ``output.dense``): the attention heads
  and FFN intermediate units with the smallest L2 norm are sliced out of every layer. No
  tracing and no example input are needed. transformers 5 no longer has ``prune_heads``;
  its attention reshapes with ``-1`` heads, so narrower projections just work.
- Causal LMs with Llama- or GPT-2-style MLPs: their feed-forward units
  (:mod:`.decoder_units`); attention heads stay whole.
- Any other model: ``torch-pruning`` (``pip install torch-pruning``) traces the dependency
  graph from an example input, so residual connections, BatchNorm and a Flatten into a
  Linear are adjusted together; output channels are ranked by L2 norm. The layers that
  produce the model's outputs are never pruned, so output shapes stay the same.

Example
-------
>>> import torch
>>> from cnc_widgets import examples
>>> from cnc_widgets.compress.structured import prune_structured
>>> cnn = prune_structured(examples.DigitsCNN(), 0.5, example_input=torch.zeros(2, 1, 8, 8))
>>> cnn.features[0].out_channels
8
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn

from . import decoder_units

__all__ = ["prune_structured"]

Inputs = torch.Tensor | Mapping[str, torch.Tensor]


def _is_bert_layer(layer: nn.Module) -> bool:
    try:
        att = layer.attention.self
        return all(isinstance(getattr(att, n), nn.Linear) for n in ("query", "key", "value")) and (
            isinstance(layer.attention.output.dense, nn.Linear)
            and isinstance(layer.intermediate.dense, nn.Linear)
            and isinstance(layer.output.dense, nn.Linear)
        )
    except AttributeError:
        return False


def _keep_rows(linear: nn.Linear, rows: torch.Tensor) -> None:
    linear.weight = nn.Parameter(linear.weight.detach()[rows].clone())
    if linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias.detach()[rows].clone())
    linear.out_features = len(rows)


def _keep_columns(linear: nn.Linear, cols: torch.Tensor) -> None:
    linear.weight = nn.Parameter(linear.weight.detach()[:, cols].clone())
    linear.in_features = len(cols)


def _n_keep(n: int, amount: float) -> int:
    return max(1, n - round(amount * n))


def _prune_bert_layer(layer: nn.Module, amount: float) -> list[int]:
    """Slice heads and FFN units out of one layer; returns the removed head indices."""
    att, out = layer.attention.self, layer.attention.output.dense
    size = att.attention_head_size
    heads = att.query.out_features // size

    def norm2(w: torch.Tensor) -> torch.Tensor:
        return w.detach().float().pow(2)

    # A head's score is the L2 norm of all weights that read or write its slice.
    score = sum(norm2(getattr(att, n).weight).sum(1) for n in ("query", "key", "value"))
    score = (score + norm2(out.weight).sum(0)).view(heads, size).sum(1)
    kept = torch.sort(torch.topk(score, _n_keep(heads, amount)).indices).values
    rows = (kept[:, None] * size + torch.arange(size)).flatten()
    for n in ("query", "key", "value"):
        _keep_rows(getattr(att, n), rows)
    _keep_columns(out, rows)
    att.num_attention_heads = len(kept)
    att.all_head_size = len(rows)

    up, down = layer.intermediate.dense, layer.output.dense
    unit_score = norm2(up.weight).sum(1) + norm2(down.weight).sum(0)
    units = torch.sort(torch.topk(unit_score, _n_keep(up.out_features, amount)).indices).values
    _keep_rows(up, units)
    _keep_columns(down, units)
    return sorted(set(range(heads)) - set(kept.tolist()))


def _call(model: nn.Module, inputs: Inputs):
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def _output_shapes(output) -> list[tuple[int, ...]]:
    if isinstance(output, torch.Tensor):
        return [tuple(output.shape)]
    values = output.values() if isinstance(output, Mapping) else output
    if isinstance(values, list | tuple) or isinstance(output, Mapping):
        return [s for v in values for s in _output_shapes(v)]
    return []


def _output_modules(model: nn.Module, inputs: Inputs) -> list[nn.Module]:
    """Leaf modules whose output tensor is returned by the model (their width is fixed)."""
    produced: dict[int, nn.Module] = {}
    hooks = [
        m.register_forward_hook(lambda mod, _, out: produced.__setitem__(id(out), mod))
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            output = _call(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    outs = (
        [output]
        if isinstance(output, torch.Tensor)
        else list(output.values() if isinstance(output, Mapping) else output)
    )
    return [produced[id(o)] for o in outs if id(o) in produced]


def _called_modules(model: nn.Module, inputs: Inputs) -> set[nn.Module]:
    """Modules whose forward ran on ``inputs`` (others are used functionally, or not at all)."""
    called: set[nn.Module] = set()
    hooks = [m.register_forward_hook(lambda mod, _i, _o: called.add(mod)) for m in model.modules()]
    try:
        with torch.no_grad():
            _call(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    return called


def _untouchable(model: nn.Module, inputs: Inputs) -> dict[nn.Module, str]:
    """Modules torch-pruning must not slice, in or out, with the reason."""
    called = _called_modules(model, inputs)
    out: dict[nn.Module, str] = {}
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            out[module] = "recurrent layer (its gates cannot be sliced)"
        elif isinstance(module, nn.MultiheadAttention):
            out[module] = "attention (heads must stay whole)"
        elif any(True for _ in module.parameters(recurse=False)) and module not in called:
            out[module] = "weights used through a functional call"
    return out


def _prune_traced(model: nn.Module, amount: float, inputs: Inputs, report: dict) -> nn.Module:
    try:
        import torch_pruning as tp
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "prune_structured on models without transformer encoder layers uses torch-pruning: "
            "pip install torch-pruning"
        ) from exc
    with torch.no_grad():
        before = _output_shapes(_call(model, inputs))
    names = {m: n for n, m in model.named_modules()}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear | nn.modules.conv._ConvNd)]
    # The last Linear/Conv is taken as the classifier even when an activation follows it.
    # Their output width is fixed; their input may still shrink.
    fixed = set(_output_modules(model, inputs)) | set(linears[-1:])
    fixed |= {m for m in model.modules() if isinstance(m, nn.Embedding)}
    untouchable = _untouchable(model, inputs)
    with warnings.catch_warnings():
        # A parameter used outside any module is reported below as a skipped group.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        graph = tp.DependencyGraph().build_dependency(
            model,
            example_inputs=dict(inputs) if isinstance(inputs, Mapping) else inputs,
            verbose=False,
        )
    param_names = {p: n for n, p in model.named_parameters()}
    importance = tp.importance.MagnitudeImportance(p=2)
    pruned: dict[str, list[int]] = {}
    skipped: dict[str, str] = {}
    roots = (nn.Linear, nn.modules.conv._ConvNd)
    for group in graph.get_all_groups(ignored_layers=list(fixed), root_module_types=roots):
        root = group[0].dep.target.module
        root_name = names.get(root, "?")
        blocker = None
        for dep, _ in group:
            target = dep.target
            if target.type == tp.ops.OPTYPE.PARAMETER:
                blocker = f"{param_names.get(target.module, 'a parameter')}: used outside a module"
            elif target.module in untouchable:
                blocker = f"{names[target.module]}: {untouchable[target.module]}"
            if blocker:
                break
        if blocker:
            skipped[root_name] = f"coupled with {blocker}"
            continue
        n = graph.get_pruner_of_module(root).get_out_channels(root)
        remove = min(round(amount * n), n - 1)
        if remove <= 0:
            pruned[root_name] = [n, n]
            continue
        scores = importance(group)
        idxs = torch.argsort(scores)[:remove].tolist()
        graph.get_pruning_group(root, group[0].dep.handler, idxs).prune()
        pruned[root_name] = [n, n - remove]
    for module, reason in untouchable.items():
        skipped.setdefault(names[module], reason)
    for unwrapped in graph.unwrapped_parameters:
        skipped.setdefault(
            param_names.get(unwrapped.parameters, "?"), "parameter used outside a module"
        )
    report["pruned"] = pruned
    report["skipped"] = skipped
    total = sum(b for b, _ in pruned.values())
    report["removed_fraction"] = (
        (total - sum(a for _, a in pruned.values())) / total if total else 0.0
    )
    if skipped:
        warnings.warn(
            f"prune_structured left {len(skipped)} module(s) unpruned: "
            + "; ".join(f"{k} ({v})" for k, v in list(skipped.items())[:4])
            + ("; ..." if len(skipped) > 4 else "")
            + " (see the model's info['skipped'])",
            stacklevel=3,
        )
    with torch.no_grad():
        try:
            after = _output_shapes(_call(model, inputs))
        except Exception as exc:
            raise RuntimeError(
                f"prune_structured broke the model's forward pass ({type(exc).__name__}: {exc}); "
                f"pruned {sorted(pruned)}. Prune fewer layers (a callable operation) or use "
                "'prune' (unstructured) for this architecture"
            ) from exc
    if after != before:
        raise RuntimeError(
            f"prune_structured changed the output shapes {before} -> {after}; "
            "this model's output layers could not be protected"
        )
    return model


def prune_structured(
    model: nn.Module,
    amount: float,
    example_input: Inputs | None = None,
    *,
    report: dict | None = None,
) -> nn.Module:
    """Physically remove the ``amount`` fraction of lowest-norm heads/units/channels, in place.

    Parameters
    ----------
    model
        Modified in place and returned.
    amount
        Fraction in [0, 1) of attention heads and FFN units per encoder layer (BERT-style
        models) or of output channels per prunable layer (other models) to remove:
        ``round(amount * n)`` of each layer's ``n``, at least one kept.
    example_input
        A batch the model accepts; required for models without BERT-style encoder layers,
        whose graph is traced by torch-pruning. Layers it cannot slice are left whole,
        with a warning: recurrent layers, attention, weights used through a functional
        call (``F.linear``) and everything coupled to them.
    report
        When given, filled with ``pruned`` (module -> ``[width before, after]``),
        ``skipped`` (module -> reason) and ``removed_fraction`` (of the output
        channels of the pruned layers).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> net = prune_structured(net, 0.5, example_input=torch.zeros(1, 4))
    >>> net[0].out_features, net(torch.zeros(3, 4)).shape
    (4, torch.Size([3, 2]))
    """
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount < 1:
        raise ValueError(f"prune_structured: amount must be a number in [0, 1), got {amount!r}")
    if any(m.__module__.startswith("torch.ao.nn.quantized") for m in model.modules()):
        raise ValueError("prune_structured: model is quantized; prune its float ancestor instead")
    report = {} if report is None else report
    bert_layers = [m for m in model.modules() if _is_bert_layer(m)]
    if bert_layers:
        names = {m: n for n, m in model.named_modules()}

        def widths(layer: nn.Module) -> tuple[int, int]:
            att = layer.attention.self
            heads = att.query.out_features // att.attention_head_size
            return heads, layer.intermediate.dense.out_features

        before = {names[layer]: widths(layer) for layer in bert_layers}
        removed = {i: _prune_bert_layer(layer, amount) for i, layer in enumerate(bert_layers)}
        report["pruned"] = {}
        for layer in bert_layers:
            name, after = names[layer], widths(layer)
            report["pruned"][f"{name}.attention.self"] = [before[name][0], after[0]]
            report["pruned"][f"{name}.intermediate.dense"] = [before[name][1], after[1]]
        report["skipped"] = {}
        for module in model.modules():
            config = getattr(module, "config", None)
            if config is not None and hasattr(config, "intermediate_size"):
                config.intermediate_size = bert_layers[0].intermediate.dense.out_features
                config.pruned_heads = {i: h for i, h in removed.items() if h}
        return model
    if decoder_units.decoder_mlps(model):
        # Causal LMs: feed-forward units only (torch-pruning cannot trace their outputs).
        return decoder_units.prune_decoder_mlps(model, amount, report)
    if example_input is None:
        raise ValueError(
            "prune_structured: this model has no BERT-style encoder layers, so its graph is "
            "traced: pass example_input= (a batch the model accepts)"
        )
    return _prune_traced(model, amount, example_input, report)
