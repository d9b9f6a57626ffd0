"""The package's own cover image: the test input beside its predicted classes, 2:1, as PNG bytes."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["cover_png"]

_SIDE = 128
# one colour per class (repeated past eight)
_COLOURS = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25], [145, 30, 180],
                     [70, 240, 240], [245, 130, 48], [128, 128, 128]], np.uint8)


def _square(a: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resample of a (y, x, ...) array to _SIDE x _SIDE."""
    ys = (np.arange(_SIDE) * a.shape[0] // _SIDE).clip(0, a.shape[0] - 1)
    xs = (np.arange(_SIDE) * a.shape[1] // _SIDE).clip(0, a.shape[1] - 1)
    return a[ys][:, xs]


def cover_png(image: np.ndarray, proba: np.ndarray) -> bytes:
    """(c, y, x) input and (K, y, x) probabilities -> a 2:1 PNG: grey input left, class colours right."""
    import imageio.v3 as iio

    grey = np.asarray(image, np.float64).sum(axis=0)
    lo, hi = np.percentile(grey, [1, 99])
    grey = np.clip((grey - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    left = np.repeat((_square(grey) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    right = _square(_COLOURS[np.argmax(proba, axis=0) % len(_COLOURS)])
    buffer = io.BytesIO()
    iio.imwrite(buffer, np.concatenate([left, right], axis=1), extension=".png")
    return buffer.getvalue()
