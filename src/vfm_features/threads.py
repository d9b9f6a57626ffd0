"""How many threads the library's own pools use: one CPU counter for every part of the library."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPU cores this process may run on (affinity and container limits where the OS shows them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def n_threads(n_jobs: int | None) -> int:
    """Threads for ``n_jobs`` in scikit-learn's convention: None -> 1, -1 -> all cores, -k -> all but k-1."""
    cpus = usable_cpus()
    if n_jobs is None:
        return 1
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return max(1, min(int(n_jobs), cpus))
