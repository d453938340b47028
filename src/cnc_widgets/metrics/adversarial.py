"""Which inputs an attack flips: PGD on continuous inputs, embedding-space PGD on tokens.

S_m = instances that model m classifies correctly and the attack flips. A model
without usable gradients (int8 dynamic quantized, or quantized with torchao) is
attacked by transfer: the adversarial inputs are crafted on a float model (its
nearest float ancestor) and fed to it. Rai et al. (CIKM 2024) compare these sets between models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..compress.tensor_subclass import is_tensor_subclass
from .agreement import jaccard

Inputs = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass
class Attack:
    """An L-infinity PGD attack (FGSM is ``steps=1, step_size=eps``).

    For continuous inputs ``eps`` is in input units and inputs are clipped to
    ``clip``. For token inputs the perturbation is added to the output of the
    word-embedding module and ``eps`` is relative to the mean absolute value of
    the embeddings of the batch.
    """

    eps: float = 0.1
    steps: int = 10
    step_size: float | None = None
    clip: tuple[float, float] | None = (0.0, 1.0)
    embedding_module: str | None = None
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        kind = "fgsm" if self.steps == 1 else "pgd"
        return {
            "attack": f"{kind}-linf",
            "eps": self.eps,
            "steps": self.steps,
            "step_size": self._step(),
            "embedding_module": self.embedding_module,
        }

    def _step(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / max(1, self.steps)


@dataclass
class AttackResult:
    """Per-instance outcome of an attack on one model."""

    correct: np.ndarray  # bool (N,): clean prediction equals the label
    flipped: np.ndarray  # bool (N,): correct and the adversarial prediction differs from the label
    source: str  # "direct" or "transfer from NAME"
    info: dict[str, Any] = field(default_factory=dict)


def find_word_embeddings(model: nn.Module) -> str:
    """Dotted name of the token embedding table (the ``nn.Embedding`` with most rows)."""
    best, size = None, -1
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings > size:
            best, size = name, module.num_embeddings
    if best is None:
        raise ValueError(
            "token inputs need an embedding-space attack but the model has no nn.Embedding; "
            "pass embedding_module= naming the module whose output to perturb"
        )
    return best


def _forward(model: nn.Module, batch: Inputs) -> torch.Tensor:
    out = model(**batch) if isinstance(batch, Mapping) else model(batch)
    logits = getattr(out, "logits", out)
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.float()


def has_gradients(model: nn.Module) -> bool:
    """True when gradients reach the input: float32/64 parameters and no quantized modules.

    Weights held as tensor subclasses (torchao's quantized tensors) count as quantized: like
    ``torch.ao``'s int8 modules they are attacked by transfer from a float ancestor.
    """
    if any(type(mod).__module__.startswith("torch.ao.nn.quantized") for mod in model.modules()):
        return False
    params = list(model.parameters())
    if any(is_tensor_subclass(p) for p in params):
        return False
    return bool(params) and all(p.dtype in (torch.float32, torch.float64) for p in params)


def craft(model: nn.Module, batch: Inputs, labels: torch.Tensor, attack: Attack) -> Any:
    """Adversarial version of ``batch`` for ``model``.

    Returns an input tensor for continuous inputs, or a perturbation of the word
    embeddings (``(module name, delta)``) for token inputs.
    """
    model.eval()
    gen = torch.Generator().manual_seed(attack.seed)
    step = attack._step()
    if not isinstance(batch, Mapping):
        x = batch.detach().float()
        delta = (torch.rand(x.shape, generator=gen) * 2 - 1) * attack.eps
        for _ in range(attack.steps):
            delta.requires_grad_(True)
            loss = nn.functional.cross_entropy(_forward(model, _clip(x + delta, attack)), labels)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + step * grad.sign()).clamp(-attack.eps, attack.eps)
        return _clip(x + delta, attack).detach()

    module_name = attack.embedding_module or find_word_embeddings(model)
    module = model.get_submodule(module_name)
    with torch.no_grad():
        clean = module(batch["input_ids"])
    scale = attack.eps * clean.abs().mean().item()
    delta = (torch.rand(clean.shape, generator=gen) * 2 - 1) * scale
    for _ in range(attack.steps):
        delta.requires_grad_(True)
        with _perturbed(module, delta):
            loss = nn.functional.cross_entropy(_forward(model, batch), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * scale / attack.eps * grad.sign()).clamp(-scale, scale)
    return module_name, delta.detach()


def _clip(x: torch.Tensor, attack: Attack) -> torch.Tensor:
    return x if attack.clip is None else x.clamp(*attack.clip)


class _perturbed:
    """Adds ``delta`` to a module's output for the duration of a ``with`` block."""

    def __init__(self, module: nn.Module, delta: torch.Tensor) -> None:
        self.module, self.delta, self.handle = module, delta, None

    def __enter__(self) -> _perturbed:
        self.handle = self.module.register_forward_hook(
            lambda _m, _i, out: out + self.delta.to(out.dtype)
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def predict_adversarial(model: nn.Module, batch: Inputs, adversarial: Any) -> torch.Tensor:
    """Predictions of ``model`` on the adversarial inputs made by :func:`craft`."""
    with torch.no_grad():
        if not isinstance(adversarial, tuple):
            return _forward(model, adversarial).argmax(1)
        module_name, delta = adversarial
        with _perturbed(model.get_submodule(module_name), delta):
            return _forward(model, batch).argmax(1)


def attack_model(
    model: nn.Module,
    batches: list[tuple[Inputs, torch.Tensor]],
    attack: Attack,
    *,
    surrogate: nn.Module | None = None,
    surrogate_name: str | None = None,
) -> AttackResult:
    """Attack ``model`` on every batch; craft on ``surrogate`` (transfer) when given."""
    crafter = surrogate if surrogate is not None else model
    correct, flipped = [], []
    for batch, labels in batches:
        with torch.no_grad():
            clean = _forward(model, batch).argmax(1)
        adversarial = craft(crafter, batch, labels, attack)
        adv = predict_adversarial(model, batch, adversarial)
        ok = clean == labels
        correct.append(ok.numpy())
        flipped.append((ok & (adv != labels)).numpy())
    source = "direct" if surrogate is None else f"transfer from {surrogate_name or 'surrogate'}"
    return AttackResult(np.concatenate(correct), np.concatenate(flipped), source, attack.describe())


def adversarial_overlap(flipped_a: np.ndarray, flipped_b: np.ndarray) -> float:
    """|S_a ∩ S_b| / |S_a ∪ S_b| of two flipped sets (boolean masks); 1.0 when both are empty.

    Examples
    --------
    >>> adversarial_overlap(np.array([1, 1, 0], bool), np.array([0, 1, 0], bool))
    0.5
    """
    return jaccard(flipped_a, flipped_b)
