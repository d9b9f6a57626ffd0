"""Per-object features from an embedding and an instance mask, vectorised over objects.

Means of the bilinear upsampler on a coarse embedding need no upsampled pixel at
all: bilinear reading is linear, so the sum of an object's upsampled features is
its pixels' interpolation weights, added up per embedding cell (a sparse
objects x cells matrix, built with one pass over the mask), times the
embedding: one sparse product, single-threaded, a few milliseconds for a SAM
embedding. Other statistics (std, min, max), other upsamplers and full-resolution
embeddings read the features band by band (bounded memory), group the pixels of
each band by object id with one sort, and reduce every object at once with
``np.add.reduceat`` / ``np.minimum.reduceat``; bands are merged by id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from vfm_features.extractor import ObjectFeatures
from vfm_features.geometry import Embedding
from vfm_features.registry import get_upsampler
from vfm_features.validation import check_instance_mask, check_stats

from .bilinear import BilinearUpsampler
from .partials import ObjectSums, finish_statistics  # noqa: F401 (finish_statistics: re-exported)
from .upsample import axis_taps

DEFAULT_STATS = ("mean",)


@dataclass(frozen=True)
class Aggregator:
    """Per-object features from an embedding: ``stats`` of the upsampled features over each mask, plus its area."""

    stats: tuple[str, ...] = DEFAULT_STATS
    include_area: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "stats", check_stats(self.stats))

    def __call__(self, embedding: Embedding, image: np.ndarray | None, mask: np.ndarray,
                 upsampler: Any = "bilinear") -> ObjectFeatures:
        return aggregate_embedding(embedding, mask, stats=self.stats, include_area=self.include_area,
                                   upsampler=upsampler, image=image)

    def sums(self, embedding: Embedding, image: np.ndarray | None, mask: np.ndarray,
             upsampler: Any = "bilinear") -> ObjectSums:
        """The per-object partial sums of one plane (a slice of a volume), to :meth:`merge` with others."""
        return embedding_sums(embedding, mask, stats=self.stats, upsampler=upsampler, image=image)

    def merge(self, parts: Sequence[ObjectSums]) -> ObjectFeatures:
        """Per-object features from the sums of several planes: each object over all its pixels (voxels)."""
        return ObjectSums.merge(parts, self.stats).finish(self.stats, self.include_area)

    def signature(self) -> dict[str, Any]:
        return {"stats": list(self.stats), "include_area": bool(self.include_area)}


def bilinear_sums(embedding: Embedding, mask: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Sum over each object ``ids`` of ``mask`` of the bilinearly upsampled features, (n, C) float64, exactly linear.

    Every pixel reads four cells with weights (1-fy)(1-fx), (1-fy)fx, fy(1-fx),
    fy fx; those weights are added per (object, cell) into a sparse matrix, whose
    product with the (cells, C) embedding is the sum of the object's features.
    """
    from scipy import sparse

    C, h, w = embedding.data.shape
    H, W = mask.shape
    geom = embedding.geometry
    ys, xs = np.nonzero(mask)
    obj = np.searchsorted(ids, mask[ys, xs]).astype(np.int64)
    y0, y1, fy = axis_taps(geom.cell_coords(np.stack([np.arange(H, dtype=np.float64), np.zeros(H)], 1))[:, 0], h)
    x0, x1, fx = axis_taps(geom.cell_coords(np.stack([np.zeros(W), np.arange(W, dtype=np.float64)], 1))[:, 1], w)
    gy, gx = fy.astype(np.float64)[ys], fx.astype(np.float64)[xs]
    r0, r1, c0, c1 = y0[ys] * w, y1[ys] * w, x0[xs], x1[xs]
    cells = np.concatenate([r0 + c0, r0 + c1, r1 + c0, r1 + c1])
    weights = np.concatenate([(1 - gy) * (1 - gx), (1 - gy) * gx, gy * (1 - gx), gy * gx])
    A = sparse.csr_matrix((weights, (np.tile(obj, 4), cells)), shape=(len(ids), h * w))
    A.sum_duplicates()
    return np.asarray(A @ embedding.data.reshape(C, h * w).T, dtype=np.float64)


def aggregate_embedding(embedding: Embedding, mask: np.ndarray, *, stats: Sequence[str] = DEFAULT_STATS,
                        include_area: bool = True, upsampler: Any = "bilinear", image: np.ndarray | None = None,
                        band_rows: int = 128) -> ObjectFeatures:
    """Mean (and optionally std/min/max) of the upsampled features over each object, plus its area.

    ``image`` is the plane the embedding came from (image-guided upsamplers read it).
    """
    stats = check_stats(stats)
    sums = embedding_sums(embedding, mask, stats=stats, upsampler=upsampler, image=image, band_rows=band_rows)
    return sums.finish(stats, include_area)


def embedding_sums(embedding: Embedding, mask: np.ndarray, *, stats: Sequence[str] = DEFAULT_STATS,
                   upsampler: Any = "bilinear", image: np.ndarray | None = None, band_rows: int = 128
                   ) -> ObjectSums:
    """Per-object partial sums (:class:`ObjectSums`) of the upsampled features of one plane over ``mask``.

    Sums of several planes (the slices of a volume) merge exactly with :meth:`ObjectSums.merge`.
    """
    stats = check_stats(stats)
    mask = check_instance_mask(mask, embedding.image_shape)
    up = get_upsampler(upsampler)
    ids, areas = np.unique(mask[mask > 0], return_counts=True)
    n = len(ids)
    sums = ObjectSums.empty(ids, up.n_features(embedding), stats)
    # the bilinear upsampler's means as one sparse product (a full-resolution embedding is read directly)
    linear = type(up) is BilinearUpsampler and not embedding.geometry.is_identity and n > 0
    if linear:
        sums.s1 = bilinear_sums(embedding, mask, ids)
    H = mask.shape[0]
    banded = n > 0 and (not linear or sums.s2 is not None or sums.mn is not None or sums.mx is not None)
    for r0 in range(0, H if banded else 0, band_rows):
        rows = slice(r0, min(H, r0 + band_rows))
        m = mask[rows]
        sel = m > 0
        if not sel.any():
            continue
        feats = up.dense(embedding, image, None, (rows, slice(None)))  # (C, r, W)
        vals = np.moveaxis(feats, 0, -1)[sel]  # (npix, C): rows of pixel-major memory
        sums.add(ObjectSums.from_pixels(m[sel], vals, stats, sums=not linear), sums=not linear)
    sums.count = areas.astype(np.int64)
    return sums
