"""Embeddings and the geometry that maps their cells back to image pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EmbeddingGeometry:
    """Where embedding cells lie in the image.

    Cell ``(i, j)`` of the embedding has its centre at image pixel coordinates
    ``(origin[0] + (i + 0.5) * step[0] - 0.5, origin[1] + (j + 0.5) * step[1] - 0.5)``,
    with pixel centres at integer coordinates. ``step`` is the size of one cell in
    image pixels (16 / resize-factor for SAM, 1 for full-resolution filters);
    ``origin`` is the image coordinate of the top-left corner of cell (0, 0)
    (non-zero for tiles). Padding added by a model is cropped before an
    ``Embedding`` is made, so every cell covers image content.
    """

    image_shape: tuple[int, int]
    step: tuple[float, float] = (1.0, 1.0)
    origin: tuple[float, float] = (0.0, 0.0)

    def cell_coords(self, coords: np.ndarray) -> np.ndarray:
        """Image pixel coordinates (N, 2) -> fractional embedding coordinates (N, 2)."""
        coords = np.asarray(coords, dtype=np.float64)
        step = np.asarray(self.step)
        origin = np.asarray(self.origin)
        return (coords + 0.5 - origin) / step - 0.5

    @property
    def is_identity(self) -> bool:
        return self.step == (1.0, 1.0) and self.origin == (0.0, 0.0)


@dataclass
class Embedding:
    """A low-resolution feature map ``data`` with axes (C, h, w) and its geometry."""

    data: np.ndarray
    geometry: EmbeddingGeometry
    extractor: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"Embedding data must be (C, h, w); got shape {self.data.shape}.")

    @property
    def n_features(self) -> int:
        return int(self.data.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.geometry.image_shape
