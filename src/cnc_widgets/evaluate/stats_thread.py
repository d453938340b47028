"""The optional worker thread that reduces copied module outputs beside the forward pass.

:class:`~.stats.RunningStats` hands each output to :class:`StatsWorker` when it runs with
``background=True``; the worker reduces them in the order they came with the very same
operations, so the statistics are identical to those reduced on the calling thread.
:func:`spare_core` says whether a core is free for it.

Example
-------
>>> from cnc_widgets.evaluate.stats_thread import spare_core
>>> isinstance(spare_core(), bool)
True
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Protocol

import torch

__all__ = ["StatsWorker", "spare_core"]


class Reducer(Protocol):
    """What the worker calls: :class:`.stats.RunningStats` (not imported: it imports this)."""

    def collect(self, name: str, t: torch.Tensor, tag: Any = None) -> None: ...

    def flush(self) -> None: ...


def spare_core() -> bool:
    """Whether this process may use more CPU cores than torch's intra-op threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores > torch.get_num_threads()


class StatsWorker:
    """A thread that reduces copied outputs in the order they came (see
    :class:`.stats.RunningStats`).

    At most ``budget`` bytes of copies wait at a time: past it, the forward pass waits.
    The first error is kept and everything queued after it is dropped.
    """

    def __init__(self, stats: Reducer, budget: int) -> None:
        self.stats, self.budget = stats, budget
        self.queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self.cond = threading.Condition(threading.Lock())
        self.in_flight = 0  # bytes of copies queued
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="cnc-activation-stats", daemon=True)
        self.thread.start()

    def put(self, name: str, t: torch.Tensor | None, tag: Any) -> None:
        """Queue an output (``None``: the end of a batch)."""
        size = 0 if t is None else t.numel() * t.element_size()
        with self.cond:  # at least one output is always let through, however large
            if self.in_flight and self.in_flight + size > self.budget:
                self.cond.wait_for(
                    lambda: self.in_flight == 0 or self.in_flight + size <= self.budget
                )
            self.in_flight += size
        self.queue.put((name, t, tag, size))

    def run(self) -> None:
        with torch.inference_mode():
            while (job := self.queue.get()) is not None:
                name, t, tag, size = job
                if self.error is None:
                    try:
                        if t is None:
                            self.stats.flush()
                        else:
                            self.stats.collect(name, t, tag)
                    except BaseException as exc:  # handed over by raise_error()
                        self.error = exc
                del job, t
                if size:
                    with self.cond:
                        self.in_flight -= size
                        self.cond.notify_all()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def drain(self) -> None:
        """Reduce everything handed over; stop the thread."""
        self.put("", None, None)
        self.queue.put(None)
        self.thread.join()
