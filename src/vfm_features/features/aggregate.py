"""Per-object features from an embedding and an instance mask, vectorised over objects.

The embedding is upsampled band by band (bounded memory), the pixels of each band
are grouped by object id with one sort, and ``np.add.reduceat`` /
``np.minimum.reduceat`` reduce every object at once; bands are merged by id.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vfm_features.errors import InputError
from vfm_features.extractor import FeatureExtractor, ObjectFeatureExtractor, ObjectFeatures
from vfm_features.geometry import Embedding
from vfm_features.features.upsample import get_upsampler
from vfm_features.validation import check_instance_mask

STATS = ("mean", "std", "min", "max")


def _check_stats(stats: Sequence[str]) -> tuple[str, ...]:
    stats = tuple(stats)
    bad = [s for s in stats if s not in STATS]
    if bad or not stats:
        raise InputError(f"stats={list(stats)} is not valid; choose one or more of {STATS}.")
    return stats


def aggregate_embedding(embedding: Embedding, mask: np.ndarray, *, stats: Sequence[str] = ("mean",),
                        include_area: bool = True, upsampler: Any = "bilinear",
                        band_rows: int = 128) -> ObjectFeatures:
    """Mean (and optionally std/min/max) of the upsampled features over each object, plus its area."""
    stats = _check_stats(stats)
    mask = check_instance_mask(mask, embedding.image_shape)
    up = get_upsampler(upsampler)
    ids, areas = np.unique(mask[mask > 0], return_counts=True)
    C = embedding.n_features
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
        feats = up.dense(embedding, rows=rows)  # (C, r, W)
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


class EmbeddingObjectFeatures(ObjectFeatureExtractor):
    """Adapts a pixel :class:`FeatureExtractor` to the object interface by aggregation."""

    def __init__(self, extractor: FeatureExtractor, *, stats: Sequence[str] = ("mean",),
                 include_area: bool = True, upsampler: Any = "bilinear", embed=None) -> None:
        super().__init__(extractor.spec, stats=list(_check_stats(stats)), include_area=include_area,
                         upsampler=getattr(upsampler, "name", upsampler))
        self.extractor = extractor
        self._upsampler = upsampler
        self._embed = embed or extractor.embed_plane

    def signature(self) -> dict[str, Any]:
        sig = dict(self.extractor.signature())
        sig["aggregation"] = {k: v for k, v in self.options.items()}
        return sig

    def object_features(self, image: Any, mask: np.ndarray, *, axes: str | None = None) -> ObjectFeatures:
        from vfm_features.preprocess import to_planes

        planes, stack = to_planes(image, axes)
        if stack:
            raise InputError("Object features take one 2D image; loop over the planes of a stack.")
        emb = self._embed(planes[0])
        return aggregate_embedding(emb, mask, stats=self.options["stats"],
                                   include_area=self.options["include_area"], upsampler=self._upsampler)
