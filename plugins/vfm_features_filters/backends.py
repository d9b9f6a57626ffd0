"""Which implementation computes the filters: compiled with numba where it is installed, else numpy."""

from __future__ import annotations

import importlib.util

from vfm_features import InputError

BACKENDS = ("auto", "numba", "numpy")


def check_backend(backend: object) -> str:
    """One of :data:`BACKENDS`; ``"numba"`` only where numba is installed."""
    if backend not in BACKENDS:
        raise InputError(f"backend={backend!r} is unknown; choose one of {list(BACKENDS)}.")
    if backend == "numba" and not numba_installed():
        raise InputError("backend='numba' needs numba: pip install 'vfm-features[fast]' (or pip install numba), "
                         "or use backend='numpy'.")
    return backend


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> ``"numba"`` where numba is installed, else ``"numpy"``."""
    if backend == "auto":
        return "numba" if numba_installed() else "numpy"
    return backend


def numba_installed() -> bool:
    return importlib.util.find_spec("numba") is not None
