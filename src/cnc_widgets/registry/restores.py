"""Suggested restores: NNCF's accuracy control as registry experiments.

:meth:`Restores.suggest_restores` ranks b's groups of changed weights with
:meth:`Comparison.sensitivity`, then restores them greedily, most recovery first, one more
group per experiment, until a child keeps ``target`` of a's quality or the budget is
spent. Every experiment is a ``restore`` child of b in the registry (provenance, store and
views get it) and is evaluated on the whole evaluation set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..metrics.sensitivity import changed_tensors


def keeps_quality(value: float, reference: float, target: float, better: str) -> bool:
    """Whether ``value`` keeps ``target`` of ``reference``'s quality.

    Higher-is-better metrics: ``value >= target * reference``; lower-is-better
    (perplexity): ``value <= reference / target``.

    Examples
    --------
    >>> keeps_quality(0.95, 1.0, 0.95, "higher"), keeps_quality(21.0, 20.0, 0.95, "lower")
    (True, True)
    """
    if better == "lower":
        return value <= reference / target
    return value >= target * reference


class Restores:
    """The restore assistant of :class:`~.facade.ModelRegistry` (a mixin: state lives there)."""

    def suggest_restores(
        self,
        a: str,
        b: str,
        target: float = 0.95,
        max_runs: int = 8,
        groups: str | Sequence[str] = "auto",
        rows: Any = None,
        top: int | None = None,
    ) -> list[str]:
        """Restore b's most damaging groups of weights from a until b keeps ``target``.

        Greedy, as NNCF's accuracy control: groups are ordered by
        :meth:`Comparison.sensitivity` (``groups``, ``rows``, ``top``: measured recovery,
        ties within one instance going to the fewest parameters); the k-th experiment
        restores the first k useful groups (a group already covered by the earlier ones
        is skipped) as one ``restore`` child of ``b``, evaluated on the whole data. It
        stops when a child's quality (the task's ``quality``: accuracy, perplexity)
        keeps ``target`` of a's (see :func:`keeps_quality`), after ``max_runs``
        children, or when the next step would restore every changed tensor (that is
        just ``a`` again). Groups that recovered nothing on the rows are not tried.

        ``restore`` copies from the parent of the model it is applied to, so ``a`` must
        be ``b``'s parent.

        Returns
        -------
        list of str
            The children made, in order (empty when b already keeps the target).

        Examples
        --------
        >>> reg.suggest_restores("base", "prune-30-norms", target=0.95)   # doctest: +SKIP
        ['prune-30-norms-restore-norms']
        """
        parent = self.record(b).parent
        if parent != a:
            raise ValueError(
                f"restore children of {b!r} copy from its parent {parent!r}, not {a!r}; "
                f"call suggest_restores({parent!r}, {b!r}) or compress {b!r} from {a!r}"
            )
        if not 0 < target <= 1:
            raise ValueError(f"target must be a fraction of a's quality in (0, 1], got {target}")
        if int(max_runs) < 1:
            raise ValueError(f"max_runs must be at least 1, got {max_runs}")
        self.evaluate([a, b], progress=False)
        quality = self.task.quality
        better = self.task.better.get(quality, "higher")
        reference = float(self.metrics().at[a, quality])
        if keeps_quality(float(self.metrics().at[b, quality]), reference, target, better):
            return []
        table = self.compare(a, b).sensitivity(groups=groups, rows=rows, top=top)
        changed = changed_tensors(self.model(a), self.model(b))
        candidates = table[table["recovered"] > 0]
        made: list[str] = []
        chosen: list[pd.Series] = []
        covered: set[str] = set()
        for _, row in candidates.iterrows():
            if len(made) >= int(max_runs):
                break
            regex = re.compile(row["pattern"])
            adds = {t for t in changed if regex.search(t)} - covered
            if not adds:
                continue  # nothing this group restores is not restored already
            if covered | adds >= set(changed):
                continue  # every changed tensor: that is a again
            chosen.append(row)
            covered |= adds
            pattern = "|".join(f"(?:{r['pattern']})" for r in chosen)
            label = "+".join(str(r["group"]) for r in chosen)
            name = self.compress(b, "restore", pattern=pattern, name=f"{b}-restore-{label}")
            self.evaluate([name], progress=False)
            made.append(name)
            if keeps_quality(float(self.metrics().at[name, quality]), reference, target, better):
                break
        return made
