"""The upsampler seam: reading embedding features at image pixels, dense on a grid or sparse at coordinates.

An :class:`Upsampler` is a registered plugin (``vfm_features_upsamplers`` hook)
that sees the image as well as the embedding, so learned, image-guided
upsamplers (AnyUp, JAFAR) fit the same seam as bilinear interpolation. Its
:meth:`Upsampler.signature` goes into classifier signatures and cache keys.

This module also holds the bilinear arithmetic itself (:func:`bilinear_dense`,
:func:`bilinear_sparse`), shared by the ``bilinear`` upsampler and by
:func:`resize_probabilities`, the fixed function that brings class
probabilities from a working grid to the image. Bilinear interpolation is
separable, so the dense read is two small matrix products per channel block
(``Wy @ E @ Wx.T``); the sparse read gathers the four neighbouring cells of each
requested pixel. Neither builds a full-resolution C x H x W map unless asked.
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


def _region(region: Any, shape: tuple[int, int]) -> tuple[slice, slice]:
    if region is None:
        return slice(0, shape[0]), slice(0, shape[1])
    if isinstance(region, slice):
        region = (region, slice(None))
    rows, cols = region
    return slice(*rows.indices(shape[0])[:2]), slice(*cols.indices(shape[1])[:2])


def bilinear_dense(embedding: Embedding, out_shape: tuple[int, int] | None = None,
                   region: Any = None) -> np.ndarray:
    """Bilinear features (C, rows, cols) on an ``out_shape`` grid spanning the image (default: its shape).

    ``region`` = (row slice, column slice) of that grid (or a row slice) limits
    the output, so callers work in bands or blocks with bounded memory.
    """
    geom = embedding.geometry
    H, W = geom.image_shape
    out_shape = tuple(int(s) for s in out_shape) if out_shape is not None else (H, W)
    rows, cols = _region(region, out_shape)
    data = embedding.data
    if geom.is_identity and out_shape == (H, W):
        return np.ascontiguousarray(data[:, rows, cols], dtype=np.float32)
    ys = grid_coords(H, out_shape[0])[rows]
    xs = grid_coords(W, out_shape[1])[cols]
    cy = geom.cell_coords(np.stack([ys, np.zeros_like(ys)], 1))[:, 0]
    cx = geom.cell_coords(np.stack([np.zeros_like(xs), xs], 1))[:, 1]
    wy = interp_matrix(cy, data.shape[1])
    wx = interp_matrix(cx, data.shape[2])
    # only the embedding rows this band of output rows reads from take part
    used = np.flatnonzero(wy.any(axis=0))
    lo, hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
    # (C, rows used, w) @ (w, W') -> (C, rows used, W'); then (H', rows used) @ ... -> (C, H', W')
    tmp = np.matmul(data[:, lo:hi].astype(np.float32, copy=False), wx.T)
    return np.matmul(wy[:, lo:hi], tmp)


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
