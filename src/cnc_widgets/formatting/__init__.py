"""How numbers and small charts are shown: units, formats and altair specs.

:mod:`.units` writes numbers with units (bytes, ms, percentages, counts, C&C d3 formats;
the twin of ``js/src/shared/format.js``) and holds what each measure means
(``METRIC_HELP``); :mod:`.charts` builds the small altair charts the library returns and the
views draw with the bundled vega (offline).
"""

from __future__ import annotations

from .units import (
    METRIC_HELP,
    d3_format,
    format_bytes,
    format_count,
    format_metric,
    format_ms,
    format_number,
    format_percent,
    format_table,
    metric_kind,
)

__all__ = [
    "METRIC_HELP",
    "d3_format",
    "format_bytes",
    "format_count",
    "format_metric",
    "format_ms",
    "format_number",
    "format_percent",
    "format_table",
    "metric_kind",
]
