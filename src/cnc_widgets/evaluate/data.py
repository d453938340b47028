"""The evaluation set a registry runs its models on, checked once on arrival."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

Inputs = torch.Tensor | dict[str, torch.Tensor]


@dataclass
class EvalData:
    """Inputs, labels and what a person sees of each instance.

    Use :meth:`ModelRegistry.set_data` rather than building this directly.
    """

    inputs: Inputs | None
    labels: np.ndarray
    classes: list[str]
    instances: list[str] | np.ndarray | None
    ids: list[str]
    batch_size: int
    embedding: str | None
    fingerprint: str
    # False when the names were made up from the labels: a model may then have more
    # outputs than the labels use (an ImageNet model on a few photographs).
    classes_given: bool = True
    # The task (cnc_widgets.tasks) and its own set_data options: JSON-able ones are
    # fingerprinted and stored; "_"-prefixed ones (a tokenizer) live in memory only.
    task: str = "classification"
    task_options: dict[str, Any] = field(default_factory=dict)

    def stored_options(self) -> dict[str, Any]:
        """The task options a store keeps (the JSON-able ones)."""
        return {k: v for k, v in self.task_options.items() if not k.startswith("_")}

    def __len__(self) -> int:
        return len(self.labels)

    def class_names(self, width: int) -> list[str]:
        """Names of a model's ``width`` outputs: the given classes, else ``"0"``, ``"1"``..."""
        if self.classes_given:
            return list(self.classes)
        return [str(i) for i in range(max(width, len(self.classes)))]

    def batch(self, start: int, stop: int) -> Inputs:
        if self.inputs is None:
            raise ValueError(
                "this registry was reopened from its store without inputs; "
                "call reg.set_data(inputs, labels) before evaluating new models"
            )
        if isinstance(self.inputs, dict):
            return {k: v[start:stop] for k, v in self.inputs.items()}
        return self.inputs[start:stop]


def _tensor(value: Any, where: str) -> Any:
    """A NumPy array as a tensor (sharing its memory when it can); anything else as given."""
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype == object or value.dtype.kind in "USV":
        raise ValueError(
            f"{where} is a NumPy array of {value.dtype}; pass numbers (token ids, pixels, "
            "features), e.g. tokenize text first"
        )
    if not value.flags.writeable:
        value = value.copy()  # torch warns on (and could write through) read-only memory
    return torch.from_numpy(np.ascontiguousarray(value))


def as_tensors(inputs: Any) -> Any:
    """``inputs`` with NumPy arrays (or a dict of them) converted to tensors, once.

    Examples
    --------
    >>> import numpy as np
    >>> as_tensors({"input_ids": np.zeros((2, 3), dtype=np.int64)})["input_ids"].dtype
    torch.int64
    """
    if isinstance(inputs, Mapping):
        return {k: _tensor(v, f"inputs[{k!r}]") for k, v in inputs.items()}
    return _tensor(inputs, "inputs")


def rows_of(inputs: Any) -> int:
    """The number of rows of a tensor or a dict of tensors (checked to agree)."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0:
            raise ValueError("inputs is a scalar tensor; pass a Tensor with one row per instance")
        return inputs.shape[0]
    if isinstance(inputs, Mapping):
        if not inputs:
            raise ValueError("inputs is an empty dict; pass tensors such as input_ids")
        counts = {}
        for key, value in inputs.items():
            if not isinstance(value, torch.Tensor):
                raise ValueError(
                    f"inputs[{key!r}] is a {type(value).__name__}; every value must be a "
                    "torch.Tensor or NumPy array (tokenize with return_tensors='pt')"
                )
            counts[key] = value.shape[0] if value.dim() else 0
        if len(set(counts.values())) != 1:
            raise ValueError(f"inputs tensors have different numbers of rows: {counts}")
        return next(iter(counts.values()))
    raise ValueError(
        f"inputs must be a torch.Tensor or NumPy array (N, ...), or a dict of them with N rows, "
        f"got {type(inputs).__name__}"
    )


def check_labels(labels: Any, n: int) -> np.ndarray:
    """N integer class indices as int64, or an error that says what is wrong with them."""
    array = (
        labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    )
    if array.ndim != 1:
        raise ValueError(f"labels must be one integer class index per row, got shape {array.shape}")
    if len(array) != n:
        raise ValueError(
            f"labels has {len(array)} entries but inputs has {n} rows; pass one label per input row"
        )
    if n and not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise ValueError(
                f"labels must be integer class indices, got dtype {array.dtype}; "
                "map class names to indices and pass the names as classes="
            )
    if n and array.min() < 0:
        raise ValueError(f"labels must be non-negative class indices, found {array.min()}")
    return array.astype(np.int64)


def _instances(instances: Any, n: int) -> list[str] | np.ndarray | None:
    if instances is None:
        return None
    if isinstance(instances, np.ndarray) and instances.dtype != object:
        if instances.dtype != np.uint8 or instances.ndim not in (3, 4):
            raise ValueError(
                "instances as an array must be uint8 images (N, H, W) or (N, H, W, 3), got "
                f"dtype {instances.dtype} shape {instances.shape}"
            )
        if instances.ndim == 4 and instances.shape[-1] != 3:
            raise ValueError(f"colour instances must be (N, H, W, 3), got {instances.shape}")
        if len(instances) != n:
            raise ValueError(f"instances has {len(instances)} images but inputs has {n} rows")
        return instances
    if isinstance(instances, Sequence) or isinstance(instances, np.ndarray):
        items = [str(x) for x in instances]
        if len(items) != n:
            raise ValueError(f"instances has {len(items)} entries but inputs has {n} rows")
        return items
    raise ValueError(
        "instances must be a list of N strings or a uint8 image array (N, H, W) / (N, H, W, 3)"
    )


def make_data(
    inputs: Any,
    labels: Any,
    *,
    classes: Sequence[str] | None,
    instances: Any,
    ids: Sequence[Any] | None,
    batch_size: int,
    embedding: str | None,
    fingerprint: str,
    task: str = "classification",
    task_options: Mapping[str, Any] | None = None,
) -> EvalData:
    """Validate everything :meth:`ModelRegistry.set_data` takes and build an :class:`EvalData`.

    ``labels`` were already checked by the task (:meth:`Task.labels`), and
    ``task_options`` by :meth:`Task.options`. NumPy inputs (an array, or a dict of
    arrays) become tensors here, once.
    """
    inputs = as_tensors(inputs)
    n = rows_of(inputs)
    if n == 0:
        raise ValueError("inputs has no rows; pass at least one instance")
    y = np.asarray(labels)
    given = classes is not None
    if task != "classification":
        classes, given = ([str(c) for c in classes] if classes is not None else []), False
    elif classes is None:
        classes = [str(i) for i in range(int(y.max()) + 1)]
    classes = [str(c) for c in classes]
    if task == "classification" and int(y.max()) >= len(classes):
        raise ValueError(
            f"labels go up to {int(y.max())} but only {len(classes)} classes were named; "
            "pass one name per class"
        )
    if ids is None:
        ids = [str(i) for i in range(n)]
    ids = [str(i) for i in ids]
    if len(ids) != n:
        raise ValueError(f"ids has {len(ids)} entries but inputs has {n} rows")
    if len(set(ids)) != n:
        raise ValueError("ids must be unique: one id per instance")
    if isinstance(batch_size, np.integer):
        batch_size = int(batch_size)  # np.int64 from an array of sizes
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if embedding is not None and not isinstance(embedding, str):
        raise ValueError("embedding must be the dotted name of a module, e.g. 'encoder.pooler'")
    if isinstance(inputs, Mapping) and not isinstance(inputs, dict):
        # A tokenizer's BatchEncoding (a UserDict): every consumer takes a plain dict.
        inputs = dict(inputs)
    return EvalData(
        inputs=inputs,
        labels=y,
        classes=classes,
        instances=_instances(instances, n),
        ids=ids,
        batch_size=batch_size,
        embedding=embedding,
        fingerprint=fingerprint,
        classes_given=given,
        task=task,
        task_options=dict(task_options or {}),
    )
