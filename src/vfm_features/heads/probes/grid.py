"""Where a probe's queries and keys lie, in numpy: grids, position codes, key features, object centroids.

A probe works on two regular grids anchored at the image's top-left pixel: the
*query grid* of ``query_stride`` x ``query_stride`` pixel cells (1/8 of the image by
default) and the *key grid*, ``key_factor`` times finer. Cell ``i`` covers pixels
``[i * stride, (i + 1) * stride)``; the last cell may reach past the image. Because
cells have the same size and phase in every image, a probe trained on small
crops applies unchanged to large images, and a block whose origin is a multiple
of the query stride sees the very grid of the whole image. Positions and
distances are in pixels. Nothing here imports torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vfm_features.errors import InputError
from vfm_features.features.upsample import axis_taps, grid_coords

#: periods (pixels) of the sinusoidal position code: sin and cos of y and x at each -> 8 numbers
PE_PERIODS = (16.0, 64.0)
PE_DIM = 4 * len(PE_PERIODS)
#: most key cells read at once from a fine embedding (bounds memory when pooling)
_BAND_CELLS = 1 << 22


def grid_shape(image_shape: tuple[int, int], stride: int) -> tuple[int, int]:
    """Cells of a grid of about ``stride`` pixels that spans an image (at least one per axis)."""
    return max(1, math.ceil(image_shape[0] / stride)), max(1, math.ceil(image_shape[1] / stride))


def position_code(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sinusoidal code (len(ys), len(xs), PE_DIM) float32 of the pixel positions of a grid (rows ys, columns xs)."""
    yy, xx = np.meshgrid(np.asarray(ys, np.float64), np.asarray(xs, np.float64), indexing="ij")
    return point_code(np.stack([yy.ravel(), xx.ravel()], 1)).reshape(len(ys), len(xs), PE_DIM)


def point_code(points: np.ndarray) -> np.ndarray:
    """Sinusoidal code (n, PE_DIM) float32 of pixel positions (n, 2) as (y, x)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    parts = []
    for period in PE_PERIODS:
        w = 2 * np.pi / period
        for axis in (0, 1):
            parts += [np.sin(points[:, axis] * w), np.cos(points[:, axis] * w)]
    return np.stack(parts, -1).astype(np.float32)


def cell_centres(n: int, stride: float) -> np.ndarray:
    """Nominal pixel positions of the centres of ``n`` grid cells of ``stride`` pixels."""
    return (np.arange(n) + 0.5) * stride - 0.5


def key_features(embedding: Any, image: Any, upsampler: Any, stride: int, *,
                 rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None) -> np.ndarray:
    """The embedding's features (C, rows, cols) float32 on the key grid of ``stride``-pixel cells.

    Read through the upsampler, in the key cells ``rows`` x ``cols`` (default:
    every cell that touches the image). An embedding at least about as coarse as
    the key cells is read at each cell's centre (the mean of its four central
    pixels, so any upsampler that reads whole pixels works); a finer one (a
    full-resolution filter bank) is read at every pixel of the cell and averaged,
    so no detail aliases into the keys. Cells reaching past the image average the
    pixels inside it. Read in row bands to bound memory.
    """
    if embedding is None:
        raise InputError("This probe reads embeddings, but these samples keep feature rows only; train it through "
                         "a classifier or the evaluation harness, which keep embeddings for probes.")
    H, W = embedding.geometry.image_shape
    kh, kw = grid_shape((H, W), stride)
    r0, r1 = rows if rows is not None else (0, kh)
    c0, c1 = cols if cols is not None else (0, kw)
    C = upsampler.n_features(embedding)
    out = np.empty((C, r1 - r0, c1 - c0), np.float32)
    if min(float(s) for s in embedding.geometry.step) * 1.5 >= stride:
        centre = stride // 2  # the cell's central pixels are centre - 1 and centre (one pixel: 0)
        ys = np.clip(np.arange(r0, r1)[:, None] * stride + np.array([max(centre - 1, 0), centre]), 0, H - 1)
        xs = np.clip(np.arange(c0, c1)[:, None] * stride + np.array([max(centre - 1, 0), centre]), 0, W - 1)
        yy = np.broadcast_to(ys[:, None, :, None], (r1 - r0, c1 - c0, 2, 2))
        xx = np.broadcast_to(xs[None, :, None, :], (r1 - r0, c1 - c0, 2, 2))
        coords = np.stack([yy.ravel(), xx.ravel()], 1)
        flat = out.reshape(C, -1)
        step = max(4, _BAND_CELLS // max(C, 1) // 4 * 4)  # whole cells (4 pixels each) per read
        for s0 in range(0, len(coords), step):
            part = upsampler.sparse(embedding, image, coords[s0:s0 + step])
            flat[:, s0 // 4:s0 // 4 + len(part) // 4] = part.reshape(-1, 4, C).mean(1).T
        return out
    band = max(1, _BAND_CELLS // max(1, C * (c1 - c0) * stride * stride))
    x_stop = min(c1 * stride, W)
    counts_x = np.minimum(stride, np.maximum(0, W - np.arange(c0, c1) * stride)).astype(np.float32)
    for b0 in range(r0, r1, band):
        b1 = min(r1, b0 + band)
        py0, py1 = b0 * stride, min(b1 * stride, H)
        fine = upsampler.dense(embedding, image, (H, W), (slice(py0, py1), slice(c0 * stride, x_stop)))
        padded = np.zeros((C, (b1 - b0) * stride, (c1 - c0) * stride), np.float32)
        padded[:, :py1 - py0, :x_stop - c0 * stride] = fine
        counts_y = np.minimum(stride, np.maximum(0, H - np.arange(b0, b1) * stride)).astype(np.float32)
        sums = padded.reshape(C, b1 - b0, stride, c1 - c0, stride).sum((2, 4))
        out[:, b0 - r0:b1 - r0] = sums / np.maximum(counts_y[:, None] * counts_x[None, :], 1)
    return out


def band_taps(n_out: int, n_image: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Bilinear taps from image pixels (a probe's decoder cells) to the cells ``lo:hi`` of an ``n_out`` grid.

    The output grid spans the ``n_image`` pixels of the image, as every
    ``out_shape`` grid does. Returns ``(first, second, frac, d0, d1)``: each output
    cell reads pixels ``first`` and ``second`` (relative to ``d0``) with weight
    ``frac`` on the second; it reads only pixels ``d0:d1``.
    """
    centres = grid_coords(n_image, n_out)[lo:hi]
    if not len(centres):
        return (np.zeros(0, np.intp),) * 2 + (np.zeros(0, np.float32), 0, 0)
    first, second, frac = axis_taps(centres, n_image)
    d0, d1 = int(first.min()), int(second.max()) + 1
    return first - d0, second - d0, frac, d0, d1


def lerp(values: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray, np.ndarray, int, int]) -> np.ndarray:
    """Linear interpolation of ``values`` along ``axis`` with :func:`band_taps` (2-tap gathers, no BLAS)."""
    first, second, frac = taps[:3]
    if not np.any(frac) and np.array_equal(first, np.arange(values.shape[axis])):
        return values
    shape = [1] * values.ndim
    shape[axis] = -1
    f = frac.reshape(shape)
    return values.take(first, axis) * (1 - f) + values.take(second, axis) * f


def object_centroids(mask: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Centroids (n, 2) float64 (y, x) of the objects ``ids`` of an instance mask; an absent id is an error."""
    mask = np.asarray(mask)
    ids = np.asarray(ids, np.int64)
    present, inverse = np.unique(mask.ravel(), return_inverse=True)
    pos = np.searchsorted(present, ids)
    if len(ids) and (np.any(pos >= len(present)) or np.any(present[np.minimum(pos, len(present) - 1)] != ids)):
        raise InputError("Some object ids are not in their instance mask; pass the mask the ids come from.")
    yy, xx = np.indices(mask.shape)
    counts = np.bincount(inverse, minlength=len(present)).astype(np.float64)
    cy = np.bincount(inverse, weights=yy.ravel(), minlength=len(present)) / np.maximum(counts, 1)
    cx = np.bincount(inverse, weights=xx.ravel(), minlength=len(present)) / np.maximum(counts, 1)
    return np.stack([cy[pos], cx[pos]], 1) if len(ids) else np.zeros((0, 2))
