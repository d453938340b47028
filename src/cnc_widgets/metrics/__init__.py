"""Comparison metrics: pure functions on numpy arrays, tensors and models.

Owns agreement and errors (:mod:`.agreement`), neighbourhoods (:mod:`.knn`), Deep kNN
out-of-distribution flags (:mod:`.ood`), adversarial sets (:mod:`.adversarial`), exact
linear CKA (:mod:`.cka`), the per-module layer table (:mod:`.layers`) and SQuAD answer scores
(:mod:`.squad`). Nothing here knows
about the registry, the store or the widgets; :mod:`.layers` may use
:mod:`cnc_widgets.evaluate` to stream activations. Model ``a`` is always the reference and
``b`` the model compared with it. Definitions follow docs/definitions.md.
"""

from .agreement import (
    agreement,
    change_matrix,
    error_jaccard,
    group_accuracy_change,
    instance_table,
    jaccard,
)
from .cka import CKAMatrix, LinearCKA, cka_memory_estimate, linear_cka
from .knn import (
    DEFAULT_BLOCK_BYTES,
    effective_k,
    knn_agreement,
    knn_agreement_sweep,
    knn_indices,
    knn_search,
    neighbour_jaccard,
)
from .ood import dknn_scores, ood_agreement, ood_flags, ood_split
from .squad import exact_match_scores, f1_scores, normalize_answer

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "CKAMatrix",
    "LinearCKA",
    "agreement",
    "change_matrix",
    "cka_memory_estimate",
    "dknn_scores",
    "effective_k",
    "error_jaccard",
    "exact_match_scores",
    "f1_scores",
    "group_accuracy_change",
    "instance_table",
    "jaccard",
    "knn_agreement",
    "knn_agreement_sweep",
    "knn_indices",
    "knn_search",
    "linear_cka",
    "neighbour_jaccard",
    "normalize_answer",
    "ood_agreement",
    "ood_flags",
    "ood_split",
]
