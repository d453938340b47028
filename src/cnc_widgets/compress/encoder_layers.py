"""Finding and dropping the layers of a transformer: BERT-style ``encoder.layer``, the decoder
layers of Llama-style (``model.layers``) and GPT-2-style (``transformer.h``) causal LMs.

Example
-------
>>> from cnc_widgets import examples
>>> from cnc_widgets.compress.encoder_layers import drop_layers
>>> encoder, _ = examples.load_minilm()  # doctest: +SKIP
>>> len(drop_layers(encoder, [3, 4, 5]).encoder.layer)  # doctest: +SKIP
3
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["drop_layers", "find_encoder_layers"]

# BERT's encoder.layer, Llama's model.layers, GPT-2's transformer.h.
_LIST_NAMES = ("layer", "layers", "h")


def find_encoder_layers(model: nn.Module) -> tuple[str, nn.Module, str, nn.ModuleList]:
    """Locate the list of encoder (or decoder) layers.

    The first ``nn.ModuleList`` called ``layer``, ``layers`` or ``h`` held by a module named
    ``encoder`` (or whose class name contains ``Encoder``) is taken; failing that, the first
    such list anywhere (``model.layers`` of a Llama, ``transformer.h`` of a GPT-2).

    Returns
    -------
    tuple
        ``(dotted name of the list, owning module, attribute name, the list)``.

    Raises
    ------
    ValueError
        When the model has no such list.
    """
    fallback = None
    for prefix, module in model.named_modules():
        for attr in _LIST_NAMES:
            layers = getattr(module, attr, None)
            if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
                continue
            name = f"{prefix}.{attr}" if prefix else attr
            found = (name, module, attr, layers)
            if prefix.split(".")[-1] == "encoder" or "Encoder" in type(module).__name__:
                return found
            fallback = fallback or found
    if fallback is None:
        raise ValueError(
            f"{type(model).__name__} has no encoder layers (no nn.ModuleList named "
            f"{' or '.join(_LIST_NAMES)}); drop_layers works on BERT-, Llama- and GPT-2-style "
            "transformers"
        )
    return fallback


def _configs(model: nn.Module) -> list:
    seen, configs = set(), []
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "num_hidden_layers") and id(config) not in seen:
            seen.add(id(config))
            configs.append(config)
    return configs


def drop_layers(
    model: nn.Module, layers: Sequence[int], *, report: dict | None = None
) -> nn.Module:
    """Remove the encoder (or decoder) layers at the given indices, in place.

    Parameters
    ----------
    model
        A model holding BERT-style encoder layers or a causal LM's decoder layers (see
        :func:`find_encoder_layers`).
    layers
        Indices into the encoder layer list (negative indices count from the end). At least
        one layer must remain. Every ``config.num_hidden_layers`` found in the model is set
        to the new count, and a per-layer ``config.layer_types`` list loses the
        dropped layers' entries.
    report
        When given, ``report["module_map"]`` is set to the renaming this made: each
        removed block's dotted name maps to ``None`` and each kept block that moved
        maps to its new name (see :func:`cnc_widgets.provenance.rename_module`).

    Examples
    --------
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.encoder = nn.Module()
    ...         self.encoder.layer = nn.ModuleList(nn.Linear(2, 2) for _ in range(4))
    >>> len(drop_layers(Net(), [0, 2]).encoder.layer)
    2
    """
    if isinstance(layers, int) or not isinstance(layers, Sequence):
        raise ValueError(f"drop_layers: layers must be a list of layer indices, got {layers!r}")
    name, owner, attr, module_list = find_encoder_layers(model)
    n = len(module_list)
    bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n]
    if bad:
        raise ValueError(f"drop_layers: layers {bad} are not indices of the {n} layers in {name}")
    dropped = {i % n for i in layers}
    if len(dropped) != len(layers):
        raise ValueError(f"drop_layers: layers {list(layers)} repeats an index")
    if len(dropped) == n:
        raise ValueError(f"drop_layers: cannot drop all {n} layers of {name}")
    kept = [m for i, m in enumerate(module_list) if i not in dropped]
    if report is not None:
        moved = [i for i in range(n) if i not in dropped]
        module_map: dict[str, str | None] = {f"{name}.{i}": None for i in sorted(dropped)}
        module_map.update(
            {f"{name}.{old}": f"{name}.{new}" for new, old in enumerate(moved) if new != old}
        )
        report["module_map"] = module_map
    for new_index, layer in enumerate(kept):
        # Attention modules use layer_idx to address a KV cache; keep it consistent.
        for sub in layer.modules():
            if isinstance(getattr(sub, "layer_idx", None), int):
                sub.layer_idx = new_index
    setattr(owner, attr, nn.ModuleList(kept))
    for config in _configs(model):
        config.num_hidden_layers = len(kept)
        # Per-layer settings (sliding or full attention in Qwen2, Gemma...) follow their layers.
        types = getattr(config, "layer_types", None)
        if isinstance(types, list) and len(types) == n:
            config.layer_types = [t for i, t in enumerate(types) if i not in dropped]
    return model
