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
from vfm_features.validation import STATS, check_instance_mask, check_stats

from .bilinear import BilinearUpsampler
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
    mask = check_instance_mask(mask, embedding.image_shape)
    up = get_upsampler(upsampler)
    ids, areas = np.unique(mask[mask > 0], return_counts=True)
    C = up.n_features(embedding)
    n = len(ids)
    # the bilinear upsampler's means as one sparse product (a full-resolution embedding is read directly)
    linear = type(up) is BilinearUpsampler and not embedding.geometry.is_identity and n > 0
    s1 = bilinear_sums(embedding, mask, ids) if linear else np.zeros((n, C), np.float64)
    s2 = np.zeros((n, C), np.float64) if "std" in stats else None
    mn = np.full((n, C), np.inf, np.float32) if "min" in stats else None
    mx = np.full((n, C), -np.inf, np.float32) if "max" in stats else None
    H = mask.shape[0]
    banded = n > 0 and (not linear or s2 is not None or mn is not None or mx is not None)
    for r0 in range(0, H if banded else 0, band_rows):
        rows = slice(r0, min(H, r0 + band_rows))
        m = mask[rows]
        sel = m > 0
        if not sel.any():
            continue
        feats = up.dense(embedding, image, None, (rows, slice(None)))  # (C, r, W)
        lab = m[sel]
        vals = np.moveaxis(feats, 0, -1)[sel]  # (npix, C): rows of pixel-major memory
        order = np.argsort(lab, kind="stable")
        lab = lab[order]
        vals = vals[order]
        uniq, starts = np.unique(lab, return_index=True)
        pos = np.searchsorted(ids, uniq)
        if not linear:
            s1[pos] += np.add.reduceat(vals, starts, axis=0, dtype=np.float64)
        if s2 is not None:
            s2[pos] += np.add.reduceat(vals.astype(np.float64) ** 2, starts, axis=0)
        if mn is not None:
            mn[pos] = np.minimum(mn[pos], np.minimum.reduceat(vals, starts, axis=0))
        if mx is not None:
            mx[pos] = np.maximum(mx[pos], np.maximum.reduceat(vals, starts, axis=0))
    mean = s1 / np.maximum(areas, 1)[:, None]
    blocks, names = [], []
    for stat in stats:
        if stat == "mean":
            blocks.append(mean)
        elif stat == "std":
            blocks.append(np.sqrt(np.maximum(s2 / np.maximum(areas, 1)[:, None] - mean**2, 0)))
        elif stat == "min":
            blocks.append(mn)
        else:
            blocks.append(mx)
        names += [f"{stat}_{c}" for c in range(C)]
    if include_area:
        blocks.append(areas[:, None].astype(np.float64))
        names.append("area")
    values = np.concatenate(blocks, axis=1).astype(np.float32) if n else np.zeros((0, len(names)), np.float32)
    return ObjectFeatures(ids=ids.astype(np.int64), values=values, names=names)
