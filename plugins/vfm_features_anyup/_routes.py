"""The two ways AnyUp answers: at image pixels (the default), or on a fixed working grid (the seed's way).

* **pixels**: the output is AnyUp at full image resolution (the authors'
  ``output_size`` = image size). :func:`at_pixels` answers at scattered pixels
  (training reads only the labelled ones); :func:`pixel_block` answers a
  rectangle of pixels, tile by tile, sharing the query encodings of neighbours.
* **grid**: the output is AnyUp on a ``grid`` of cells spanning the image (the
  authors' ``output_size=grid``: query encodings averaged over each cell's
  pixels); :func:`grid_block` answers a rectangle of that grid, and the caller
  reads it at pixels by bilinear interpolation.

Work is cut into chunks of at most ``chunk`` queries (scattered pixels, or tiles
of about ``chunk`` cells); the chunking changes how much is held at once, not the
result.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._attention import KeyState, attend, convolve_queries, patches_of
from ._encoder import ImageState, query_field, query_field_rect
from ._grid import pool_bins, pool_matrix
from ._spec import QK_DIM, WINDOW_RATIO

_OFFSETS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], np.int64)


def tiles(rows: tuple[int, int], cols: tuple[int, int], chunk: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Tiles of about ``chunk`` cells covering rows x cols."""
    (r0, r1), (c0, c1) = rows, cols
    tw = max(1, min(c1 - c0, math.isqrt(chunk)))
    th = max(1, min(r1 - r0, chunk // tw))
    return [((y, min(r1, y + th)), (x, min(c1, x + tw))) for y in range(r0, r1, th) for x in range(c0, c1, tw)]


def _windows(ks: KeyState, ys: np.ndarray, xs: np.ndarray, out_shape: tuple[int, int]) -> tuple[Any, Any]:
    ay, ax = ks.axes
    rows = ay.windows(ay.positions(ys, out_shape[0]), WINDOW_RATIO)
    cols = ax.windows(ax.positions(xs, out_shape[1]), WINDOW_RATIO)
    return rows, cols


def at_pixels(params: dict[str, Any], st: ImageState, ks: KeyState, ys: np.ndarray, xs: np.ndarray,
              chunk: int) -> Any:
    """(n, C) AnyUp features at pixels (ys, xs), ``chunk`` queries at a time."""
    import torch

    H, W = st.shape
    device = st.guide.device
    out = torch.empty(len(ys), ks.values.shape[2], device=device)
    for start in range(0, len(ys), chunk):
        y, x = ys[start:start + chunk], xs[start:start + chunk]
        ny, nx = y[:, None] + _OFFSETS[:, 0], x[:, None] + _OFFSETS[:, 1]  # (n, 9) neighbours
        inside = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
        flat = np.where(inside, ny * W + nx, -1)
        pixels, index = np.unique(flat[inside], return_inverse=True)
        table = torch.zeros(len(pixels) + 1, QK_DIM, device=device)  # the last row: zeros outside the image
        if len(pixels):
            table[:-1] = query_field(params, st, torch.as_tensor(pixels // W, device=device),
                                     torch.as_tensor(pixels % W, device=device))
        lookup = np.full(flat.shape, len(pixels), np.int64)
        lookup[inside] = index.reshape(-1)
        queries = convolve_queries(params, table[torch.as_tensor(lookup, device=device)])
        rows, cols = _windows(ks, y, x, (H, W))
        out[start:start + len(y)] = attend(params, ks, queries, rows, cols)
    return out


def pixel_block(params: dict[str, Any], st: ImageState, ks: KeyState, rows: tuple[int, int],
                cols: tuple[int, int], chunk: int) -> Any:
    """(C, rows, cols) AnyUp features of a rectangle of image pixels, tile by tile."""
    import torch

    H, W = st.shape
    out = torch.empty(ks.values.shape[2], rows[1] - rows[0], cols[1] - cols[0], device=st.guide.device)
    for (y0, y1), (x0, x1) in tiles(rows, cols, chunk):
        py0, py1, px0, px1 = max(0, y0 - 1), min(H, y1 + 1), max(0, x0 - 1), min(W, x1 + 1)
        padded = torch.zeros(y1 - y0 + 2, x1 - x0 + 2, QK_DIM, device=st.guide.device)
        padded[py0 - y0 + 1:py1 - y0 + 1, px0 - x0 + 1:px1 - x0 + 1] = query_field_rect(
            params, st, (py0, py1), (px0, px1))
        queries = convolve_queries(params, patches_of(padded))
        ys, xs = np.repeat(np.arange(y0, y1), x1 - x0), np.tile(np.arange(x0, x1), y1 - y0)
        feats = attend(params, ks, queries, *_windows(ks, ys, xs, (H, W)))
        out[:, y0 - rows[0]:y1 - rows[0], x0 - cols[0]:x1 - cols[0]] = feats.T.reshape(-1, y1 - y0, x1 - x0)
    return out


def grid_block(params: dict[str, Any], st: ImageState, ks: KeyState, grid: tuple[int, int], rows: tuple[int, int],
               cols: tuple[int, int], chunk: int) -> Any:
    """(C, rows, cols) AnyUp features of a rectangle of the ``grid`` cells, tile by tile."""
    import torch

    H, W = st.shape
    Gh, Gw = grid
    by, bx = pool_bins(H, Gh), pool_bins(W, Gw)
    device = st.guide.device
    out = torch.empty(ks.values.shape[2], rows[1] - rows[0], cols[1] - cols[0], device=device)
    for (y0, y1), (x0, x1) in tiles(rows, cols, chunk):
        cy0, cy1, cx0, cx1 = max(0, y0 - 1), min(Gh, y1 + 1), max(0, x0 - 1), min(Gw, x1 + 1)
        pix_rows = (int(by[0][cy0]), int(by[1][cy1 - 1]))
        pix_cols = (int(bx[0][cx0]), int(bx[1][cx1 - 1]))
        field = query_field_rect(params, st, pix_rows, pix_cols)  # (pixel rows, pixel cols, 128)
        wy = torch.as_tensor(pool_matrix(*by, range(cy0, cy1), range(*pix_rows)), device=device)
        wx = torch.as_tensor(pool_matrix(*bx, range(cx0, cx1), range(*pix_cols)), device=device)
        pooled = torch.matmul(wy, torch.matmul(wx, field).reshape(field.shape[0], -1))
        padded = torch.zeros(y1 - y0 + 2, x1 - x0 + 2, QK_DIM, device=device)
        padded[cy0 - y0 + 1:cy1 - y0 + 1, cx0 - x0 + 1:cx1 - x0 + 1] = pooled.reshape(cy1 - cy0, cx1 - cx0, QK_DIM)
        queries = convolve_queries(params, patches_of(padded))
        ys, xs = np.repeat(np.arange(y0, y1), x1 - x0), np.tile(np.arange(x0, x1), y1 - y0)
        feats = attend(params, ks, queries, *_windows(ks, ys, xs, grid))
        out[:, y0 - rows[0]:y1 - rows[0], x0 - cols[0]:x1 - cols[0]] = feats.T.reshape(-1, y1 - y0, x1 - x0)
    return out
