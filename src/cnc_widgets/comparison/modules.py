"""Per-module measures of a comparison: the layer table, histograms, CKA, and which
modules did the damage (sensitivity). A mixin of :class:`~.core.Comparison`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import pandas as pd

from ..metrics.histograms import module_histograms
from ..metrics.layer_cka import cka_between, default_cka_modules
from ..metrics.layers import layers_and_cka
from ..metrics.weights import module_weights
from ..provenance import ModuleCorrespondence, module_correspondence


class ModuleMeasures:
    """Layer table, histograms, CKA and sensitivity of :class:`~.core.Comparison`."""

    @cached_property
    def correspondence(self) -> ModuleCorrespondence:
        """Which module of b each module of a became, composed along their provenance.

        Operations that rename or remove modules (``drop_layers``) record it; the path
        runs from a up to the nearest common ancestor and down to b.
        """
        return module_correspondence(self.registry.record, self.a, self.b)

    @property
    def layers(self) -> pd.DataFrame:
        """One row per module with parameters in a or b (see :func:`layer_table`).

        Modules pair through :attr:`correspondence`: after ``drop_layers`` a kept block
        pairs with its origin and a removed one is listed as ``only_a``. The ``note``
        column says why a row has empty cells (a module used through a functional
        call, an output shared by the whole batch, a removed block). The same forward
        passes also fill the default :meth:`cka_matrix`, cached beside it.
        """
        data = self.data
        pairing = self.correspondence

        def compute() -> pd.DataFrame:
            inputs = self._inputs("layers")
            model_a, model_b = self.registry.model(self.a), self.registry.model(self.b)
            mods_a, mods_b = default_cka_modules(model_a), default_cka_modules(model_b)
            options = {"batch_size": data.batch_size, "correspondence": pairing}
            try:
                table, matrix = layers_and_cka(
                    model_a, model_b, inputs, cka_modules=(mods_a, mods_b), **options
                )
            except MemoryError:  # the matrix is too big to ride along: the table alone
                return layers_and_cka(model_a, model_b, inputs, **options)[0]
            self._memo("cka_matrix", {"a": mods_a, "b": mods_b}, lambda: matrix)
            return table

        table = self._memo("layers", {"pairing": pairing.describe(), "table": 3}, compute)
        # A table read back from the store holds NaN where b has no module: keep None.
        table["module_b"] = table["module_b"].astype(object).where(table["module_b"].notna(), None)
        return table

    def histograms(
        self, module: str, *, bins: int = 40, shared: bool = False
    ) -> dict[str, pd.DataFrame]:
        """Weight and activation histograms of ``module`` in a and b, for the views.

        ``module`` is a row of :attr:`layers` (a's name; b's name for a module only in
        b); its partner in b is found through :attr:`correspondence`. ``weights``: one
        row per bin over a common range of both models' parameters (columns ``left``,
        ``right``, ``a``, ``b``: element counts; all zero for a model that lacks the
        module; no rows for a module without parameters). ``activations``: the streaming
        histograms kept at evaluation, rows ``(model, bin)``, with under- and overflow
        bins at either end. ``shared=True`` puts both models on one set of bins: "nice"
        weight bins (at most ``bins``), and activations on their common edges where that
        is exact (``activations.attrs["bins"]`` says ``"shared"`` or ``"per-model"``);
        see :func:`cnc_widgets.metrics.histograms.module_histograms`.
        """
        model_a, model_b = self.registry.model(self.a), self.registry.model(self.b)
        modules_a, modules_b = dict(model_a.named_modules()), dict(model_b.named_modules())
        name_a: str | None = module
        name_b: str | None = self.correspondence.map(module)[0]
        if module.endswith(" (b)") or module not in modules_a:
            # A module only in b: the table lists it under b's name (" (b)" on a clash).
            name_a, name_b = None, module.removesuffix(" (b)")
        if name_b not in modules_b:
            name_b = None
        if name_a is None and name_b is None:
            raise KeyError(
                f"module {module!r} is in neither {self.a!r} nor {self.b!r}; pass a row "
                "name of .layers"
            )
        acts = []
        for res, name in ((self._ra, name_a), (self._rb, name_b)):
            recorded = list(res.get("modules", []))
            i = recorded.index(name) if name in recorded else None
            acts.append(None if i is None else (res["act_hist_edges"][i], res["act_hist"][i]))
        wa = module_weights(model_a).get(name_a) if name_a else None
        wb = module_weights(model_b).get(name_b) if name_b else None
        return module_histograms(wa, wb, *acts, bins=bins, shared=shared)

    def histogram_chart(self, module: str, *, bins: int = 40, shared: bool = False) -> Any:
        """The weight and activation histograms of ``module`` as an altair chart.

        Both models overlaid (the reference in blue, the compared model in vermillion);
        the layers view draws the same chart when a module is clicked.

        Examples
        --------
        >>> cmp.histogram_chart("encoder.encoder.layer.0.output.dense")  # doctest: +SKIP
        """
        from ..formatting.charts import histogram_chart

        hist = self.histograms(module, bins=bins, shared=shared)
        return histogram_chart(hist, (self.a, self.b), module)

    def cka_matrix(
        self, modules_a: Sequence[str] | None = None, modules_b: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Linear CKA between layers of a (rows) and layers of b (columns), exact over all data.

        Defaults: the encoder blocks of transformer models, else every module with weights.
        """
        model_a, model_b = self.registry.model(self.a), self.registry.model(self.b)
        mods_a = list(modules_a or default_cka_modules(model_a))
        mods_b = list(modules_b or default_cka_modules(model_b))
        data = self.data
        return self._memo(
            "cka_matrix",
            {"a": mods_a, "b": mods_b},
            lambda: cka_between(
                model_a,
                model_b,
                self._inputs("cka_matrix()"),
                mods_a,
                mods_b,
                batch_size=data.batch_size,
                matrix=True,
            ),
        )

    def sensitivity(
        self,
        groups: str | Sequence[str] = "auto",
        metric: str | None = None,
        rows: Any = None,
        top: int | None = None,
    ) -> pd.DataFrame:
        """Which groups of b's changed weights cost the quality, worst first.

        Each group is ranked by a cheap proxy (relative weight change); the ``top``
        (default 8) are restored into a copy of b from a and measured on ``rows``
        (default: 256 evenly spaced instances, 32 sequences of a language model), each
        run cached like every measure. See :func:`cnc_widgets.metrics.sensitivity.
        damage_table` for the columns and ``attrs`` (qualities of a and b on the rows,
        the rows, the number of restore runs).

        Examples
        --------
        >>> cmp = reg.compare("base", "pruned")
        >>> cmp.sensitivity()[["group", "proxy", "recovered"]].head()  # doctest: +SKIP
        """
        from ..metrics.sensitivity import damage_table

        self._inputs("sensitivity()")
        return damage_table(
            self.registry.model(self.a),
            self.registry.model(self.b),
            self.data,
            self.task,
            groups=groups,
            metric=metric,
            rows=rows,
            top=top,
            memo=self._memo,
            logits_a=self._ra.get("logits"),
        )

    def sensitivity_chart(self, **options: Any) -> Any:
        """:meth:`sensitivity` (same options) as an altair bar chart of ``recovered``."""
        from ..formatting.charts import sensitivity_chart

        return sensitivity_chart(self.sensitivity(**options), (self.a, self.b))
