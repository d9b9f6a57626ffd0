"""The guidance image AnyUp reads: the plane the embedding came from, as the authors feed it (numpy only).

The authors pass an RGB image normalised with the ImageNet mean and standard
deviation, like the input of the backbones they upsample. A microscopy plane is
first brought to three channels by the extractors' own rule (``channels="sum"``:
all channels summed to grey and replicated; ``"rgb"``: a 3-channel image kept as
colour, other counts summed) and scaled to 0..1 (``normalization``, as the model
extractors do, then clipped).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm_features import InputError
from vfm_features.preprocess import NORMALIZATIONS, normalize_intensity, select_channels, to_rgb

from ._spec import IMAGENET_MEAN, IMAGENET_STD

CHANNEL_RULES = ("sum", "rgb")


def check_channel_rule(channels: Any) -> str:
    if channels not in CHANNEL_RULES:
        raise InputError(f"channels={channels!r} is not a channel rule of the anyup upsampler; use 'sum' (all "
                         "channels summed to grey, the extractors' default) or 'rgb' (a 3-channel image kept as "
                         "colour).")
    return channels


def check_normalization(normalization: Any) -> str:
    if normalization not in NORMALIZATIONS:
        raise InputError(f"normalization={normalization!r} is unknown; choose one of {NORMALIZATIONS}.")
    return normalization


def as_plane(image: Any, image_shape: tuple[int, int]) -> np.ndarray:
    """The (Y, X, C) plane the embedding was computed from; a clear error when it is missing or of another shape."""
    if image is None:
        raise InputError("The anyup upsampler is guided by the image: pass the (Y, X, C) plane the embedding was "
                         "computed from (classifiers do this themselves).")
    plane = np.asarray(image)
    if plane.ndim == 2:
        plane = plane[..., None]
    if plane.ndim != 3 or plane.shape[-1] < 1 or plane.dtype.kind not in "buif":
        raise InputError(f"The image given to the anyup upsampler has shape {plane.shape} and dtype {plane.dtype}; "
                         "pass the numeric (Y, X, C) plane the embedding was computed from.")
    if tuple(plane.shape[:2]) != tuple(int(s) for s in image_shape):
        raise InputError(f"The image given to the anyup upsampler is {plane.shape[0]} x {plane.shape[1]} pixels but "
                         f"the embedding was computed from a {image_shape[0]} x {image_shape[1]} image; pass the plane "
                         "the embedding came from (the same crop, block or tile).")
    return plane


def guidance(plane: np.ndarray, channels: str, normalization: str) -> np.ndarray:
    """(Y, X, 3) float32: the plane by the channel rule, scaled to 0..1, normalised with ImageNet mean and std."""
    rgb = to_rgb(select_channels(plane, "sum") if channels == "sum" else plane)
    scaled = np.clip(normalize_intensity(rgb, normalization), 0, 1).astype(np.float32, copy=False)
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray((scaled - mean) / std, dtype=np.float32)
