"""The filter feature table: names, outputs, the derivatives each needs, option checks, halo.

Definitions are ilastik's (fastfilters / Vigra), so a forest trained in ilastik on
these features means the same thing here; see docs/filters.md. At one scale sigma:
``d(oy, ox)`` is the image correlated with the Gaussian derivative of order ``ox``
along x (axis 1) and ``oy`` along y (axis 0), each kernel cut at its own window
(:func:`~.kernels.kernel_radius`). Every feature reads rows of these derivatives
(``d[key]``, a band of rows) and writes the same rows of its outputs, so features are
computed band by band while the derivatives are in cache. numpy only: the spec reads
the halo without importing anything else.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from vfm_features import InputError

from .eigen import eigenvalues_2x2
from .kernels import kernel_radius

DEFAULT_SIGMAS = (0.5, 1.0, 2.0, 4.0)
DOG_RATIO = 0.66  # difference of Gaussians: G(sigma) - G(0.66 sigma), as ilastik
OUTER_RATIO = 0.5  # structure tensor: gradient at sigma, tensor smoothed at 0.5 sigma, as ilastik
DOG = "dog"  # key of the image smoothed at DOG_RATIO * sigma
TENSOR = ("jyy", "jxy", "jxx")  # keys of the smoothed gradient products (structure tensor)
HALVED = ("jyy", "jxx")  # tensor entries given at half their value (exact), saving two passes in the eigenvalues

Rows = Mapping[Any, np.ndarray]


@dataclass(frozen=True)
class Feature:
    """One filter: its output channels at one scale, what it reads and how it is computed."""

    name: str
    outputs: tuple[str, ...]  # output channel names at one scale
    needs: tuple[Any, ...]  # derivative keys (oy, ox), DOG
    compute: Callable[[Rows, list[np.ndarray], np.ndarray], None]  # (rows, out rows, scratch) -> None
    radius: Callable[[float], int]  # support in pixels at sigma (the halo for seamless tiles)
    tensor: bool = False  # computed from the smoothed gradient products (TENSOR) instead of ``needs``


def _gaussian(d, out, scratch):
    if not np.may_share_memory(out[0], d[0, 0]):  # the y pass may have written it in place
        np.copyto(out[0], d[0, 0])


def _log(d, out, scratch):
    np.add(d[0, 2], d[2, 0], out=out[0])
    d["log"] = out[0]  # the Hessian's trace, reused by _hessian


def _gradient_magnitude(d, out, scratch):
    if "gy2" in d:  # squares already made for the structure tensor
        np.add(d["gy2"], d["gx2"], out=out[0])
    else:
        np.multiply(d[0, 1], d[0, 1], out=out[0])
        np.multiply(d[1, 0], d[1, 0], out=scratch)
        out[0] += scratch
    np.sqrt(out[0], out=out[0])


def _dog(d, out, scratch):
    np.subtract(d[0, 0], d[DOG], out=out[0])


def _structure_tensor(j, out, scratch):
    eigenvalues_2x2(j["jyy"], j["jxy"], j["jxx"], out[0], out[1], scratch, halved=True)  # see HALVED


def _hessian(d, out, scratch):
    eigenvalues_2x2(d[2, 0], d[1, 1], d[0, 2], out[0], out[1], scratch, total=d.get("log"))


FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("gaussian", ("gaussian",), ((0, 0),), _gaussian, lambda s: kernel_radius(s, 0)),
    Feature("log", ("log",), ((0, 2), (2, 0)), _log, lambda s: kernel_radius(s, 2)),
    Feature("gradient_magnitude", ("gradient_magnitude",), ((0, 1), (1, 0)), _gradient_magnitude,
            lambda s: kernel_radius(s, 1)),
    Feature("dog", ("dog",), ((0, 0), DOG), _dog, lambda s: kernel_radius(s, 0)),
    Feature("structure_tensor", ("structure_tensor_ev0", "structure_tensor_ev1"), ((0, 1), (1, 0)),
            _structure_tensor, lambda s: kernel_radius(s, 1) + kernel_radius(OUTER_RATIO * s, 0), tensor=True),
    Feature("hessian", ("hessian_ev0", "hessian_ev1"), ((0, 2), (1, 1), (2, 0)), _hessian,
            lambda s: kernel_radius(s, 2)),
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
    return max(FEATURES[f].radius(s) for f in features for s in sigmas)
