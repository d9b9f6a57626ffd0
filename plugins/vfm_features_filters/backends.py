"""Which implementation computes the filters: compiled with numba where it is installed and loads, else numpy."""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from functools import lru_cache

from vfm_features import InputError

BACKENDS = ("auto", "numba", "numpy")


def check_backend(backend: object) -> str:
    """One of :data:`BACKENDS`; ``"numba"`` only where numba is installed (checked without importing it)."""
    if backend not in BACKENDS:
        raise InputError(f"backend={backend!r} is unknown; choose one of {list(BACKENDS)}.")
    if backend == "numba" and not numba_installed():
        raise InputError("backend='numba' needs numba: pip install 'vfm-features[fast]' (or pip install numba), "
                         "or use backend='numpy'.")
    return backend


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> ``"numba"`` where numba is installed and the compiled module loads, else ``"numpy"``.

    A numba that cannot load here (one too old for this numpy, no writable cache folder) makes
    ``"auto"`` fall back to numpy with one warning, and ``"numba"`` fail with the reason.
    """
    if backend == "numpy" or (backend == "auto" and not numba_installed()):
        return "numpy"
    problem = compiled_problem()
    if problem is None:
        return "numba"
    if backend == "numba":
        raise InputError(f"backend='numba': the compiled filters do not load here ({problem}); use backend='numpy'.")
    _warn_once(problem)
    return "numpy"


def numba_installed() -> bool:
    return importlib.util.find_spec("numba") is not None


@lru_cache(maxsize=1)
def compiled_problem() -> str | None:
    """Why the compiled pass does not work here (import, cache folder, compilation), or None where it does.

    The first call imports :mod:`.compiled` and compiles it on a tiny image (or loads it from
    numba's cache): the cost the first filtered image would pay anyway.
    """
    try:
        importlib.import_module("vfm_features_filters.stream").warm_up()
    except Exception as error:  # noqa: BLE001 - any failure of numba (import, typing, LLVM) means: use numpy
        return f"{type(error).__name__}: {error}"
    return None


@lru_cache(maxsize=1)
def _warn_once(problem: str) -> None:
    warnings.warn(f"numba is installed but the compiled filters do not load ({problem}); the filters use numpy "
                  "(same features, about 2x slower). Pass backend='numpy' to silence this.", RuntimeWarning,
                  stacklevel=4)
