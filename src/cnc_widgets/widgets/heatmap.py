"""ActivationHeatmap: the layers of a reference and up to four compressed models, side by side.

Rows are the module tree (dotted names), columns the compared models; four modes
(sparsity masks, weight change, activation change, CKA) colour the cells from
:attr:`Comparison.layers`. Clicking a module shows its weight and activation histograms
(altair, drawn by the bundled vega-embed); a second tab shows :meth:`Comparison.cka_matrix`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import traitlets

from ..metrics.weights import module_weights
from ..registry import ModelRegistry
from ._bundle import bundle
from ._sync import json_value
from ._view import RegistryView, exporting
from ._wire import pack
from .damage import GROUPINGS, damage_payload, suggest_payload

MAX_COMPARED = 4
# What a report computes for the layers view: the layer table of every compared model (as
# the notebook shows), but the CKA matrix (layers x layers, the costly part) of the first.
EXPORT_CKA = 1
MODES = ("sparsity", "weight_change", "activation_change", "cka", "damage")
VALUE_COLUMNS = [
    "zero_both",
    "zero_a_only",
    "zero_b_only",
    "sparsity_a",
    "sparsity_b",
    "weight_rel_change",
    "activation_rel_change",
    "cka",
]


def _floats(values: Any) -> dict[str, Any]:
    """A float column as packed float32 (NaN for missing): one binary buffer (``_wire``)."""
    return pack(np.asarray(values, dtype=np.float64), "float32")


def _param_count(tensors: dict[str, Any]) -> int:
    return int(sum(t.numel() for t in tensors.values()))


def _one_model_modules(registry: ModelRegistry, a: str, b: str) -> tuple[dict, dict]:
    """Modules with parameters in only one of the two models: name -> parameter count."""
    try:
        wa, wb = module_weights(registry.model(a)), module_weights(registry.model(b))
    except KeyError:  # weights not in this session: only the cached table is known
        return {}, {}
    only_a = {k: _param_count(v) for k, v in wa.items() if k not in wb}
    only_b = {k: _param_count(v) for k, v in wb.items() if k not in wa}
    return only_a, only_b


def layer_payload(registry: ModelRegistry, reference: str, compared: list[str]) -> dict[str, Any]:
    """What the view draws: the union of module rows and, per compared model, its columns.

    Each model's numbers travel as float32 buffers aligned with ``rows``; rows a model
    lacks get a ``status`` (``both``, ``only_a``, ``only_b``, ``absent``) and a ``note``.
    """
    rows: list[str] = []
    kind: dict[str, str] = {}
    params: dict[str, int] = {}
    tables: dict[str, pd.DataFrame] = {}
    errors: dict[str, str] = {}
    extra: dict[str, tuple[dict, dict]] = {}
    for name in compared:
        try:
            table = registry.compare(reference, name).layers
        except Exception as exc:  # shown in the model's column, never lost in a callback
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        tables[name] = table
        for module, row in table.iterrows():
            if module not in kind:
                rows.append(str(module))
                kind[module] = str(row.get("kind", ""))
                params[module] = int(row["params"]) if pd.notna(row.get("params")) else 0
        if "status" not in table.columns:
            extra[name] = _one_model_modules(registry, reference, name)
            for side in extra[name]:
                for module, count in side.items():
                    if module not in kind:
                        rows.append(module)
                        kind[module] = ""
                        params[module] = count
    by_model: dict[str, Any] = {}
    for name in compared:
        if name in errors:
            by_model[name] = {"error": errors[name]}
            continue
        table = tables[name].reindex(rows)
        only_a, only_b = extra.get(name, ({}, {}))
        if "status" in tables[name].columns:
            status = [s if isinstance(s, str) else "absent" for s in table["status"]]
        else:
            status = [
                "both"
                if m in tables[name].index
                else "only_a"
                if m in only_a
                else "only_b"
                if m in only_b
                else "absent"
                for m in rows
            ]
        notes = []
        given = table["note"] if "note" in table.columns else pd.Series("", index=rows)
        for s, note in zip(status, given, strict=True):
            note = note if isinstance(note, str) else ""
            where = {"only_a": f"only in {reference}", "only_b": f"only in {name}"}.get(s)
            if s == "absent":
                notes.append(f"not in {name}'s comparison")
            elif where:  # the table says "not in b": name the model instead
                plain = note in ("", "not in a", "not in b")
                notes.append(where if plain else f"{where}: {note}")
            else:
                notes.append(note)
        module_b = (
            [v if isinstance(v, str) else None for v in table["module_b"]]
            if "module_b" in table.columns
            else None
        )
        by_model[name] = {
            "values": {c: _floats(table[c]) for c in VALUE_COLUMNS if c in table.columns},
            "status": status,
            "note": notes,
            "module_b": module_b,
        }
    return {
        "reference": reference,
        "compared": list(compared),
        "rows": rows,
        "kind": [kind[m] for m in rows],
        "params": [params[m] for m in rows],
        "by_model": by_model,
    }


def cka_payload(registry: ModelRegistry, reference: str, compared: list[str]) -> dict[str, Any]:
    """Per compared model, its CKA matrix with the reference (values row-major, float32)."""
    out: dict[str, Any] = {}
    for name in compared:
        try:
            matrix = registry.compare(reference, name).cka_matrix()
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[name] = {
            "rows": [str(r) for r in matrix.index],
            "cols": [str(c) for c in matrix.columns],
            "values": _floats(matrix.to_numpy().ravel()),
        }
    return out


class ActivationHeatmap(RegistryView):
    """Where compression changed a model: module by module, against a reference.

    Rows are the module tree (collapsible; a parent shows its children's values
    weighted by their element counts), columns the compared models. Modes: sparsity
    (zero in both / only in the reference / only in the compressed model), weight change,
    activation change, CKA. Click a module for its histograms; the CKA tab shows the
    matrix of the reference's layers against a compared model's.

    Parameters
    ----------
    registry
        The registry holding the models; their weights must be in the session unless the
        comparisons are cached in its store.
    a
        The reference model. Without ``a`` and ``b`` the view follows ``reg.selected``:
        the first selected model is the reference, the next (up to four) are compared.
    b
        One compared model's name or a list of up to four.
    lazy
        Run the models only once the view is shown in a notebook (the dashboard does);
        ignored while a notebook is executed for a report (``export_report(...,
        execute=True)``), where nothing will show it and the report needs the numbers.

    Examples
    --------
    >>> cnc.ActivationHeatmap(reg, "base", ["pruned", "int8"])  # doctest: +SKIP

    Traits (besides :class:`RegistryView`'s ``selected``, ``filters``, ``filtered_out``):
    ``models`` (reference first), ``layers`` (:func:`layer_payload`), ``cka``
    (:func:`cka_payload`), ``message`` and ``busy`` are Python -> browser; ``mode`` is set from
    either side. ``_detail_request`` ({module, model}, browser -> Python) asks for one module's
    numbers and histograms, answered in ``_detail``. The ``damage`` mode asks
    ``_damage_request`` ({model, groups}) for :meth:`Comparison.sensitivity`, answered in
    ``_damage`` (:func:`.damage.damage_payload`); ``_suggest_request`` ({model}) runs
    ``reg.suggest_restores``, answered in ``_suggest``. Both only when asked: restore runs
    cost model evaluations.
    """

    _esm = bundle("heatmap")
    models = traitlets.List(traitlets.Unicode()).tag(sync=True)
    layers = traitlets.Dict().tag(sync=True)
    cka = traitlets.Dict().tag(sync=True)
    mode = traitlets.Enum(MODES, default_value="sparsity").tag(sync=True)
    _detail_request = traitlets.Dict().tag(sync=True)
    _detail = traitlets.Dict().tag(sync=True)
    _damage_request = traitlets.Dict().tag(sync=True)
    _damage = traitlets.Dict().tag(sync=True)
    _suggest_request = traitlets.Dict().tag(sync=True)
    _suggest = traitlets.Dict().tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    # False until the view is first drawn when lazy: a dashboard that is never displayed
    # (or a script) does not run the models for a view nobody sees.
    active = traitlets.Bool(True).tag(sync=True)

    def __init__(
        self,
        registry: ModelRegistry,
        a: str | None = None,
        b: str | list[str] | None = None,
        *,
        lazy: bool = False,
        **kwargs: Any,
    ) -> None:
        self._export = exporting()
        super().__init__(registry, active=not lazy or self._export, **kwargs)
        if b is not None and a is None:
            raise ValueError(
                "give the reference model a as well as b, or neither to follow reg.selected"
            )
        compared = [b] if isinstance(b, str) else list(b or [])
        if len(compared) > MAX_COMPARED:
            raise ValueError(
                f"the view compares up to {MAX_COMPARED} models with the reference, got "
                f"{len(compared)}; pass fewer names as b"
            )
        for name in [a, *compared]:
            if name is not None:
                registry.record(name)  # a clear KeyError for an unknown name
        self._pinned = [a, *compared] if a is not None else None
        self.observe(self._on_selected, names="selected")
        self.observe(self._on_detail_request, names="_detail_request")
        self.observe(self._on_damage_request, names="_damage_request")
        self.observe(self._on_suggest_request, names="_suggest_request")
        self.observe_registry(self._on_revision, "revision")
        self.observe(self._on_revision, names="active")
        self._update()

    def _wanted(self) -> list[str]:
        if self._pinned is not None:
            return self._pinned
        return list(self.selected[: MAX_COMPARED + 1])

    def _on_selected(self, _change: Any) -> None:
        if self._pinned is None and self._wanted() != self.models:
            self._update()

    def _on_revision(self, _change: Any) -> None:
        self._update()

    def _update(self) -> None:
        models = self._wanted()
        if not self.active:
            self.models = models
            self.message = "The layers are compared when the view is shown."
            return
        if len(models) < 2:
            self.models, self.layers, self.cka, self._detail = models, {}, {}, {}
            self.message = (
                "Select a reference and one to four compressed models (reg.selected = "
                "['base', 'pruned'], or click them in another view), or pass "
                "cnc.ActivationHeatmap(reg, a='base', b='pruned')."
            )
            return
        missing = [n for n in models if n not in self.registry.metrics().index]
        if missing:
            self.message = f"unknown models {missing}"
            return
        self.busy = True
        self.message = f"comparing the layers of {', '.join(models[1:])} with {models[0]}..."
        with_cka = models[1 : 1 + EXPORT_CKA] if self._export else models[1:]
        try:
            layers = layer_payload(self.registry, models[0], models[1:])
            cka = cka_payload(self.registry, models[0], with_cka)
        finally:
            self.busy = False
        if models != self.models:  # another pair: its damage is not this one's
            self._damage, self._suggest = {}, {}
        self.models, self.layers, self.cka, self._detail = models, layers, cka, {}
        self.message = self._export_note(models, with_cka) if self._export else ""

    @staticmethod
    def _export_note(models: list[str], with_cka: list[str]) -> str:
        """What a report's layers view leaves out: what needs a kernel to compute."""
        left = [n for n in models[1:] if n not in with_cka]
        parts = [f"Computed for the report: {', '.join(models[1:])} against {models[0]}."]
        if left:
            parts.append(f"CKA matrix of {', '.join(with_cka)} only (not {', '.join(left)}).")
        parts.append("Module histograms and other selections are computed in a running notebook.")
        return " ".join(parts)

    def _on_detail_request(self, change: Any) -> None:
        request = change["new"] or {}
        module, name = request.get("module"), request.get("model")
        if not module or name not in self.models[1:]:
            self._detail = {}
            return
        reference = self.models[0]
        detail: dict[str, Any] = {"module": module, "model": name, "reference": reference}
        try:
            cmp = self.registry.compare(reference, name)
            table = cmp.layers
            if module in table.index:
                row = table.loc[module]
                detail["numbers"] = {
                    k: json_value(row[k]) for k in ["kind", "params", *VALUE_COLUMNS] if k in row
                }
            detail["spec"] = cmp.histogram_chart(module).to_dict()
        except Exception as exc:
            detail["error"] = f"{type(exc).__name__}: {exc}"
        self._detail = detail

    def _on_damage_request(self, change: Any) -> None:
        request = change["new"] or {}
        name, groups = request.get("model"), request.get("groups", "auto")
        if name not in self.models[1:] or groups not in GROUPINGS:
            return
        reference = self.models[0]
        answer: dict[str, Any] = {"reference": reference, "model": name, "groups": groups}
        self.busy = True
        self.message = f"measuring which groups of {name}'s weights cost its quality..."
        try:
            answer = damage_payload(self.registry, reference, name, self.layers["rows"], groups)
        except Exception as exc:  # shown in the view, never lost in a callback
            answer["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            self.busy = False
        self._damage = {**answer, "at": request.get("at")}
        self.message = ""

    def _on_suggest_request(self, change: Any) -> None:
        request = change["new"] or {}
        name = request.get("model")
        if name not in self.models[1:]:
            return
        reference = self.models[0]
        answer: dict[str, Any] = {"reference": reference, "model": name}
        self.busy = True
        self.message = f"suggest_restores({reference!r}, {name!r}): making restore children..."
        try:
            answer.update(suggest_payload(self.registry, reference, name))
        except Exception as exc:
            answer["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            self.busy = False
        self._suggest = {**answer, "at": request.get("at")}
        self.message = ""


def show_heatmap(
    registry: ModelRegistry, a: str | None = None, b: str | list[str] | None = None
) -> ActivationHeatmap:
    """Show the layers view (see :class:`ActivationHeatmap`)."""
    return ActivationHeatmap(registry, a, b)
