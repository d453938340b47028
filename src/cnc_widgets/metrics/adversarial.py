"""Which inputs an attack flips: PGD on continuous inputs, embedding-space PGD on tokens.

S_m = instances that model m classifies correctly and the attack flips. What the attack
ascends and what counts as a flip is the task's (:class:`Objective`, from
``Task.attack_objective``): classification is this module's default; the language tasks
(``causal_lm``, ``generation``, ``extractive_qa``) define theirs beside the task. A model
without usable gradients (int8 dynamic quantized, or quantized with torchao) is
attacked by transfer: the adversarial inputs are crafted on a float model (its
nearest float ancestor) and fed to it. Rai et al. (CIKM 2024) compare these sets between models.

Inputs are continuous when they hold floating tensors (an image tensor, or a dict
with float entries: every float entry is perturbed, integer entries kept); they are
tokens when every tensor is an integer (a LongTensor of ids, or a dict of ids and
masks under any key names): the output of the word-embedding module is perturbed.
Batches follow the model's device and dtype (:func:`.model_io.prepare_inputs`),
logits are read by :func:`.model_io.extract_logits`, and every model's train/eval
mode is restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..compress.tensor_subclass import is_tensor_subclass
from ..evaluate.model_io import call_model, eval_mode, extract_logits, prepare_inputs
from .agreement import jaccard

Inputs = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass
class Attack:
    """An L-infinity PGD attack (FGSM is ``steps=1, step_size=eps``).

    For continuous inputs ``eps`` is in input units and inputs are clipped to
    ``clip`` (every float tensor of a dict alike). For token inputs the perturbation
    is added to the output of ``embedding_module`` (default: the ``nn.Embedding``
    with most rows) and ``eps`` is relative to the mean absolute value of the
    embeddings of the batch.
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

    # bool (N,): the rows the success test applies to (classification: the clean prediction
    # equals the label; see Objective.eligible)
    correct: np.ndarray
    # bool (N,): eligible and the prediction under attack differs from the clean prediction
    flipped: np.ndarray
    source: str  # "direct" or "transfer from NAME"
    info: dict[str, Any] = field(default_factory=dict)
    # The adversarial batches crafted (on the model, or on the surrogate), for reuse by a
    # transfer attack from the same crafter; not part of the cached outcome.
    crafted: list[Any] = field(default_factory=list, repr=False)


class Objective:
    """What an attack ascends and what counts as a flip: the task's part of the attack.

    An attack on model m ascends :meth:`loss` against :meth:`targets` (computed once per
    batch on the crafter's clean output: m itself, or its float ancestor for a transfer).
    A row is flipped when :meth:`eligible` (decided on m's clean prediction) and m's
    :meth:`predict` under attack differs from its clean prediction (every element of a
    row's prediction compared: a span's start and end).

    This base class is classification: the loss is the cross-entropy of the labels, the
    prediction the argmax class, and eligible rows those the model classifies correctly
    (so a flip is a correct prediction made wrong). Tasks subclass it
    (``Task.attack_objective``). The model and batch a method gets are already on one
    device and in eval mode; a perturbation of the word embeddings is active around
    :meth:`loss` and the second :meth:`predict`.
    """

    #: What counts as a flip, in words (reported beside the overlap).
    success: str = "the predicted class of an instance the model classifies correctly changes"

    def targets(self, model: nn.Module, batch: Inputs, labels: torch.Tensor) -> Any:
        """What :meth:`loss` measures against, from the crafter's clean output (no grad)."""
        return labels

    def loss(self, model: nn.Module, batch: Inputs, targets: Any) -> torch.Tensor:
        """The scalar the attack ascends (with gradients)."""
        return nn.functional.cross_entropy(_forward(model, batch), targets)

    def predict(self, model: nn.Module, batch: Inputs) -> torch.Tensor:
        """One prediction per row (rows first), on the CPU; called without gradients."""
        return _forward(model, batch).argmax(1).cpu()

    def eligible(self, clean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Bool (B,): the rows a flip can count for, from the clean predictions."""
        return clean == labels


CLASSIFICATION = Objective()


def find_word_embeddings(model: nn.Module) -> str:
    """Dotted name of the token embedding table (the ``nn.Embedding`` with most rows)."""
    best, size = None, -1
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings > size:
            best, size = name, module.num_embeddings
    if best is None:
        raise ValueError(
            "the inputs are integer tokens, so the attack perturbs word embeddings, but "
            f"{type(model).__name__} has no nn.Embedding; pass embedding_module= (to "
            "adversarial_overlap or Attack) naming the module whose output to perturb"
        )
    return best


def is_continuous(batch: Inputs) -> bool:
    """True when the inputs hold a floating tensor (attacked directly), False for tokens."""
    if isinstance(batch, Mapping):
        return any(v.is_floating_point() for v in batch.values())
    return batch.is_floating_point()


def _float_parts(batch: Inputs) -> dict[str | None, torch.Tensor]:
    if not isinstance(batch, Mapping):
        return {None: batch}
    return {k: v for k, v in batch.items() if v.is_floating_point()}


def _with_parts(batch: Inputs, parts: Mapping[str | None, torch.Tensor]) -> Inputs:
    if not isinstance(batch, Mapping):
        return parts[None]
    return {**batch, **parts}


def _forward(model: nn.Module, batch: Inputs) -> torch.Tensor:
    return extract_logits(call_model(model, batch)).float()


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


@contextlib.contextmanager
def _eval_modes(*models: nn.Module | None) -> Iterator[None]:
    """Eval mode for the attack (gradients kept); every module's own mode restored after."""
    with contextlib.ExitStack() as stack:
        for model in models:
            if model is not None:
                stack.enter_context(eval_mode(model, inference=None))
        yield


def _embedding_output(model: nn.Module, module: nn.Module, batch: Inputs) -> torch.Tensor:
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            call_model(model, batch)
    finally:
        handle.remove()
    if not captured:
        raise ValueError(
            f"the embedding module of {type(model).__name__} was not called in its forward "
            "pass; pass embedding_module= naming the module whose output to perturb"
        )
    return captured[0]


def craft(
    model: nn.Module,
    batch: Inputs,
    labels: torch.Tensor,
    attack: Attack,
    objective: Objective = CLASSIFICATION,
) -> Any:
    """Adversarial version of ``batch`` for ``model`` (in eval mode; see :func:`attack_model`).

    Returns the adversarial inputs (a tensor, or a dict with its float entries
    perturbed) for continuous inputs, or a perturbation of the word embeddings
    (``(module name, delta)``, delta shaped like the embeddings of ``batch``) for token
    inputs. ``objective`` gives the loss the attack ascends (default: classification).
    """
    gen = torch.Generator().manual_seed(attack.seed)
    step = attack._step()
    batch = prepare_inputs(model, batch)
    labels = labels.to(next(iter(_all_tensors(batch))).device)
    with torch.no_grad():
        targets = objective.targets(model, batch, labels)
    if is_continuous(batch):
        clean = {k: v.detach() for k, v in _float_parts(batch).items()}
        deltas = {
            k: ((torch.rand(x.shape, generator=gen) * 2 - 1) * attack.eps).to(x.device, x.dtype)
            for k, x in clean.items()
        }
        for _ in range(attack.steps):
            for d in deltas.values():
                d.requires_grad_(True)
            adv = {k: _clip(clean[k] + deltas[k], attack) for k in clean}
            loss = objective.loss(model, _with_parts(batch, adv), targets)
            grads = torch.autograd.grad(loss, list(deltas.values()))
            deltas = {
                k: (d.detach() + step * g.sign()).clamp(-attack.eps, attack.eps)
                for (k, d), g in zip(deltas.items(), grads, strict=True)
            }
        adv = {k: _clip(clean[k] + deltas[k], attack).detach() for k in clean}
        return _with_parts(batch, adv)

    module_name = attack.embedding_module or find_word_embeddings(model)
    module = model.get_submodule(module_name)
    clean_emb = _embedding_output(model, module, batch)
    scale = attack.eps * clean_emb.abs().float().mean().item()
    # The step in embedding units (the step is relative, as eps); eps = 0 takes none.
    step_abs = step * scale / attack.eps if attack.eps > 0 else 0.0
    delta = ((torch.rand(clean_emb.shape, generator=gen) * 2 - 1) * scale).to(clean_emb.device)
    for _ in range(attack.steps):
        delta.requires_grad_(True)
        with _perturbed(module, delta):
            loss = objective.loss(model, batch, targets)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step_abs * grad.sign()).clamp(-scale, scale)
    return module_name, delta.detach()


def _all_tensors(batch: Inputs) -> Iterator[torch.Tensor]:
    yield from batch.values() if isinstance(batch, Mapping) else (batch,)


def _clip(x: torch.Tensor, attack: Attack) -> torch.Tensor:
    return x if attack.clip is None else x.clamp(*attack.clip)


class _perturbed:
    """Adds ``delta`` to a module's output for the duration of a ``with`` block.

    An output longer than ``delta`` along the tokens (dimension 1) gets it on its leading
    positions: an objective that appends tokens to the inputs (the generation task's
    teacher-forced answer) perturbs the inputs' embeddings and leaves the appended ones.
    """

    def __init__(self, module: nn.Module, delta: torch.Tensor) -> None:
        self.module, self.delta, self.handle = module, delta, None

    def _add(self, out: torch.Tensor) -> torch.Tensor:
        delta = self.delta.to(out.device, out.dtype)
        if out.shape == delta.shape:
            return out + delta
        n = delta.shape[1] if delta.dim() > 1 else 0
        if (
            out.dim() == delta.dim() > 1
            and out.shape[0] == delta.shape[0]
            and out.shape[1] > n
            and out.shape[2:] == delta.shape[2:]
        ):
            return torch.cat([out[:, :n] + delta, out[:, n:]], 1)
        raise ValueError(
            f"the perturbation of the embeddings is {tuple(delta.shape)} but the module "
            f"returned {tuple(out.shape)}: the attack's forward passes must start with the "
            "same inputs"
        )

    def __enter__(self) -> _perturbed:
        self.handle = self.module.register_forward_hook(lambda _m, _i, out: self._add(out))
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def predict_adversarial(
    model: nn.Module, batch: Inputs, adversarial: Any, objective: Objective = CLASSIFICATION
) -> torch.Tensor:
    """Predictions of ``model`` on the adversarial inputs made by :func:`craft` (CPU)."""
    with torch.no_grad():
        if not isinstance(adversarial, tuple):
            return objective.predict(model, prepare_inputs(model, adversarial)).cpu()
        module_name, delta = adversarial
        with _perturbed(model.get_submodule(module_name), delta):
            return objective.predict(model, prepare_inputs(model, batch)).cpu()


def attack_model(
    model: nn.Module,
    batches: list[tuple[Inputs, torch.Tensor]],
    attack: Attack,
    *,
    surrogate: nn.Module | None = None,
    surrogate_name: str | None = None,
    crafted: list[Any] | None = None,
    objective: Objective = CLASSIFICATION,
) -> AttackResult:
    """Attack ``model`` on every batch; craft on ``surrogate`` (transfer) when given.

    ``objective``: the task's loss and success test (default: classification, see
    :class:`Objective`).

    ``crafted``: the adversarial batches the same crafter already made for these batches
    and this attack (``AttackResult.crafted`` of its own attack, or of another transfer
    from it): crafting is deterministic, so they are reused instead of crafted again.
    Both models run in eval mode and get their own train/eval modes back afterwards.
    """
    crafter = surrogate if surrogate is not None else model
    correct, flipped, made = [], [], []
    with _eval_modes(model, surrogate):
        for i, (batch, labels) in enumerate(batches):
            labels = labels.cpu()
            with torch.no_grad():
                clean = objective.predict(model, prepare_inputs(model, batch)).cpu()
            if crafted:
                adversarial = crafted[i]
            else:
                adversarial = craft(crafter, batch, labels, attack, objective)
            made.append(adversarial)
            adv = predict_adversarial(model, batch, adversarial, objective)
            ok = objective.eligible(clean, labels).cpu()
            changed = (adv != clean).reshape(len(clean), -1).any(1)
            correct.append(ok.numpy())
            flipped.append((ok & changed).numpy())
    source = "direct" if surrogate is None else f"transfer from {surrogate_name or 'surrogate'}"
    return AttackResult(
        np.concatenate(correct), np.concatenate(flipped), source, attack.describe(), made
    )


def adversarial_overlap(flipped_a: np.ndarray, flipped_b: np.ndarray) -> float:
    """|S_a ∩ S_b| / |S_a ∪ S_b| of two flipped sets (boolean masks); 1.0 when both are empty.

    Examples
    --------
    >>> adversarial_overlap(np.array([1, 1, 0], bool), np.array([0, 1, 0], bool))
    0.5
    """
    return jaccard(flipped_a, flipped_b)


def plan_attack(
    inputs: Inputs,
    *,
    eps: float | None,
    steps: int,
    seed: int,
    embedding_module: str | None = None,
) -> Attack:
    """The attack that fits ``inputs``: L-inf PGD on every float input (``eps`` default 5% of
    the float data's range, inputs clipped to it), or, for token inputs (integer tensors
    only), PGD on the word embeddings (``eps`` default 0.5 relative to their mean magnitude).
    """
    if is_continuous(inputs):
        tensors = inputs.values() if isinstance(inputs, Mapping) else [inputs]
        floats = [v for v in tensors if v.is_floating_point()]
        lo = min(float(v.min()) for v in floats)
        hi = max(float(v.max()) for v in floats)
        return Attack(
            eps=0.05 * (hi - lo) if eps is None else eps, steps=steps, clip=(lo, hi), seed=seed
        )
    return Attack(
        eps=0.5 if eps is None else eps,
        steps=steps,
        clip=None,
        embedding_module=embedding_module,
        seed=seed,
    )


def row_batches(
    inputs: Inputs, labels: np.ndarray, rows: np.ndarray, batch_size: int
) -> list[tuple[Inputs, torch.Tensor]]:
    """``(batch, labels)`` pairs over ``rows`` of the evaluation set, ``batch_size`` at a time."""
    out = []
    idx = torch.from_numpy(rows)
    chosen = torch.from_numpy(labels)[idx]
    for s in range(0, len(rows), batch_size):
        part = idx[s : s + batch_size]
        batch = (
            {k: v[part] for k, v in inputs.items()} if isinstance(inputs, Mapping) else inputs[part]
        )
        out.append((batch, chosen[s : s + batch_size]))
    return out


class CraftedCache:
    """The adversarial batches last crafted per (crafter weights, data, attack): a transfer
    attack from a model that was attacked directly (or from which another model was
    attacked) reuses them, so ``compare_many`` over n variants crafts once per crafter. In
    memory only (MiniLM's embedding-space batches are ~20 MB), the few most recent. Each
    registry owns one (``ModelRegistry.crafted_attacks``), so two never share batches."""

    def __init__(self, keep: int = 4) -> None:
        self._items: dict[Any, list[Any]] = {}
        self._keep = keep

    def get(self, key: Any) -> list[Any] | None:
        return self._items.get(key)

    def put(self, key: Any, batches: list[Any]) -> None:
        self._items.pop(key, None)
        self._items[key] = batches
        while len(self._items) > self._keep:
            self._items.pop(next(iter(self._items)))

