"""True 3D filters over a (Z, Y, X) volume with anisotropic voxel spacing (``ndim=3``).

The same features as the 2D bank, with a third axis: Gaussian, LoG (sum of the three
second derivatives), gradient magnitude (three first derivatives), DoG, and the three
eigenvalues (descending) of the structure tensor and of the Hessian. Every separable
pass uses the 2D bank's kernels (:func:`~.kernels.gaussian_kernel`: ilastik's windows
and normalisation) with mirror borders, so a volume that is constant along z gives
the 2D Gaussian, LoG, gradient magnitude and DoG.

Spacing: ``spacing = (sz, sy, sx)`` is the voxel size. Sigmas are in units of the x
pixel size; along axis ``a`` the kernel has ``sigma * sx / s_a`` pixels, so the
physical scale is the same along every axis, and derivatives are taken per physical
length (in x pixels): a derivative of order ``k`` along ``a`` is divided by
``(s_a / sx) ** k``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from vfm_features import InputError

from .eigen import eigenvalues_3x3
from .features import DOG_RATIO, OUTER_RATIO
from .kernels import gaussian_kernel

#: output channels of one feature at one scale, in 3D
OUTPUTS_3D = {
    "gaussian": ("gaussian3d",),
    "log": ("log3d",),
    "gradient_magnitude": ("gradient_magnitude3d",),
    "dog": ("dog3d",),
    "structure_tensor": ("structure_tensor3d_ev0", "structure_tensor3d_ev1", "structure_tensor3d_ev2"),
    "hessian": ("hessian3d_ev0", "hessian3d_ev1", "hessian3d_ev2"),
}
FIRST = ((1, 0, 0), (0, 1, 0), (0, 0, 1))  # derivative orders (z, y, x)
SECOND = ((2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1), (0, 0, 2))  # Hessian entries zz zy zx yy yx xx
_EIGEN_CHUNK = 1 << 20  # voxels per eigenvalue chunk (bounds the float64 temporaries)


def check_ndim(ndim: Any) -> int:
    """2 (plane by plane) or 3 (whole volumes)."""
    if isinstance(ndim, bool) or ndim not in (2, 3):
        raise InputError(f"ndim must be 2 (filters per plane) or 3 (3D filters over a ZYX volume); got {ndim!r}.")
    return int(ndim)


def check_spacing(spacing: Any) -> tuple[float, float, float]:
    """Voxel size (z, y, x): three positive finite numbers -> tuple of floats."""
    hint = "give the voxel size (z, y, x), e.g. spacing=(2.0, 1.0, 1.0) for slices twice as far apart as pixels"
    if isinstance(spacing, (str, bytes)):
        raise InputError(f"spacing must be three positive numbers; got {spacing!r}; {hint}.")
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise InputError(f"spacing must be three positive numbers; got {spacing!r}; {hint}.") from None
    if len(values) != 3:
        raise InputError(f"spacing must have three entries (z, y, x); got {len(values)}: {list(values)}; {hint}.")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(f"spacing must be positive and finite; got {list(values)}; {hint}.")
    return values


def output_names_3d(features: Sequence[str], sigmas: Sequence[float]) -> list[str]:
    """Names of one channel's 3D outputs, ordered feature -> sigma -> component (e.g. 'hessian3d_ev2_s1.0')."""
    return [f"{out}_s{float(s)!r}" for f in features for s in sigmas for out in OUTPUTS_3D[f]]


class _Derivatives:
    """Gaussian derivatives of one volume at one scale, sharing the z and y passes between them."""

    def __init__(self, volume: np.ndarray, sigma: float, spacing: tuple[float, float, float]) -> None:
        self.volume = volume
        self.ratios = tuple(s / spacing[2] for s in spacing)  # axis spacing in x pixels
        self.sigmas = tuple(sigma / r for r in self.ratios)  # kernel sigma in pixels per axis
        self._partial: dict[tuple[int, ...], np.ndarray] = {}

    def _pass(self, data: np.ndarray, axis: int, order: int) -> np.ndarray:
        from scipy.ndimage import correlate1d

        weights = gaussian_kernel(self.sigmas[axis], order)
        out = correlate1d(data, weights, axis=axis, output=np.float32, mode="mirror")
        if order:
            out *= np.float32(self.ratios[axis] ** -order)
        return out

    def _prefix(self, orders: tuple[int, ...]) -> np.ndarray:
        """The volume filtered along the first ``len(orders)`` axes (kept for the other derivatives)."""
        if not orders:
            return self.volume
        if orders not in self._partial:
            self._partial[orders] = self._pass(self._prefix(orders[:-1]), len(orders) - 1, orders[-1])
        return self._partial[orders]

    def __call__(self, orders: tuple[int, int, int]) -> np.ndarray:
        """The derivative of order (oz, oy, ox) per physical length, float32 (Z, Y, X)."""
        return self._pass(self._prefix(orders[:2]), 2, orders[2])


def smooth(volume: np.ndarray, sigma: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """``volume`` smoothed at ``sigma`` (x pixels; per axis by ``spacing``)."""
    return _Derivatives(volume, sigma, spacing)((0, 0, 0))


def _eigen_into(entries: Sequence[np.ndarray], out: Sequence[np.ndarray]) -> None:
    """Descending eigenvalues of the symmetric matrices (zz, zy, zx, yy, yx, xx) into ``out`` (three arrays),
    a few slices at a time (bounds the float64 temporaries; ``out`` may be strided views)."""
    n_slices = entries[0].shape[0]
    step = max(1, _EIGEN_CHUNK // max(1, entries[0][0].size))
    for z0 in range(0, n_slices, step):
        part = slice(z0, min(n_slices, z0 + step))
        for target, values in zip(out, eigenvalues_3x3(*(e[part] for e in entries))):
            target[part] = values


def filter_volume(volume: np.ndarray, sigmas: Sequence[float], features: Sequence[str],
                  spacing: tuple[float, float, float], out: list[np.ndarray]) -> None:
    """The 3D features of one (Z, Y, X) float32 channel into ``out``: one array per output, ordered
    feature -> sigma -> component."""
    slots = iter(out)
    targets = {(f, i): [next(slots) for _ in OUTPUTS_3D[f]] for f in features for i in range(len(sigmas))}
    for i, sigma in enumerate(sigmas):
        _filter_scale(volume, sigma, features, spacing, {f: targets[f, i] for f in features})


def _filter_scale(volume: np.ndarray, sigma: float, features: Sequence[str],
                  spacing: tuple[float, float, float], out: dict[str, list[np.ndarray]]) -> None:
    """The features at one scale into ``out[feature]`` (its output arrays)."""
    d = _Derivatives(volume, sigma, spacing)
    if "gaussian" in out or "dog" in out:
        g = d((0, 0, 0))
        if "gaussian" in out:
            out["gaussian"][0][...] = g
        if "dog" in out:
            np.subtract(g, smooth(volume, DOG_RATIO * sigma, spacing), out=out["dog"][0])
        del g
    if "gradient_magnitude" in out or "structure_tensor" in out:
        grad = [d(o) for o in FIRST]
        if "gradient_magnitude" in out:
            target = out["gradient_magnitude"][0]
            target[...] = grad[0] * grad[0]
            target += grad[1] * grad[1]
            target += grad[2] * grad[2]
            np.sqrt(target, out=target)
        if "structure_tensor" in out:
            outer = OUTER_RATIO * sigma
            pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # zz zy zx yy yx xx
            tensor = [smooth(grad[a] * grad[b], outer, spacing) for a, b in pairs]
            _eigen_into(tensor, out["structure_tensor"])
            del tensor
        del grad
    if "log" in out or "hessian" in out:
        hessian = dict(zip(SECOND, (d(o) for o in SECOND))) if "hessian" in out else \
            {o: d(o) for o in ((2, 0, 0), (0, 2, 0), (0, 0, 2))}
        if "log" in out:
            np.add(hessian[2, 0, 0], hessian[0, 2, 0], out=out["log"][0])
            out["log"][0] += hessian[0, 0, 2]
        if "hessian" in out:
            _eigen_into([hessian[o] for o in SECOND], out["hessian"])
