"""roomy_heap: torch's allocations stop being mapped afresh in a Dask-style worker process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import resource, torch
    from cnc_widgets.evaluate.heap import roomy_heap

    def faults(n=2 * 2**20):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(50):
            t = torch.ones(n)  # 8 MiB unless told, freed at once
            del t
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults()
    outside = faults()
    with roomy_heap():
        faults()
        inside = faults()
    # 12 MiB: the freed 8 MiB chunk may stay in the heap below a live allocation (it
    # depends on the layout, e.g. on the hash seed); a larger request cannot reuse it.
    after = faults(3 * 2**20)
    print(outside, inside, after)
    """
)


def clean_env(**malloc: str) -> dict[str, str]:
    """This environment without glibc malloc variables (a Dask run in this process may
    have left some), plus ``malloc``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **malloc}


def run(env: dict[str, str]) -> list[int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return [int(v) for v in out.stdout.split()]


def test_roomy_heap_keeps_freed_tensors_in_the_heap_and_restores_settings():
    outside, inside, after = run(clean_env(MALLOC_TRIM_THRESHOLD_="65536"))  # Dask's nanny
    # Each 8 MiB tensor is mapped and faulted in page by page (2048 faults) outside...
    assert outside > 50 * 2000
    # ...and reuses the same heap memory inside.
    assert inside < outside / 20
    # The process's own settings are back afterwards (12 MiB: 3072 faults a tensor).
    assert after > 50 * 3000


def test_roomy_heap_changes_nothing_without_the_variable():
    outside, inside, after = run(clean_env())
    # glibc's dynamic threshold already keeps these in the heap (the first 12 MiB tensor
    # is mapped once and raises the threshold past itself; then the heap grows to hold it).
    assert outside < 50 * 20 and inside < 50 * 20 and after < 3 * 3072
