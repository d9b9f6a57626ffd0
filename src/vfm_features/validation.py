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
        if not np.isfinite(lab).all():
            raise InputError(f"{name} contains NaN or infinite values; use 0 for unlabelled and 1..K for classes.")
        if not np.all(lab == np.round(lab)):
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
        if not np.isfinite(m).all():
            raise InputError(f"{name} contains NaN or infinite values; an instance mask holds whole-number "
                             "object ids (0 = background).")
        if not np.all(m == np.round(m)):
            raise InputError(f"{name} must hold whole-number object ids; it has fractional values.")
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


def warn_if_instance_mask(labels: np.ndarray, *, name: str = "labels", min_classes: int = 10) -> None:
    """Warn when sparse class labels look like an instance mask: many classes, each one connected blob."""
    import warnings

    from scipy import ndimage as ndi

    classes = np.unique(labels[labels > 0])
    if len(classes) < min_classes:
        return
    blobs = 0
    for k in classes:
        _, n = ndi.label(labels == k)
        blobs += n == 1
    if blobs >= 0.9 * len(classes):
        warnings.warn(
            f"The {name} hold {len(classes)} classes and {blobs} of them are a single connected blob: this looks "
            "like an instance mask (one id per object), not class labels (1..K per class). For objects use "
            "ObjectClassifier with the mask as instances; for pixels draw class labels.", UserWarning, stacklevel=4)


# -- parameters ----------------------------------------------------------------------------------------------
STATS = ("mean", "std", "min", "max")


def check_stats(stats: Any) -> tuple[str, ...]:
    """A non-empty sequence of distinct names from :data:`STATS`."""
    if isinstance(stats, str):
        stats = (stats,)
    try:
        stats = tuple(stats)
    except TypeError:
        raise InputError(f"stats must be a list of {STATS}; got {stats!r}.") from None
    bad = [s for s in stats if s not in STATS]
    if bad or not stats or len(set(stats)) != len(stats):
        raise InputError(f"stats={list(stats)} is not valid; choose one or more of {STATS}, each once.")
    return stats


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value: Any, name: str, *, low: int | None = 1, allow_none: bool = False,
              hint: str = "") -> int | None:
    """A whole number >= ``low`` (or None when allowed); floats with whole values are accepted."""
    if value is None and allow_none:
        return None
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        value = int(value)
    if not _is_int(value) or (low is not None and value < low):
        expected = f"a whole number >= {low}" if low is not None else "a whole number"
        raise InputError(f"{name}={value!r} is not valid; expected {expected}{' or None' if allow_none else ''}"
                         f"{'. ' + hint if hint else '.'}")
    return int(value)


def check_budget(budget: Any, name: str = "budget") -> int | None:
    """A positive number of labels, or None for all of them."""
    return check_int(budget, name, low=1, allow_none=True, hint="None uses every label")


def check_n_jobs(n_jobs: Any) -> int | None:
    """None (one thread), -1 (all cores), -k (all but k-1) or a positive thread count; never 0."""
    if n_jobs is None:
        return None
    value = check_int(n_jobs, "n_jobs", low=None)
    if value == 0:
        raise InputError("n_jobs=0 is not valid; use a positive number of threads, -1 for all cores, or None for one.")
    return value


def check_shape_pair(value: Any, name: str, *, allow_none: bool = True) -> tuple[int, int] | None:
    """Two positive whole numbers (rows, columns), or None."""
    if value is None and allow_none:
        return None
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(_is_int(v) and v >= 1 for v in pair):
        raise InputError(f"{name}={value!r} is not valid; expected two positive whole numbers (rows, columns)"
                         f"{', or None' if allow_none else ''}.")
    return int(pair[0]), int(pair[1])


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def check_options_dict(value: Any, name: str) -> dict:
    """None or a mapping with string keys -> dict."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InputError(f"{name} must be a dict of option names to values (or None); got {value!r}.")
    return dict(value)


def check_random_state(value: Any) -> int | None:
    if value is None:
        return None
    return check_int(value, "random_state", low=0, hint="use None or a seed >= 0")


def check_name_or_instance(value: Any, name: str, kind: str) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{name}={value!r} is not valid; give a registered {kind} name (see 'vfm-features list') "
                         f"or a {kind} instance.")
    return value


CHANNEL_MODES = ("sum", "rgb", "per_channel")


def check_channels(channels: Any, modes: tuple[str, ...] = CHANNEL_MODES) -> str | tuple[int, ...]:
    """A channel mode of ``modes``, or channel indices as a tuple of ints (the one channel parser)."""
    if isinstance(channels, str):
        if channels not in modes:
            raise InputError(f"channels={channels!r} is unknown; use one of {modes} or a list of channel indices.")
        return channels
    try:
        idx = tuple(int(c) for c in channels)
        if any(isinstance(c, bool) or c != i for c, i in zip(channels, idx)):
            raise ValueError("not whole numbers")
    except (TypeError, ValueError):
        raise InputError(f"channels must be one of {modes} or a list of channel indices; got {channels!r}.") from None
    if not idx:
        raise InputError("channels=[] selects nothing; pass at least one channel index.")
    return idx
