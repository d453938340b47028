"""Provenance: how each model of a study was made, and how models relate.

:mod:`.records` holds ``ModelRecord`` (name, parent, operation, parameters, fingerprint)
and the checks on parents, cycles and JSON parameters, plus the module correspondence
composed along a provenance path; :mod:`.comparability` says which operation parameters
differ along models' paths; :mod:`.cnc_json` reads Compress and Compare experiment files
into records and metrics.
"""

from __future__ import annotations

from . import cnc_json
from .records import (
    ModelRecord,
    ModuleCorrespondence,
    ancestors,
    check_parent,
    jsonable_params,
    module_correspondence,
    rename_module,
    topological,
)

__all__ = [
    "ModelRecord",
    "ModuleCorrespondence",
    "ancestors",
    "check_parent",
    "cnc_json",
    "jsonable_params",
    "module_correspondence",
    "rename_module",
    "topological",
]
