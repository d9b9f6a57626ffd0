"""A CPU-bound background load that the benchmark starts itself: one busy process per core, bounded in time.

    with cpu_load():            # one spinning process per usable core, stopped on exit
        ...                     # timed code runs with every core contended

Each process spins in pure Python (arithmetic only: it competes for CPU time, not
for memory bandwidth, like a busy browser tab or a second analysis) until the
parent stops it or its own deadline passes, so a crashed benchmark leaves nothing
running for longer than ``seconds``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from vfm_features.threads import usable_cpus

_SPIN = ("import sys, time\n"
         "end = time.monotonic() + float(sys.argv[1])\n"
         "x = 0\n"
         "while time.monotonic() < end:\n"
         "    for _ in range(100000):\n"
         "        x += 1\n")


@contextmanager
def cpu_load(processes: int | None = None, *, seconds: float = 600.0, nice: int = 0) -> Iterator[int]:
    """Run ``processes`` busy processes (default: one per usable core) for at most ``seconds``; yields their count."""
    n = usable_cpus() if processes is None else int(processes)
    procs = []
    try:
        for _ in range(n):
            cmd = [sys.executable, "-c", _SPIN, str(float(seconds))]
            procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          preexec_fn=(lambda: _renice(nice)) if nice else None))
        time.sleep(0.3)  # let them start spinning before anything is timed
        yield n
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _renice(nice: int) -> None:
    import os

    os.nice(nice)


def quiet_and_loaded(fn, *, repeats: int = 1, seconds: float = 600.0) -> tuple[list[float], list[float]]:
    """Wall-clock seconds of ``repeats`` calls of ``fn()``: on the machine as it is, then under :func:`cpu_load`."""
    def times() -> list[float]:
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out

    quiet = times()
    with cpu_load(seconds=seconds):
        loaded = times()
    return quiet, loaded
