"""Tasks: what a kind of model means to evaluation, comparison and the views.

One module per task behind the small protocol of :mod:`.base` (the Torch-Pruning habit: a
new kind of model is one class in one file). ``classification`` is the default of
:meth:`ModelRegistry.set_data`; add a task by writing ``tasks/NAME.py`` with a
:class:`~.base.Task` subclass and listing it in ``_TASKS`` below.

Examples
--------
>>> from cnc_widgets.tasks import get_task, task_names
>>> get_task("classification").quality
'accuracy'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Task
from .causal_lm import CausalLM
from .classification import Classification
from .extractive_qa import ExtractiveQA
from .generation import Generation

_TASKS: dict[str, type[Task]] = {
    t.name: t for t in (Classification, CausalLM, Generation, ExtractiveQA)
}

__all__ = [
    "CausalLM",
    "Classification",
    "ExtractiveQA",
    "Generation",
    "Task",
    "get_task",
    "task_names",
]


def task_names() -> list[str]:
    """The ``task=`` names :meth:`ModelRegistry.set_data` accepts."""
    return sorted(_TASKS)


def get_task(name: str | Task, options: Mapping[str, Any] | None = None) -> Task:
    """The task called ``name`` with its checked ``set_data`` options (a :class:`Task`
    instance is returned as it is)."""
    if isinstance(name, Task):
        return name
    try:
        cls = _TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; choose one of {task_names()}") from None
    return cls(options)
