"""Per-object partial sums of pixel features, merged exactly over bands, blocks or slices.

An object's mean, std, min and max need only its pixel count, feature sum, sum
of squares, minimum and maximum; those add up over any split of its pixels. The
rows of an image read band by band, the blocks of a blockwise run and the slices
of a volume all produce :class:`ObjectSums` for the pixels they see, and
:meth:`ObjectSums.merge` adds them in a fixed order, so the result does not
depend on where the parts were computed. :func:`finish_statistics` turns the
merged sums into feature rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vfm_features.extractor import ObjectFeatures


@dataclass
class ObjectSums:
    """Per-object sums over some pixels: ``ids`` (sorted), pixel ``count``, feature sum ``s1`` (n, C) float64,
    and, when the statistics need them, sum of squares ``s2`` (float64), minimum ``mn`` and maximum ``mx``
    (float32)."""

    ids: np.ndarray
    count: np.ndarray
    s1: np.ndarray
    s2: np.ndarray | None = None
    mn: np.ndarray | None = None
    mx: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return int(self.s1.shape[1])

    @classmethod
    def empty(cls, ids: np.ndarray, n_features: int, stats: Sequence[str]) -> "ObjectSums":
        """Zero sums (and +/- infinite extrema) for ``ids``, ready to :meth:`add` parts into."""
        n, C = len(ids), int(n_features)
        return cls(np.asarray(ids, np.int64), np.zeros(n, np.int64), np.zeros((n, C), np.float64),
                   np.zeros((n, C), np.float64) if "std" in stats else None,
                   np.full((n, C), np.inf, np.float32) if "min" in stats else None,
                   np.full((n, C), -np.inf, np.float32) if "max" in stats else None)

    @classmethod
    def from_pixels(cls, labels: np.ndarray, values: np.ndarray, stats: Sequence[str], *,
                    sums: bool = True) -> "ObjectSums":
        """Sums of ``values`` (npix, C) grouped by object id ``labels`` (npix,), all objects at once.

        ``sums=False`` leaves ``s1`` at zero (a caller that has the sums another way).
        """
        C = values.shape[1]
        if not len(labels):
            return cls.empty(np.zeros(0, np.int64), C, stats)
        order = np.argsort(labels, kind="stable")
        lab, vals = labels[order], values[order]
        ids, starts, counts = np.unique(lab, return_index=True, return_counts=True)
        s1 = (np.add.reduceat(vals, starts, axis=0, dtype=np.float64) if sums
              else np.zeros((len(ids), C), np.float64))
        return cls(ids.astype(np.int64), counts.astype(np.int64), s1,
                   np.add.reduceat(vals.astype(np.float64) ** 2, starts, axis=0) if "std" in stats else None,
                   np.minimum.reduceat(vals, starts, axis=0) if "min" in stats else None,
                   np.maximum.reduceat(vals, starts, axis=0) if "max" in stats else None)

    def add(self, part: "ObjectSums", *, sums: bool = True) -> None:
        """Add the sums of ``part`` (whose ids are all among ours) in place; ``sums=False`` skips ``s1``."""
        pos = np.searchsorted(self.ids, part.ids)
        self.count[pos] += part.count
        if sums:
            self.s1[pos] += part.s1
        if self.s2 is not None:
            self.s2[pos] += part.s2
        if self.mn is not None:
            self.mn[pos] = np.minimum(self.mn[pos], part.mn)
        if self.mx is not None:
            self.mx[pos] = np.maximum(self.mx[pos], part.mx)

    @classmethod
    def merge(cls, parts: Sequence["ObjectSums"], stats: Sequence[str], n_features: int | None = None
              ) -> "ObjectSums":
        """The sums over all ``parts`` (added in the order given: the same floats wherever parts ran)."""
        parts = list(parts)
        if n_features is None:
            n_features = parts[0].n_features if parts else 0
        ids = np.unique(np.concatenate([p.ids for p in parts])) if parts else np.zeros(0, np.int64)
        total = cls.empty(ids, n_features, stats)
        for p in parts:
            if len(p.ids):
                total.add(p)
        return total

    def finish(self, stats: Sequence[str], include_area: bool) -> ObjectFeatures:
        """Per-object features (``stats`` of each feature, then the pixel count as ``area``)."""
        values, names = finish_statistics(self.count, self.s1, self.s2, self.mn, self.mx, stats, include_area)
        return ObjectFeatures(ids=self.ids.astype(np.int64), values=values, names=names)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (``ids``, ``count``, ``s1`` and the extrema/squares present, ``n_features``) for a file."""
        out = {"ids": self.ids, "count": self.count, "s1": self.s1,
               "n_features": np.array([self.n_features], np.int64)}
        for key in ("s2", "mn", "mx"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "ObjectSums":
        """The inverse of :meth:`to_arrays`."""
        return cls(arrays["ids"], arrays["count"], arrays["s1"], arrays.get("s2"), arrays.get("mn"),
                   arrays.get("mx"))


def finish_statistics(areas: np.ndarray, s1: np.ndarray, s2: np.ndarray | None, mn: np.ndarray | None,
                      mx: np.ndarray | None, stats: Sequence[str], include_area: bool
                      ) -> tuple[np.ndarray, list[str]]:
    """(n, F) float32 object features and their names from per-object sums: ``s1`` (sum), ``s2`` (sum of
    squares, for 'std'), ``mn`` / ``mx`` (for 'min' / 'max'), in the order of ``stats``, then the area."""
    n, C = s1.shape
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
        blocks.append(np.asarray(areas, np.float64)[:, None])
        names.append("area")
    values = np.concatenate(blocks, axis=1).astype(np.float32) if n else np.zeros((0, len(names)), np.float32)
    return values, names
