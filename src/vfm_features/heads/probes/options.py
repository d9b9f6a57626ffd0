"""Checks of the probes' parameters: one place, used by ``fit`` and by ``from_state`` (files are untrusted).

Every bound here is also a resource bound: a crafted classifier file cannot ask
for a network of a billion parameters, because :func:`check_probe_params` runs
before anything is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm_features.errors import InputError
from vfm_features.validation import check_bool, check_int, check_random_state

PRECISIONS = ("float32", "bfloat16")
STRIDES = (2, 4, 8, 16, 32)


def check_float(value: Any, name: str, *, low: float, high: float, low_open: bool = False,
                allow_none: bool = False, hint: str = "") -> float | None:
    """A finite real number in [low, high] ((low, high] with ``low_open``), or None when allowed."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    number = float(value) if ok else float("nan")
    if not ok or not np.isfinite(number) or number > high or number < low or (low_open and number == low):
        bracket = "(" if low_open else "["
        raise InputError(f"{name}={value!r} is not valid; expected a number in {bracket}{low:g}, {high:g}]"
                         f"{' or None' if allow_none else ''}{'. ' + hint if hint else '.'}")
    return number


def check_choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name}={value!r} is not valid; use one of {list(choices)}.")
    return value


def check_device(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"device={value!r} is not valid; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")
    return value


def check_progress(value: Any) -> Any:
    return value if callable(value) else check_bool(value, "progress")


def check_training_params(head: Any) -> None:
    """The options every probe shares: attention width, optimiser, schedule, validation, device."""
    check_int(head.dim, "dim", low=2, hint="the probe's width, e.g. 32")
    if head.dim > 1024:
        raise InputError(f"dim={head.dim} is too large; use at most 1024 (32 is the default).")
    check_int(head.n_heads, "n_heads", hint="attention heads, e.g. 8")
    if head.n_heads > 64 or head.dim % head.n_heads:
        raise InputError(f"n_heads={head.n_heads} must divide dim={head.dim} and be at most 64; e.g. dim=32, "
                         "n_heads=8.")
    check_float(head.sigma, "sigma", low=0.0, high=1.0, low_open=True,
                hint="the initial width of the attention, as a fraction of the image side (0.05)")
    check_float(head.context, "context", low=1.0, high=512.0, allow_none=True,
                hint="pixels around a query that attention sees; None: three times the initial sigma")
    check_float(head.lr, "lr", low=0.0, high=1.0, low_open=True)
    check_float(head.weight_decay, "weight_decay", low=0.0, high=1.0)
    check_int(head.max_iter, "max_iter", hint="training iterations at most, e.g. 1000")
    if head.max_iter > 1_000_000:
        raise InputError(f"max_iter={head.max_iter} is too large; use at most 1000000.")
    check_int(head.batch_size, "batch_size", hint="crops (DeAP) or objects (ObAP) per iteration")
    if head.batch_size > 4096:
        raise InputError(f"batch_size={head.batch_size} is too large; use at most 4096.")
    check_float(head.val_fraction, "val_fraction", low=0.0, high=0.5,
                hint="the share of labels held out for early stopping; 0 trains on all for max_iter")
    check_int(head.val_every, "val_every", hint="iterations between validations")
    check_int(head.patience, "patience", hint="validations without improvement before stopping")
    check_float(head.max_time, "max_time", low=0.0, high=1e7, low_open=True, allow_none=True,
                hint="seconds of training at most; None: no limit")
    check_device(head.device)
    check_choice(head.precision, "precision", PRECISIONS)
    check_random_state(head.random_state)
    check_progress(head.progress)
