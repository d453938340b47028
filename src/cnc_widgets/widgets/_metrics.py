"""Which columns of ``reg.metrics()`` the views offer as metrics: one rule for every view.

The scatter's axes, the filter panel's histograms and the selection's details all list the
same metrics, in the same order, so a metric one view offers is never missing from another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..registry import PROVENANCE_COLUMNS

# Metrics shown first, in this order, when present.
PREFERRED = ["accuracy", "size_bytes", "latency_ms", "sparsity", "params", "nonzero_params", "macs"]
# Settings recorded beside the measurements, not measurements of the model.
BOOKKEEPING = {"latency_batch_size", "latency_threads", "eval_batch_size"}


def numeric_metrics(table: pd.DataFrame) -> list[str]:
    """Columns of ``table`` holding at least one finite number, the usual ones first.

    Provenance columns, settings (:data:`BOOKKEEPING`) and yes/no columns are not metrics.

    Examples
    --------
    >>> numeric_metrics(pd.DataFrame({"parent": [None], "macs": [5.0], "accuracy": [0.9]}))
    ['accuracy', 'macs']
    """
    found = []
    for column in table.columns:
        if column in PROVENANCE_COLUMNS or column in BOOKKEEPING:
            continue
        series = table[column]
        if series.dtype == bool or series.map(lambda v: isinstance(v, (bool, np.bool_))).any():
            continue
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
        if np.isfinite(values).any():
            found.append(str(column))
    return [m for m in PREFERRED if m in found] + [m for m in found if m not in PREFERRED]
