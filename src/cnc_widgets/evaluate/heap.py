"""glibc heap settings that keep torch fast inside Dask worker processes.

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory goes
back to the operating system quickly. Setting it also fixes glibc's mmap threshold at
128 kiB, and torch's CPU allocator calls ``malloc``/``free`` for every activation: each
batch's tensors are then mapped, faulted in page by page and unmapped again. A digits-CNN
evaluation ran 2.5x slower in such a worker than in the kernel. :func:`roomy_heap` raises
both thresholds while the library's tasks run, then puts the process's own settings back
and calls ``malloc_trim(0)``, so the worker still hands its memory back when the task ends.

Where the variable is not set (a plain process, a ``ProcessPoolExecutor``, a worker
started without the nanny's setting) or the C library is not glibc, nothing is changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
from collections.abc import Iterator

__all__ = ["release_freed_memory", "roomy_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_GLIBC_MMAP_DEFAULT = 128 * 1024

_lock = threading.Lock()
_depth = 0  # tasks inside roomy_heap in this process (a worker may run several threads)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc has both)
    except (OSError, AttributeError):
        return None
    return libc


def release_freed_memory() -> None:
    """Give the heap's free pages back to the operating system (glibc's ``malloc_trim``).

    A language model's batch leaves tens of MiB of float64 temporaries (log-softmax over
    the vocabulary) in the heap, where glibc keeps them once its adaptive mmap threshold
    has risen: over a few dozen batches the resident set of a token comparison grew by as
    much as all the logits of one model (1.1 GiB for 96 SmolLM2 windows) although at most
    one batch is alive. Trimming after each batch keeps it at one batch's working set
    (~150 MiB there) for well under a millisecond a call. Elsewhere than glibc: nothing.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _threshold(variable: str, default: int) -> int:
    try:
        return int(os.environ.get(variable, default))
    except ValueError:
        return default


@contextlib.contextmanager
def roomy_heap(trim: int = 256 * 2**20, mmap: int = 32 * 2**20) -> Iterator[None]:
    """Raise glibc's trim and mmap thresholds while the block runs (see the module text).

    Only when ``MALLOC_TRIM_THRESHOLD_`` is set below ``trim``; nested and concurrent uses
    in one process share one raise, undone when the last one leaves.
    """
    global _depth
    small = _threshold("MALLOC_TRIM_THRESHOLD_", trim) < trim
    libc = _glibc() if small else None
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(_M_TRIM_THRESHOLD, trim)
            libc.mallopt(_M_MMAP_THRESHOLD, mmap)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_TRIM_THRESHOLD, _threshold("MALLOC_TRIM_THRESHOLD_", trim))
                libc.mallopt(
                    _M_MMAP_THRESHOLD, _threshold("MALLOC_MMAP_THRESHOLD_", _GLIBC_MMAP_DEFAULT)
                )
                libc.malloc_trim(0)
