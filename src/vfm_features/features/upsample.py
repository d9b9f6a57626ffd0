"""Reading embedding features at image pixels: dense on a grid, or sparse at coordinates.

Bilinear interpolation is separable, so the dense read is two small matrix
products per channel block (``Wy @ E @ Wx.T``); the sparse read gathers the four
neighbouring cells of each requested pixel. Neither builds a full-resolution
C x H x W map unless the caller asks for one.
"""

from __future__ import annotations

import numpy as np

from vfm_features.errors import InputError
from vfm_features.geometry import Embedding


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


class BilinearUpsampler:
    """Bilinear interpolation of the embedding grid: parameter-free, works for any extractor."""

    name = "bilinear"

    def dense(self, embedding: Embedding, out_shape: tuple[int, int] | None = None,
              rows: slice | None = None) -> np.ndarray:
        """Features on an ``out_shape`` grid spanning the image (default: the image shape).

        ``rows`` restricts the output to a band of rows, so that callers can work in
        tiles with bounded memory. Returns (C, rows, W') float32.
        """
        geom = embedding.geometry
        H, W = geom.image_shape
        out_shape = tuple(out_shape) if out_shape is not None else (H, W)
        ys = grid_coords(H, out_shape[0])
        xs = grid_coords(W, out_shape[1])
        if rows is not None:
            ys = ys[rows]
        data = embedding.data
        if geom.is_identity and out_shape == (H, W):
            r = rows if rows is not None else slice(None)
            return np.ascontiguousarray(data[:, r, :], dtype=np.float32)
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

    def sparse(self, embedding: Embedding, coords: np.ndarray) -> np.ndarray:
        """Features at image pixel ``coords`` (N, 2) as (N, C) float32."""
        coords = np.asarray(coords, dtype=np.float64)
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise InputError(f"coords must have shape (N, 2) as (y, x); got {coords.shape}.")
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


_UPSAMPLERS = {"bilinear": BilinearUpsampler}


def get_upsampler(name: str | object = "bilinear"):
    """An upsampler by name ('bilinear'), or the object itself if it already is one."""
    if not isinstance(name, str):
        return name
    try:
        return _UPSAMPLERS[name]()
    except KeyError:
        raise InputError(f"Unknown upsampler {name!r}; known: {sorted(_UPSAMPLERS)}.") from None
