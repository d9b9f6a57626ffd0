"""The dense read as it was before issue 12, kept only to measure against: a batched np.matmul of C small GEMMs.

``(C, rows, w) @ (w, W')`` then ``(H', rows) @ (C, rows, W')``: numpy calls BLAS once
per channel, and OpenBLAS threads each of those small products, which thrashes
when another program holds the cores. The library no longer uses this.
"""

from __future__ import annotations

import numpy as np

from vfm_features.features.upsample import grid_coords, interp_matrix, region_slices
from vfm_features.geometry import Embedding, EmbeddingGeometry
from vfm_features.heads.forest_predict import predict_proba_float32


def dense_before(embedding: Embedding, out_shape, region=None) -> np.ndarray:
    geom = embedding.geometry
    H, W = geom.image_shape
    rows, cols = region_slices(region, out_shape)
    data = embedding.data
    ys, xs = grid_coords(H, out_shape[0])[rows], grid_coords(W, out_shape[1])[cols]
    wy = interp_matrix(geom.cell_coords(np.stack([ys, np.zeros_like(ys)], 1))[:, 0], data.shape[1])
    wx = interp_matrix(geom.cell_coords(np.stack([np.zeros_like(xs), xs], 1))[:, 1], data.shape[2])
    used = np.flatnonzero(wy.any(axis=0))
    lo, hi = int(used[0]), int(used[-1]) + 1
    return np.matmul(wy[:, lo:hi], np.matmul(data[:, lo:hi], wx.T))


def predict_view_before(forest, embedding: Embedding, view: int, grid: int, band_rows: int = 64) -> np.ndarray:
    """PixelClassifier's prediction before issue 12: dense read per band, transpose, blocked predictor, resize."""
    K = int(forest.n_classes_)
    proba = np.empty((K, grid, grid), np.float32)
    for r0 in range(0, grid, band_rows):
        feats = dense_before(embedding, (grid, grid), slice(r0, r0 + band_rows))
        C, r, c = feats.shape
        proba[:, r0:r0 + r] = predict_proba_float32(forest, feats.reshape(C, -1).T).T.reshape(K, r, c)
    if grid == view:
        return proba
    coarse = Embedding(proba, EmbeddingGeometry((view, view), step=(view / grid, view / grid)))
    return dense_before(coarse, (view, view))
