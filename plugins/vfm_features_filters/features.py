"""The filter feature table: names, outputs, computations, option checks and the halo they need.

Every feature is computed at one scale ``sigma`` from a :class:`~.kernels.GaussianBank`
(smoothed image and Gaussian derivatives of one channel at that scale, each computed
once and shared between features). This module only uses numpy, so the spec can
read the halo without importing scipy.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from vfm_features import InputError

from .eigen import eigenvalues_2x2

DEFAULT_SIGMAS = (0.5, 1.0, 2.0, 4.0)
TRUNCATE = 4.0  # kernel radius in units of sigma
DOG_RATIO = 0.66  # difference of Gaussians: G(sigma) - G(0.66 sigma), as ilastik
OUTER_RATIO = 0.5  # structure tensor: gradient at sigma, tensor smoothed at 0.5 sigma, as ilastik


def kernel_radius(sigma: float) -> int:
    """Half-width in pixels of a Gaussian (derivative) kernel at ``sigma``; at least 1."""
    return max(int(TRUNCATE * sigma + 0.5), 1)


@dataclass(frozen=True)
class Feature:
    """One filter: its output channels at one scale and how to compute them."""

    name: str
    outputs: tuple[str, ...]  # output channel names at one scale
    compute: Callable[[Any, list[np.ndarray]], None]  # (bank, out planes) -> None
    extra_radius: Callable[[float], int] = lambda sigma: 0  # support beyond the sigma kernel


def _gaussian(bank, out):
    np.copyto(out[0], bank.derivative(0, 0))


def _log(bank, out):
    np.add(bank.derivative(2, 0), bank.derivative(0, 2), out=out[0])


def _gradient_magnitude(bank, out):
    np.hypot(bank.derivative(1, 0), bank.derivative(0, 1), out=out[0])


def _dog(bank, out):
    np.subtract(bank.derivative(0, 0), bank.smooth(DOG_RATIO * bank.sigma), out=out[0])


def _structure_tensor(bank, out):
    gy, gx = bank.derivative(1, 0), bank.derivative(0, 1)
    outer = OUTER_RATIO * bank.sigma
    jyy = bank.smooth(outer, gy * gy)
    jxy = bank.smooth(outer, gy * gx)
    jxx = bank.smooth(outer, gx * gx)
    eigenvalues_2x2(jyy, jxy, jxx, out[0], out[1])


def _hessian(bank, out):
    eigenvalues_2x2(bank.derivative(2, 0), bank.derivative(1, 1), bank.derivative(0, 2), out[0], out[1])


FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("gaussian", ("gaussian",), _gaussian),
    Feature("log", ("log",), _log),
    Feature("gradient_magnitude", ("gradient_magnitude",), _gradient_magnitude),
    Feature("dog", ("dog",), _dog),
    Feature("structure_tensor", ("structure_tensor_ev0", "structure_tensor_ev1"), _structure_tensor,
            extra_radius=lambda sigma: kernel_radius(OUTER_RATIO * sigma)),
    Feature("hessian", ("hessian_ev0", "hessian_ev1"), _hessian),
)}
DEFAULT_FEATURES = tuple(FEATURES)


def check_sigmas(sigmas: Any) -> tuple[float, ...]:
    """A non-empty sequence of distinct positive finite scales -> tuple of floats."""
    if isinstance(sigmas, (int, float)) and not isinstance(sigmas, bool):
        sigmas = (sigmas,)
    try:
        values = tuple(float(s) for s in sigmas)
    except (TypeError, ValueError):
        raise InputError(f"sigmas must be a list of positive numbers such as {list(DEFAULT_SIGMAS)}; "
                         f"got {sigmas!r}.") from None
    bad = [s for s in values if not (math.isfinite(s) and s > 0)]
    if not values or bad:
        raise InputError(f"sigmas must be positive and finite; got {list(values)}"
                         f"{f' (bad: {bad})' if bad else ' (empty)'}. Use e.g. sigmas={list(DEFAULT_SIGMAS)}.")
    if len(set(values)) != len(values):
        raise InputError(f"sigmas contains duplicates: {list(values)}; list each scale once.")
    return values


def check_features(features: Any) -> tuple[str, ...]:
    """A non-empty sequence of distinct names from :data:`FEATURES` -> tuple of str."""
    if isinstance(features, str):
        features = (features,)
    names = tuple(features)
    for name in names:
        if name not in FEATURES:
            close = difflib.get_close_matches(str(name), FEATURES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InputError(f"Unknown filter feature {name!r}.{hint} Choose from {list(FEATURES)}.")
    if not names or len(set(names)) != len(names):
        raise InputError(f"features must list each of {list(FEATURES)} at most once and not be empty; got {list(names)}.")
    return names


def output_names(features: Sequence[str], sigmas: Sequence[float]) -> list[str]:
    """Names of one channel's outputs, ordered feature -> sigma -> component (e.g. 'hessian_ev0_s1.0')."""
    return [f"{out}_s{float(s)!r}" for f in features for s in sigmas for out in FEATURES[f].outputs]


def halo_for(features: Sequence[str], sigmas: Sequence[float]) -> int:
    """Pixels of context a tile needs so that its features equal the whole-image ones."""
    return max(kernel_radius(s) + FEATURES[f].extra_radius(s) for f in features for s in sigmas)
