"""A test reference: the relative activation change of matched modules, the plain way.

Two streams of :func:`cnc_widgets.evaluate.streaming.iter_activations` side by side and
running sums of squares; :func:`cnc_widgets.metrics.layers.layer_table` computes the same
column in one pass with CKA, and the tests compare the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnc_widgets.evaluate.model_io import Inputs, n_rows
from cnc_widgets.evaluate.modules import leaf_modules
from cnc_widgets.evaluate.streaming import iter_activations


@dataclass
class PairedActivationStats:
    """Running sums behind the relative activation change of matched modules.

    ``rel_change[i] = sqrt(sq_diff[i] / sq_ref[i])`` is
    ``||act_b - act_a||_F / ||act_a||_F`` over all instances; NaN where the two
    outputs have different shapes.
    """

    names_a: list[str]
    names_b: list[str]
    sq_diff: np.ndarray
    sq_ref: np.ndarray
    n: int

    @property
    def rel_change(self) -> np.ndarray:
        """Relative Frobenius change per pair, float64 ``(P,)``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sqrt(self.sq_diff / self.sq_ref)

    def as_dict(self) -> dict[str, float]:
        """``{name_a: rel_change}``."""
        return dict(zip(self.names_a, self.rel_change.tolist(), strict=True))


def paired_activation_stats(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: Inputs,
    pairs: Sequence[str | tuple[str, str]] | None = None,
    batch_size: int = 64,
) -> PairedActivationStats:
    """``||act_b - act_a||_F / ||act_a||_F`` for matched modules, over all instances.

    Both models see the same batches; only running sums of squares are kept. Outputs
    are compared element by element (``flatten="flatten"``), with padded tokens
    excluded when the inputs carry an ``attention_mask``.

    Parameters
    ----------
    model_a
        The reference model.
    model_b
        The compared model, e.g. a compressed variant of ``model_a``.
    inputs
        As for :func:`iter_activations`.
    pairs
        Module names present in both models, or ``(name_a, name_b)`` tuples. ``None``
        matches every leaf module name the two models share (a dynamic-quantized
        Linear keeps the name of the float Linear it replaced).
    batch_size
        Rows per forward pass.

    Returns
    -------
    PairedActivationStats

    Examples
    --------
    >>> import copy, torch
    >>> a = torch.nn.Sequential(torch.nn.Linear(3, 3))
    >>> b = copy.deepcopy(a)
    >>> with torch.no_grad():
    ...     b[0].bias += 1.0
    >>> s = paired_activation_stats(a, b, torch.randn(8, 3), batch_size=4)
    >>> bool(s.rel_change[0] > 0)
    True
    """
    if pairs is None:
        in_b = set(leaf_modules(model_b))
        pairs = [m for m in leaf_modules(model_a) if m in in_b]
    names_a = [p if isinstance(p, str) else p[0] for p in pairs]
    names_b = [p if isinstance(p, str) else p[1] for p in pairs]
    sq_diff = np.zeros(len(pairs))
    sq_ref = np.zeros(len(pairs))
    stream_a = iter_activations(
        model_a, inputs, list(dict.fromkeys(names_a)), batch_size=batch_size, flatten="flatten"
    )
    stream_b = iter_activations(
        model_b, inputs, list(dict.fromkeys(names_b)), batch_size=batch_size, flatten="flatten"
    )
    for acts_a, acts_b in zip(stream_a, stream_b, strict=True):
        for i, (na, nb) in enumerate(zip(names_a, names_b, strict=True)):
            xa, xb = acts_a[na], acts_b[nb]
            sq_ref[i] += float(torch.dot(xa.reshape(-1), xa.reshape(-1)))
            if xa.shape == xb.shape:
                d = (xb - xa).reshape(-1)
                sq_diff[i] += float(torch.dot(d, d))
            else:
                sq_diff[i] = math.nan
    return PairedActivationStats(names_a, names_b, sq_diff, sq_ref, n_rows(inputs))
