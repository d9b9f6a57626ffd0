"""Image preparation shared by every extractor: dtype scaling, planes, channels, grey -> RGB."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vfm_features.errors import InputError
from vfm_features.validation import check_image, check_instance_mask

NORMALIZATIONS = ("auto", "dtype", "minmax", "percentile", "none")


def normalize_intensity(plane: np.ndarray, mode: str = "auto",
                        percentiles: tuple[float, float] = (1.0, 99.8)) -> np.ndarray:
    """Scale intensities to float32 roughly in [0, 1].

    ``auto``: uint8 is divided by 255, anything else is min-max scaled per image
    (microscopy uint16 rarely spans its dtype range); ``dtype``: divide by the
    dtype maximum (floats are left as they are); ``percentile``: map the given
    percentiles to 0 and 1 (robust to hot pixels); ``none``: only cast.
    """
    if mode not in NORMALIZATIONS:
        raise InputError(f"normalization={mode!r} is unknown; choose one of {NORMALIZATIONS}.")
    x = plane.astype(np.float32, copy=False)
    if mode == "none":
        return x
    if mode == "dtype" or (mode == "auto" and plane.dtype == np.uint8):
        if plane.dtype.kind in "ui":
            return x / np.float32(np.iinfo(plane.dtype).max)
        return x
    if mode == "percentile":
        lo, hi = np.percentile(x, percentiles)
    else:
        lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x)
    return (x - np.float32(lo)) / np.float32(hi - lo)


def to_planes(image: np.ndarray, axes: str | None = None) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """Split an image into 2D planes with a trailing channel axis (Y, X, C).

    Returns the planes and the shape of the stack axes (``()`` for a single 2D image).
    """
    arr, axes = check_image(image, axes=axes)
    order = [a for a in axes if a not in "YXC"] + ["Y", "X"] + (["C"] if "C" in axes else [])
    arr = np.transpose(arr, [axes.index(a) for a in order])
    if "C" not in axes:
        arr = arr[..., None]
    stack_shape = arr.shape[:-3]
    planes = list(arr.reshape((-1,) + arr.shape[-3:]))
    return planes, stack_shape


def check_volume_axes(axes: str | None, stack: tuple[int, ...]) -> None:
    """A stack whose objects are measured in 3D must be one volume: a single Z axis (``ZYX`` / ``ZYXC``)."""
    if len(stack) != 1 or "Z" not in (axes or "").upper():
        raise InputError(f"axes={axes!r} give a stack of shape {tuple(stack)}; objects are measured in a 2D "
                         "image or in one volume with axes 'ZYX' or 'ZYXC' (and a 3D instance mask). Pass time "
                         "points or other stacks one by one.")


def check_volume_stack(axes: str | None, stack: tuple[int, ...], name: str) -> None:
    """A volumetric extractor (3D filters) embeds one volume: a stack with a single Z axis (``ZYX`` / ``ZYXC``)."""
    if len(stack) != 1 or "Z" not in (axes or "").upper():
        what = "a single 2D image" if not stack else f"a stack of shape {tuple(stack)} with axes={axes!r}"
        raise InputError(f"{name} computes 3D features over one volume with axes 'ZYX' or 'ZYXC'; got {what}. "
                         "Use a 2D extractor (for filters: ndim=2) for 2D images, and pass time points or other "
                         "stacks one volume at a time.")


def volume_mask(mask: Any, volume_shape: tuple[int, int, int]) -> np.ndarray:
    """The checked 3D instance mask of a volume of ``volume_shape`` (Z, Y, X)."""
    if np.shape(mask) != tuple(volume_shape):
        raise InputError(f"The instance mask has shape {np.shape(mask)} but the volume is {tuple(volume_shape)} "
                         "(Z, Y, X); a volume needs a 3D instance mask of the same shape (an object keeps its id "
                         "across slices).")
    return check_instance_mask(mask, volume_shape)


def select_channels(plane: np.ndarray, channels: str | Sequence[int] = "sum") -> np.ndarray:
    """Reduce a (Y, X, C) plane: ``'sum'`` of channels (the seed's rule), ``'keep'``, or a subset of indices."""
    n = plane.shape[-1]
    if isinstance(channels, str):
        if channels == "sum":
            return plane.sum(axis=-1, keepdims=True, dtype=np.float32) if n > 1 else plane
        if channels in ("keep", "per_channel"):
            return plane
        raise InputError(f"channels={channels!r} is unknown; use 'sum', 'per_channel' or a list of channel indices.")
    idx = list(channels)
    bad = [i for i in idx if not -n <= int(i) < n]
    if not idx or bad:
        raise InputError(f"channels={list(channels)} does not fit an image with {n} channel(s).")
    return plane[..., idx]


def to_rgb(plane: np.ndarray) -> np.ndarray:
    """(Y, X, C) -> (Y, X, 3): grey is replicated; 3 channels kept; other counts summed to grey first."""
    c = plane.shape[-1]
    if c == 3:
        return plane
    grey = plane if c == 1 else plane.sum(axis=-1, keepdims=True)
    return np.repeat(grey, 3, axis=-1)
