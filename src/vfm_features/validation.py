"""Input checks run at public entry points. Messages: what is wrong, got X, expected Y, fix."""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm_features.errors import InputError, NotFittedError

_AXES_HELP = (
    "Pass a 2D image (Y, X), a multi-channel image with axes='YXC' or 'CYX', "
    "or a stack with axes='ZYX' / 'ZYXC'."
)


def check_image(image: Any, *, axes: str | None = None, name: str = "image") -> tuple[np.ndarray, str]:
    """Return ``image`` as a numpy array together with its axis string.

    Accepted: ``YX`` (grey), ``YXC`` (C <= 4 is guessed as channels-last when
    ``axes`` is omitted), ``CYX`` and stacks ``ZYX`` / ``ZYXC``; the latter need
    ``axes`` because a 3D array is ambiguous between a stack and channels.
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "uif":
        raise InputError(f"{name} has dtype {arr.dtype}; expected an integer or float array.")
    if axes is None:
        if arr.ndim == 2:
            axes = "YX"
        elif arr.ndim == 3 and arr.shape[-1] <= 4 and arr.shape[0] > 4:
            axes = "YXC"
        elif arr.ndim == 3 and arr.shape[0] <= 4 and arr.shape[-1] > 4:
            axes = "CYX"
        else:
            raise InputError(
                f"{name} has shape {arr.shape}, which is ambiguous or unsupported without an axis order. "
                + _AXES_HELP
            )
    axes = axes.upper()
    if len(axes) != arr.ndim or set(axes) - set("ZYXCT") or len(set(axes)) != len(axes):
        raise InputError(f"axes={axes!r} does not fit {name} of shape {arr.shape}. " + _AXES_HELP)
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"axes={axes!r} lacks Y or X. " + _AXES_HELP)
    if arr.size == 0 or arr.shape[axes.index("Y")] < 2 or arr.shape[axes.index("X")] < 2:
        raise InputError(f"{name} of shape {arr.shape} is empty or smaller than 2 x 2 pixels; "
                         "pass an image of at least 2 x 2 pixels (pad a 1-pixel line, e.g. with np.pad).")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise InputError(
            f"{name} contains {n_bad} NaN or infinite value(s); replace them "
            "(for example with np.nan_to_num) before extracting features."
        )
    return arr, axes


def check_labels(labels: Any, image_shape: tuple[int, int], *, name: str = "labels") -> np.ndarray:
    """Sparse class labels: 0 = unlabelled, 1..K = classes, same YX shape as the image."""
    lab = np.asarray(labels)
    if lab.shape != tuple(image_shape):
        raise InputError(
            f"{name} has shape {lab.shape} but the image is {tuple(image_shape)} (Y, X); "
            "draw the labels on the same grid as the image."
        )
    if lab.dtype.kind == "f":
        if not np.isfinite(lab).all() or not np.all(lab == np.round(lab)):
            raise InputError(f"{name} must hold whole numbers (0 = unlabelled, 1..K = classes).")
        lab = lab.astype(np.int64)
    elif lab.dtype == bool:
        lab = lab.astype(np.int64)
    elif lab.dtype.kind not in "ui":
        raise InputError(f"{name} has dtype {lab.dtype}; expected integers (0 = unlabelled, 1..K).")
    if lab.dtype == np.uint64 and lab.size and lab.max() > np.iinfo(np.int64).max:
        raise InputError(f"{name} has ids above 2**63; class labels are small integers 1..K.")
    if lab.size and lab.min() < 0:
        raise InputError(f"{name} contains negative ids (min {lab.min()}); use 0 for unlabelled and 1..K for classes.")
    return lab


MAX_CLASSES = 256


def check_classes_present(classes: np.ndarray, *, what: str = "labels", min_classes: int = 2) -> None:
    """Refuse training data with no labels, a single class, or implausibly many classes."""
    if len(classes) == 0:
        raise InputError(f"The {what} contain no labelled pixels or objects; label at least two classes (ids >= 1).")
    if len(classes) < min_classes:
        raise InputError(
            f"The {what} contain only class {int(classes[0])}; a classifier needs at least "
            f"{min_classes} classes. Label some pixels or objects of another class."
        )
    if len(classes) > MAX_CLASSES or classes.max() > 65535:
        raise InputError(
            f"The {what} hold {len(classes)} different ids up to {int(classes.max())}, out of range for "
            f"class labels (at most {MAX_CLASSES} classes with ids <= 65535); was an instance mask passed as labels?"
        )


def check_instance_mask(mask: Any, image_shape: tuple[int, int], *, name: str = "instance mask") -> np.ndarray:
    """Instance masks: 0 = background, positive ids = objects."""
    m = np.asarray(mask)
    if m.shape != tuple(image_shape):
        raise InputError(f"{name} has shape {m.shape} but the image is {tuple(image_shape)} (Y, X).")
    if m.dtype.kind == "f":
        if not np.all(m == np.round(m)):
            raise InputError(f"{name} must hold integer object ids.")
        m = m.astype(np.int64)
    elif m.dtype.kind not in "uib":
        raise InputError(f"{name} has dtype {m.dtype}; expected integer object ids.")
    if m.dtype == np.uint64 and m.size and m.max() > np.iinfo(np.int64).max:
        raise InputError(f"{name} has object ids above 2**63; relabel it (skimage.segmentation.relabel_sequential).")
    if m.size and m.min() < 0:
        raise InputError(f"{name} contains negative ids (min {m.min()}); use 0 for background and positive object ids.")
    return m.astype(np.int64, copy=False)


def check_is_fitted(estimator: Any, attribute: str = "classes_") -> None:
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"This {type(estimator).__name__} is not fitted yet; call fit(...) before predicting."
        )
