"""The upsampler seam: reading embedding features at image pixels, dense on a grid or sparse at coordinates.

An :class:`Upsampler` is a registered plugin (``vfm_features_upsamplers`` hook)
that sees the image as well as the embedding, so learned, image-guided
upsamplers (AnyUp, JAFAR) fit the same seam as bilinear interpolation. Its
:meth:`Upsampler.signature` goes into classifier signatures and cache keys.

This module also holds the bilinear arithmetic itself (:func:`bilinear_dense`,
:func:`bilinear_sparse`), shared by the ``bilinear`` upsampler and by
:func:`resize_probabilities`, the fixed function that brings class
probabilities from a working grid to the image. Both read the two neighbouring
cells of every pixel along each axis (2-tap gathers of whole channel vectors)
and combine them in the same order, so the dense read equals the sparse read at
the same pixels bit for bit. The dense read writes pixel-major memory (rows,
cols, C) and returns it as a (C, rows, cols) view, so a head that wants one row
of features per pixel gets them without a copy. Neither uses BLAS threads (they
thrash when another program holds the cores) nor builds a full-resolution
C x H x W map unless asked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from vfm_features.component import Component
from vfm_features.errors import InputError
from vfm_features.geometry import Embedding, EmbeddingGeometry


def grid_coords(image_len: int, out_len: int) -> np.ndarray:
    """Image coordinates of the centres of ``out_len`` pixels spanning an axis of ``image_len`` pixels."""
    if out_len == image_len:
        return np.arange(image_len, dtype=np.float64)
    return (np.arange(out_len) + 0.5) * (image_len / out_len) - 0.5


def interp_matrix(cell_pos: np.ndarray, n_cells: int) -> np.ndarray:
    """Linear-interpolation weights (len(cell_pos), n_cells), clamped at the borders."""
    pos = np.clip(np.asarray(cell_pos, dtype=np.float64), 0, n_cells - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_cells - 1)
    frac = (pos - lo).astype(np.float32)
    w = np.zeros((len(pos), n_cells), dtype=np.float32)
    rows = np.arange(len(pos))
    np.add.at(w, (rows, lo), 1 - frac)
    np.add.at(w, (rows, hi), frac)
    return w


Region = "tuple[slice, slice] | None"


def region_slices(region: Any, shape: tuple[int, int]) -> tuple[slice, slice]:
    """``region`` (None, a row slice, or (row slice, column slice)) of a grid of ``shape`` as two bounded slices."""
    if region is None:
        return slice(0, shape[0]), slice(0, shape[1])
    if isinstance(region, slice):
        region = (region, slice(None))
    rows, cols = region
    return slice(*rows.indices(shape[0])[:2]), slice(*cols.indices(shape[1])[:2])


_region = region_slices


def axis_taps(cell_pos: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two cells each position reads and the weight of the second: ``(lo, hi, frac)``, clamped at the borders."""
    pos = np.clip(np.asarray(cell_pos, dtype=np.float64), 0, n_cells - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n_cells - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def _lerp_rows(src: np.ndarray, lo: np.ndarray, hi: np.ndarray, frac: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = src[lo[i]] * (1 - frac[i]) + src[hi[i]] * frac[i]`` row by row, in float32, without temporaries."""
    keep = (1 - frac).astype(np.float32)
    tmp = np.empty(out.shape[1:], np.float32)
    for i in range(len(lo)):
        np.multiply(src[lo[i]], keep[i], out=out[i])
        np.multiply(src[hi[i]], frac[i], out=tmp)
        np.add(out[i], tmp, out=out[i])


def _lerp_columns(src: np.ndarray, lo: np.ndarray, hi: np.ndarray, frac: np.ndarray, out: np.ndarray) -> None:
    """``out[:, k] = src[:, lo[k]] * (1 - frac[k]) + src[:, hi[k]] * frac[k]`` for (r, w, C) -> (r, W', C)."""
    keep = (1 - frac).astype(np.float32)[:, None]
    frac = frac[:, None]
    tmp = np.empty(out.shape[1:], np.float32)
    for j in range(src.shape[0]):
        np.multiply(src[j, lo], keep, out=out[j])
        np.multiply(src[j, hi], frac, out=tmp)
        np.add(out[j], tmp, out=out[j])


def bilinear_dense(embedding: Embedding, out_shape: tuple[int, int] | None = None,
                   region: Any = None) -> np.ndarray:
    """Bilinear features (C, rows, cols) on an ``out_shape`` grid spanning the image (default: its shape).

    ``region`` = (row slice, column slice) of that grid (or a row slice) limits
    the output, so callers work in bands or blocks with bounded memory. The
    result is float32 in pixel-major memory: ``np.moveaxis(out, 0, -1)`` is a
    C-contiguous (rows, cols, C) array.
    """
    geom = embedding.geometry
    H, W = geom.image_shape
    out_shape = tuple(int(s) for s in out_shape) if out_shape is not None else (H, W)
    rows, cols = region_slices(region, out_shape)
    data = embedding.data
    if geom.is_identity and out_shape == (H, W):
        return np.ascontiguousarray(data[:, rows, cols], dtype=np.float32)
    C, h, w = data.shape
    ys = grid_coords(H, out_shape[0])[rows]
    xs = grid_coords(W, out_shape[1])[cols]
    y0, y1, fy = axis_taps(geom.cell_coords(np.stack([ys, np.zeros_like(ys)], 1))[:, 0], h)
    x0, x1, fx = axis_taps(geom.cell_coords(np.stack([np.zeros_like(xs), xs], 1))[:, 1], w)
    out = np.empty((len(ys), len(xs), C), np.float32)
    if out.size == 0:
        return np.moveaxis(out, -1, 0)
    # only the embedding rows this band reads take part: (r, w, C), channels last
    lo, hi = int(y0.min()), int(y1.max()) + 1
    band = np.ascontiguousarray(np.moveaxis(data[:, lo:hi], 0, -1), dtype=np.float32)
    # along x for every embedding row used, then along y for every output row (the sparse read's order)
    across = np.empty((hi - lo, len(xs), C), np.float32)
    _lerp_columns(band, x0, x1, fx, across)
    _lerp_rows(across, y0 - lo, y1 - lo, fy, out)
    return np.moveaxis(out, -1, 0)


def bilinear_sparse(embedding: Embedding, coords: np.ndarray) -> np.ndarray:
    """Bilinear features at image pixel ``coords`` (N, 2) as (N, C) float32."""
    coords = check_coords(coords)
    data = embedding.data
    C, h, w = data.shape
    cc = embedding.geometry.cell_coords(coords)
    cy = np.clip(cc[:, 0], 0, h - 1)
    cx = np.clip(cc[:, 1], 0, w - 1)
    y0 = np.floor(cy).astype(np.int64)
    x0 = np.floor(cx).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (cy - y0).astype(np.float32)[:, None]
    fx = (cx - x0).astype(np.float32)[:, None]
    flat = data.reshape(C, -1).T  # (h*w, C) view when contiguous
    v00 = flat[y0 * w + x0]
    if np.all(fy == 0) and np.all(fx == 0):
        return np.asarray(v00, dtype=np.float32)
    v01 = flat[y0 * w + x1]
    v10 = flat[y1 * w + x0]
    v11 = flat[y1 * w + x1]
    top = v00 * (1 - fx) + v01 * fx
    bottom = v10 * (1 - fx) + v11 * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32, copy=False)


def check_coords(coords: Any) -> np.ndarray:
    """Pixel coordinates as an (N, 2) float64 array of (y, x)."""
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InputError(f"coords must have shape (N, 2) as (y, x); got {coords.shape}.")
    return coords


def resize_probabilities(proba: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Class probabilities (K, h, w) on a grid spanning the image -> (K, *out_shape), bilinear."""
    K, h, w = proba.shape
    H, W = (int(s) for s in out_shape)
    if (h, w) == (H, W):
        return proba
    coarse = Embedding(proba, EmbeddingGeometry((H, W), step=(H / h, W / w)))
    return bilinear_dense(coarse, (H, W))


class Upsampler(Component, ABC):
    """Reads features of an :class:`Embedding` at image pixels, seeing the image it came from.

    Built by the registry as ``factory(spec, **options)``; a constructor only
    stores its options (weights load lazily). ``image`` is the (Y, X, C) plane
    the embedding was computed from, in its own dtype. Upsamplers must be safe to
    call from several threads.
    """

    RUNTIME_OPTIONS: tuple[str, ...] = ("device", "batch_size", "progress", "chunk_size", "n_threads")
    TRUST_OPTIONS: tuple[str, ...] = ("weights", "trust_checkpoint")
    _SIGNATURE_KEY = "upsampler"

    def n_features(self, embedding: Embedding) -> int:
        """Channels of the features read from ``embedding`` (the same by default)."""
        return embedding.n_features

    @abstractmethod
    def dense(self, embedding: Embedding, image: np.ndarray | None, out_shape: tuple[int, int] | None = None,
              region: Any = None) -> np.ndarray:
        """Features (C', rows, cols) float32 on an ``out_shape`` grid spanning the image, in ``region``."""

    @abstractmethod
    def sparse(self, embedding: Embedding, image: np.ndarray | None, coords: np.ndarray) -> np.ndarray:
        """Features (N, C') float32 at image pixel ``coords`` (N, 2) as (y, x)."""
