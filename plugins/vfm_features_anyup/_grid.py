"""Where AnyUp's cells, pooling bins and attention windows lie (numpy only).

The authors' model assumes that the feature grid spans the image: keys pool the
image encoding over adaptive-average-pooling bins, and a query at normalised
position ``p`` (pixel centre over image size) attends to the cells of rows
``floor(clip(p - 0.1) * h) .. ceil(clip(p + 0.1) * h)`` (and the same for columns),
computed in float32. :class:`Axis` does exactly that when the embedding's
geometry spans the image (origin 0, ``step * cells`` = image size), and
generalises it through the geometry otherwise (an embedding whose last cell
reaches past the image, or a tile with an origin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pool_bins(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-average-pooling bins of ``n_in`` inputs into ``n_out`` outputs: [start, end) per output."""
    i = np.arange(n_out, dtype=np.int64)
    return (i * n_in) // n_out, ((i + 1) * n_in + n_out - 1) // n_out


def pool_matrix(starts: np.ndarray, ends: np.ndarray, cells: range, pixels: range) -> np.ndarray:
    """(len(cells), len(pixels)) float32 weights: the mean over each cell's bin, restricted to ``pixels``."""
    w = np.zeros((len(cells), len(pixels)), np.float32)
    for row, c in enumerate(cells):
        s, e = int(starts[c]), int(ends[c])
        lo, hi = max(s, pixels.start), min(e, pixels.stop)
        if hi > lo:
            w[row, lo - pixels.start:hi - pixels.start] = 1.0 / (e - s)
    return w


@dataclass(frozen=True)
class Axis:
    """One axis of the embedding grid in image pixels: ``n_cells`` cells of ``step`` pixels from ``origin``."""

    n_cells: int
    image_len: int
    origin: float
    step: float

    @property
    def spans(self) -> bool:
        """True when the cells cover exactly the image (the authors' setting)."""
        return self.origin == 0 and abs(self.step * self.n_cells - self.image_len) <= 1e-6 * self.image_len

    def bins(self) -> tuple[np.ndarray, np.ndarray]:
        """Image pixels [start, end) that each cell's key pools (adaptive average pooling when the grid spans)."""
        if self.spans:
            return pool_bins(self.image_len, self.n_cells)
        i = np.arange(self.n_cells, dtype=np.float64)
        starts = np.floor(self.origin + i * self.step + 1e-9).astype(np.int64)
        ends = np.ceil(self.origin + (i + 1) * self.step - 1e-9).astype(np.int64)
        starts = np.clip(starts, 0, self.image_len - 1)
        return starts, np.clip(np.maximum(ends, starts + 1), 1, self.image_len)

    def positions(self, index: np.ndarray, n_out: int) -> np.ndarray:
        """Float32 positions, normalised over the cells, of cells ``index`` of an ``n_out``-cell grid on the image."""
        index = np.asarray(index, np.int64)
        if self.spans:
            return (index + 0.5).astype(np.float32) / np.float32(n_out)
        centre = (index + 0.5) * (self.image_len / n_out)
        return ((centre - self.origin) / (self.step * self.n_cells)).astype(np.float32)

    def windows(self, pos: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """The cells [lo, hi) each position attends to: ``ratio`` of the grid on either side, as the authors round."""
        r = np.float32(ratio)
        n = np.float32(self.n_cells)
        lo = np.floor(np.clip(pos - r, np.float32(0), np.float32(1)) * n).astype(np.int64)
        hi = np.ceil(np.clip(pos + r, np.float32(0), np.float32(1)) * n).astype(np.int64)
        lo = np.minimum(lo, self.n_cells - 1)  # a query outside the cells still sees the nearest one
        return lo, np.clip(hi, lo + 1, self.n_cells)
