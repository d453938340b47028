"""Running models on data: everything that turns (model, evaluation set) into arrays.

Owns the evaluation set (:mod:`.data`), the batched runner that streams logits,
embeddings and per-module activation statistics (:mod:`.inference`, :mod:`.stats`),
activations batch by batch (:mod:`.streaming`), the one way into a model (:mod:`.model_io`),
efficiency measurements (:mod:`.efficiency`), content fingerprints of models and data
(:mod:`.fingerprint`) and the evaluation of one registered model into a cacheable record
(:mod:`.runner`). Each is a pure function of (model, data shard); nothing here keeps state
or touches the store. May import :mod:`cnc_widgets.compress` (to recognise its modules),
never the registry, metrics or widgets.
"""

from .data import EvalData, make_data
from .inference import EvalResult, EvaluationError, evaluate_model, merge_results
from .runner import evaluate_one

__all__ = [
    "EvalData",
    "EvalResult",
    "EvaluationError",
    "evaluate_model",
    "evaluate_one",
    "make_data",
    "merge_results",
]
