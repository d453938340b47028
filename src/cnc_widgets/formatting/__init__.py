"""How numbers and small charts are shown: units, formats and altair specs.

:mod:`.units` writes numbers with units (bytes, ms, percentages, counts, C&C d3 formats;
the twin of ``js/src/shared/format.js``) and holds what each measure means
(``METRIC_HELP``); :mod:`.charts` builds the small altair charts the library returns and the
views draw with the bundled vega (offline).
"""

from __future__ import annotations

from . import units
from .units import *  # noqa: F403 (the names are units.__all__, said once there)

__all__ = list(units.__all__)
