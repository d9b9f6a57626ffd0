"""A probe as plain data: JSON parameters and float32 arrays, checked against the network the parameters build.

:func:`check_params` refuses unknown, missing or ill-typed keys before anything
is built; :func:`load_network` compares every array's name, shape and dtype with
the freshly built network's own parameters and refuses non-finite values. No
pickle, no torch file format: a saved probe is numbers only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm_features.errors import InputError
from vfm_features.validation import MAX_CLASSES

PREFIX = "net."


def bad_file(what: str) -> InputError:
    return InputError(f"The probe in this file is damaged or crafted: {what}; refusing to load it.")


def check_params(params: Any, expected: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """``params`` with exactly the keys of ``expected``, each of its type (bool is not a number)."""
    if not isinstance(params, dict):
        raise bad_file("its parameters are not a mapping")
    missing, unknown = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
    if missing or unknown:
        parts = ([f"lack {missing}"] if missing else []) + ([f"hold unknown keys {unknown}"] if unknown else [])
        raise bad_file(f"its parameters {' and '.join(parts)}")
    for key, types in expected.items():
        value, allowed = params[key], types if isinstance(types, tuple) else (types,)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise bad_file(f"the parameter {key!r} has the wrong type ({type(value).__name__})")
    return dict(params)


def check_classes(arrays: dict[str, np.ndarray], key: str = "classes") -> np.ndarray:
    """Distinct, increasing, whole class ids (2..MAX_CLASSES of them) from ``arrays[key]``."""
    classes = arrays.get(key)
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 or classes.dtype.kind not in "iu":
        raise bad_file(f"{key!r} is not a 1-D array of whole numbers")
    if not 2 <= len(classes) <= MAX_CLASSES or np.any(np.diff(classes) <= 0) or classes.min() < 0:
        raise bad_file(f"{key!r} must hold 2 to {MAX_CLASSES} distinct increasing class ids")
    return classes.astype(np.int64)


def check_vector(arrays: dict[str, np.ndarray], key: str, n: int, *, positive: bool = False) -> np.ndarray:
    arr = arrays.get(key)
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.shape != (n,) or not np.isfinite(arr).all():
        raise bad_file(f"{key!r} is not {n} finite float32 numbers")
    if positive and np.any(arr <= 0):
        raise bad_file(f"{key!r} holds values <= 0")
    return arr


def network_arrays(net: Any, prefix: str = PREFIX) -> dict[str, np.ndarray]:
    """The network's parameters and buffers as float32 numpy arrays named ``prefix + name``."""
    return {prefix + k: v.detach().to("cpu").float().numpy().copy() for k, v in net.state_dict().items()}


def load_network(net: Any, arrays: dict[str, np.ndarray], prefix: str = PREFIX) -> None:
    """Fill ``net`` from ``arrays``; names, shapes (those ``net`` was built with) and dtype float32 must match."""
    import torch

    expected = net.state_dict()
    given = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    if set(given) != set(expected):
        missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
        raise bad_file(f"its network arrays do not fit its parameters (missing {missing[:3]}, unexpected {extra[:3]})")
    state = {}
    for name, ref in expected.items():
        arr = given[name]
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or tuple(arr.shape) != tuple(ref.shape):
            raise bad_file(f"the array {prefix + name!r} is not float32 of shape {tuple(ref.shape)}")
        if not np.isfinite(arr).all():
            raise bad_file(f"the array {prefix + name!r} holds NaN or infinite values")
        state[name] = torch.from_numpy(np.ascontiguousarray(arr))
    net.load_state_dict(state)
