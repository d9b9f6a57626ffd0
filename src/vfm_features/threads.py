"""The library's thread policy: one budget of threads, shared by its pools, the forest, BLAS and torch.

The budget is the number of threads the library keeps busy at once. It is, in
this order: what :func:`set_threads` was given, the environment variable
``VFM_FEATURES_THREADS`` (a positive whole number), or every core this process
may use (:func:`usable_cpus`: affinity, cgroup quotas; joblib's count).

Rules that follow from it, so that nothing is oversubscribed:

* our own thread pools (the forest predictor, the filter bank, block prediction)
  start at most :func:`n_threads` workers, and every worker runs its native
  libraries single-threaded (:func:`native_threads` ``(1)``): one level of
  parallelism, never threads inside threads;
* the forest is fitted by scikit-learn's joblib threads with ``n_jobs`` resolved
  by :func:`n_threads` (never more than the budget);
* one large native call made outside our pools (a torch forward pass) gets the
  whole budget (:func:`apply_torch_threads`);
* memory-bound arithmetic (reading features at pixels, averaging over objects)
  is written as numpy gathers that use no BLAS threads at all: threaded small
  matrix products spin and thrash when another program holds the cores.

``native_threads`` changes process-wide settings of the native libraries (that
is how they work); it restores them on exit.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from vfm_features.errors import InputError

ENV_VAR = "VFM_FEATURES_THREADS"

_budget: int | None = None  # set_threads(); None: the environment or every usable core
_controller: tuple[int, Any] | None = None  # (len(sys.modules) when built, threadpoolctl controller)
_lock = threading.Lock()


def usable_cpus() -> int:
    """CPU cores this process may run on: affinity and container (cgroup) limits, as joblib counts them."""
    try:
        from joblib import cpu_count

        return max(1, int(cpu_count(only_physical_cores=False)))
    except ImportError:  # pragma: no cover - joblib comes with scikit-learn
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1


def _check_count(value: Any, where: str) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise InputError(f"{where} must be a positive whole number of threads; got {value!r}. "
                         f"Use e.g. 2, or unset it to use every core.")
    return number


def thread_budget() -> int:
    """Threads the library keeps busy at once: :func:`set_threads`, else ``VFM_FEATURES_THREADS``, else every core."""
    if _budget is not None:
        return _budget
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _check_count(env, f"The environment variable {ENV_VAR}")
    return usable_cpus()


def set_threads(n: int | None) -> int | None:
    """Set the library's thread budget for this process (None: back to the environment / every core).

    Returns the previous setting, so a caller can restore it.
    """
    global _budget
    previous = _budget
    _budget = None if n is None else _check_count(n, "set_threads(n)")
    return previous


def n_threads(n_jobs: int | None) -> int:
    """Threads for ``n_jobs`` (scikit-learn's convention) within the budget: None -> 1, -1 -> all, -k -> all but k-1."""
    budget = thread_budget()
    if n_jobs is None:
        return 1
    if n_jobs < 0:
        return max(1, budget + 1 + n_jobs)
    return max(1, min(int(n_jobs), budget))


def _native_controller() -> Any:
    """A threadpoolctl controller of the loaded native libraries, rebuilt only after new imports (cheap)."""
    global _controller
    from threadpoolctl import ThreadpoolController

    with _lock:
        if _controller is None or _controller[0] != len(sys.modules):
            _controller = (len(sys.modules), ThreadpoolController())
        return _controller[1]


_limits: dict[int, int] = {}  # thread count -> blocks inside native_threads(count), over all threads
_active: Any = None  # the threadpoolctl limiter in force while any block runs


@contextmanager
def native_threads(n: int = 1) -> Iterator[None]:
    """Limit BLAS and OpenMP libraries to ``n`` threads inside the block (threadpoolctl), then restore them.

    Safe when several threads enter it at once (our own pools do): the smallest
    count asked for holds while any block runs, and the original settings come back
    after the last one leaves.
    """
    n = _check_count(n, "native_threads(n)")
    with _lock:
        _limits[n] = _limits.get(n, 0) + 1
        _set_limit()
    try:
        yield
    finally:
        with _lock:
            _limits[n] -= 1
            if not _limits[n]:
                del _limits[n]
            _set_limit()


def _set_limit() -> None:
    """Apply the smallest active count (called under ``_lock``); restore when none is active."""
    global _active, _controller
    wanted = min(_limits) if _limits else None
    if _active is not None and (wanted is None or wanted != _active[0]):
        _active[1].restore_original_limits()
        _active = None
    if wanted is not None and _active is None:
        from threadpoolctl import ThreadpoolController

        if _controller is None or _controller[0] != len(sys.modules):
            _controller = (len(sys.modules), ThreadpoolController())
        _active = (wanted, _controller[1].limit(limits=wanted))


def apply_torch_threads() -> int:
    """Give torch's intra-op pool the budget, if torch is already imported (never imports it); returns the budget."""
    budget = thread_budget()
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != budget:
        torch.set_num_threads(budget)
    return budget
