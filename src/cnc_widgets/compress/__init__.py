"""Compression operations: model in, new model out; the parent is never modified.

Owns the catalogue of built-in operations (:mod:`.catalogue`: names, parameters, checks,
the provenance record of a run) and one module per family: unstructured pruning
(:mod:`.pruning`), structured pruning (:mod:`.structured`), numeric precision
(:mod:`.precision`), low-rank factorisation (:mod:`.low_rank`), and dropping encoder
layers (:mod:`.encoder_layers`). Imports torch and its own modules only: nothing from
evaluation, metrics, the registry or the widgets.

Example
-------
>>> from torch import nn
>>> from cnc_widgets.compress import apply_operation
>>> child = apply_operation(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)), "prune", amount=0.5)
"""

from .catalogue import apply_operation, operation_record, operations, restore

__all__ = ["apply_operation", "operation_record", "operations", "restore"]
