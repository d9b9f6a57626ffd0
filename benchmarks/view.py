"""The interactive loop's two steps, as PixelClassifier runs them: fit a head on feature rows, predict a view.

``predict_view`` is ``PixelClassifier.predict_proba_plane`` with a cached
embedding: bands of the working grid through the head's ``predict_proba_dense``
(read + predict), then the probabilities resized to the view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vfm_features import get_upsampler
from vfm_features.features.upsample import resize_probabilities
from vfm_features.heads.forest_heads import ForestPixelHead


@dataclass
class Rows:
    """The part of PixelSamples a forest reads: feature rows and classes."""

    X: np.ndarray
    y: np.ndarray

    def features(self) -> np.ndarray:
        return self.X


def fit_head(X: np.ndarray, y: np.ndarray, **params) -> ForestPixelHead:
    return ForestPixelHead(random_state=0, **params).fit(Rows(X, y))


def predict_view(head, embedding, view: int, grid: int | None = None, band_rows: int = 64) -> np.ndarray:
    """(K, view, view) probabilities, predicted on a ``grid`` x ``grid`` working grid (default: the view)."""
    up = get_upsampler("bilinear")
    grid = grid or view
    proba = np.empty((len(head.classes_), grid, grid), np.float32)
    for r0 in range(0, grid, band_rows):
        rows = slice(r0, min(grid, r0 + band_rows))
        proba[:, rows] = head.predict_proba_dense(embedding, None, up, (grid, grid), (rows, slice(None)))
    return resize_probabilities(proba, (view, view)) if grid != view else proba
