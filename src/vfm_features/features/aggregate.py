"""Per-object features from an embedding and an instance mask, vectorised over objects.

The embedding is upsampled band by band (bounded memory), the pixels of each band
are grouped by object id with one sort, and ``np.add.reduceat`` /
``np.minimum.reduceat`` reduce every object at once; bands are merged by id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from vfm_features.extractor import ObjectFeatures
from vfm_features.geometry import Embedding
from vfm_features.registry import get_upsampler
from vfm_features.validation import STATS, check_instance_mask, check_stats

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
    s1 = np.zeros((n, C), np.float64)
    s2 = np.zeros((n, C), np.float64) if "std" in stats else None
    mn = np.full((n, C), np.inf, np.float32) if "min" in stats else None
    mx = np.full((n, C), -np.inf, np.float32) if "max" in stats else None
    H = mask.shape[0]
    for r0 in range(0, H if n else 0, band_rows):
        rows = slice(r0, min(H, r0 + band_rows))
        m = mask[rows]
        sel = m > 0
        if not sel.any():
            continue
        feats = up.dense(embedding, image, None, (rows, slice(None)))  # (C, r, W)
        lab = m[sel]
        vals = feats[:, sel].T  # (npix, C)
        order = np.argsort(lab, kind="stable")
        lab = lab[order]
        vals = vals[order]
        uniq, starts = np.unique(lab, return_index=True)
        pos = np.searchsorted(ids, uniq)
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
