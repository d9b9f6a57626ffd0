"""The head seam: what a pixel or object head is fitted on, and what it must answer.

A head is a registered plugin (``vfm_features_heads`` hook) and a scikit-learn
style estimator (parameters in ``__init__``, learned attributes end in ``_``).

Pixel heads see :class:`PixelSamples`: the embeddings of the training images,
the images themselves, the labelled pixel coordinates and their classes, and the
upsampler. A head that works on feature rows (the forest) reads
:meth:`PixelSamples.features` - computed once, at the labelled pixels only; a
head that reads the embedding grid itself (an attentive probe) uses
``embeddings`` and ``coords`` directly.

Object heads see :class:`ObjectSamples`: per-object feature rows (from an object
extractor, or aggregated from an embedding), or the embeddings, images and
instance masks for heads with their own object queries.

A head saves itself as plain data (:meth:`Head.get_state`: JSON parameters and
numeric arrays) and is rebuilt by :meth:`Head.from_state`, which must check
everything it reads: classifier files come from strangers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from vfm_features.errors import InputError
from vfm_features.extractor import ObjectFeatures
from vfm_features.geometry import Embedding


@dataclass
class PixelSamples:
    """Labelled (or queried) pixels of embedded images: what pixel heads fit on and predict at.

    ``image_index[i]`` says which of ``embeddings`` / ``images`` pixel ``coords[i]``
    (y, x) belongs to; ``y`` holds the classes (None when predicting). An
    embedding may be None when the feature rows are known already (a head that
    needs embeddings then raises).
    """

    embeddings: list[Embedding | None]
    images: list[np.ndarray | None]
    image_index: np.ndarray
    coords: np.ndarray
    upsampler: Any
    y: np.ndarray | None = None
    rows: np.ndarray | None = field(default=None, repr=False)  # (n, C) features at the pixels, once read

    def __post_init__(self) -> None:
        self.image_index = np.asarray(self.image_index, np.int64)
        self.coords = np.asarray(self.coords, np.int64).reshape(-1, 2)
        if len(self.image_index) != len(self.coords) or (self.y is not None and len(self.y) != len(self.coords)):
            raise InputError(f"PixelSamples: {len(self.image_index)} image indices, {len(self.coords)} coordinates "
                             f"and {None if self.y is None else len(self.y)} classes do not match.")

    def __len__(self) -> int:
        return len(self.coords)

    def features(self) -> np.ndarray:
        """(n, C) float32 features at the pixels, read through the upsampler once and kept."""
        if self.rows is None:
            parts = []
            for i in np.unique(self.image_index):
                emb = self.embeddings[i]
                if emb is None:
                    raise InputError("These samples keep feature rows only; their embeddings were not kept.")
                sel = self.image_index == i
                parts.append((sel, self.upsampler.sparse(emb, self.images[i], self.coords[sel])))
            width = parts[0][1].shape[1] if parts else 0
            rows = np.empty((len(self), width), np.float32)
            for sel, part in parts:
                rows[sel] = part
            self.rows = rows
        return self.rows

    def subset(self, index: Any) -> "PixelSamples":
        """The samples at ``index`` (an index array or boolean mask); feature rows read already are kept."""
        index = np.asarray(index)
        return replace(self, image_index=self.image_index[index], coords=self.coords[index],
                       y=None if self.y is None else self.y[index],
                       rows=None if self.rows is None else self.rows[index])

    def without_embeddings(self) -> "PixelSamples":
        """The same samples with their feature rows read and the (large) embeddings and images dropped."""
        rows = self.features()
        return replace(self, embeddings=[None] * len(self.embeddings), images=[None] * len(self.images), rows=rows)

    @staticmethod
    def concat(parts: Sequence["PixelSamples"]) -> "PixelSamples":
        """One set of samples from several (each with its own images); all must share one upsampler."""
        parts = [p for p in parts if len(p)]
        if not parts:
            raise InputError("No labelled pixels: label at least two classes (ids >= 1).")
        embeddings, images, index = [], [], []
        for p in parts:
            index.append(p.image_index + len(embeddings))
            embeddings += list(p.embeddings)
            images += list(p.images)
        known = all(p.rows is not None for p in parts)
        widths = {p.rows.shape[1] for p in parts} if known else set()
        if len(widths) > 1:
            raise InputError(f"The images give different numbers of features {sorted(widths)}; train only on "
                             "images with the same number of channels (or reduce channels with extractor_options).")
        return PixelSamples(embeddings, images, np.concatenate(index), np.concatenate([p.coords for p in parts]),
                            parts[0].upsampler,
                            None if any(p.y is None for p in parts) else np.concatenate([p.y for p in parts]),
                            np.concatenate([p.rows for p in parts]) if known else None)


@dataclass
class ObjectSamples:
    """Labelled (or queried) objects: ids of instance masks, per image, with their classes.

    Either ``object_features`` (one :class:`ObjectFeatures` per image, from an
    object extractor or precomputed) or ``embeddings`` + ``aggregator`` give the
    feature rows; heads with their own object queries read ``embeddings``,
    ``images`` and ``masks``.
    """

    image_index: np.ndarray
    ids: np.ndarray
    y: np.ndarray | None = None
    embeddings: list[Embedding | None] | None = None
    images: list[np.ndarray | None] | None = None
    masks: list[np.ndarray | None] | None = None
    object_features: list[ObjectFeatures | None] | None = None
    aggregator: Any = None
    upsampler: Any = None
    rows: np.ndarray | None = field(default=None, repr=False)
    names: list[str] | None = None

    def __post_init__(self) -> None:
        self.image_index = np.asarray(self.image_index, np.int64)
        self.ids = np.asarray(self.ids, np.int64)
        if len(self.image_index) != len(self.ids) or (self.y is not None and len(self.y) != len(self.ids)):
            raise InputError("ObjectSamples: image indices, ids and classes do not match in length.")

    def __len__(self) -> int:
        return len(self.ids)

    def _image_features(self, i: int) -> ObjectFeatures:
        if self.object_features is not None and self.object_features[i] is not None:
            return self.object_features[i]
        if self.embeddings is None or self.embeddings[i] is None or self.aggregator is None:
            raise InputError("These object samples keep feature rows only; their embeddings were not kept.")
        feats = self.aggregator(self.embeddings[i], self.images[i] if self.images else None, self.masks[i],
                                self.upsampler)
        if self.object_features is None:
            self.object_features = [None] * len(self.embeddings)
        self.object_features[i] = feats
        return feats

    def features(self) -> np.ndarray:
        """(n, F) float32 feature rows of the objects (aggregated once per image and kept)."""
        if self.rows is None:
            parts, width = [], None
            for i in np.unique(self.image_index):
                feats = self._image_features(int(i))
                sel = self.image_index == i
                parts.append((sel, feats.rows(self.ids[sel])))
                self.names = list(feats.names)
                width = feats.values.shape[1]
            rows = np.empty((len(self), width or 0), np.float32)
            for sel, part in parts:
                rows[sel] = part
            self.rows = rows
        return self.rows

    def subset(self, index: Any) -> "ObjectSamples":
        index = np.asarray(index)
        return replace(self, image_index=self.image_index[index], ids=self.ids[index],
                       y=None if self.y is None else self.y[index],
                       rows=None if self.rows is None else self.rows[index])

    def without_embeddings(self) -> "ObjectSamples":
        rows = self.features()
        return replace(self, embeddings=None, images=None, masks=None, object_features=None, rows=rows)

    @staticmethod
    def concat(parts: Sequence["ObjectSamples"]) -> "ObjectSamples":
        """One set of objects from several; embeddings, images and masks are kept when every part has them."""
        parts = [p for p in parts if len(p)]
        if not parts:
            raise InputError("No labelled objects: label objects of at least two classes.")
        rows = [p.features() for p in parts]
        widths = {r.shape[1] for r in rows}
        if len(widths) > 1:
            raise InputError(f"The images give different numbers of object features {sorted(widths)}; train only "
                             "on images with the same number of channels.")
        whole = all(p.embeddings is not None and p.masks is not None for p in parts)
        offset, index = 0, []
        for p in parts:
            index.append(p.image_index + offset)
            offset += len(p.embeddings) if whole else int(p.image_index.max()) + 1
        kept: dict[str, Any] = {}
        if whole:  # heads with their own object queries (obap) read these
            kept = {"embeddings": [e for p in parts for e in p.embeddings],
                    "images": [im for p in parts for im in (p.images or [None] * len(p.embeddings))],
                    "masks": [m for p in parts for m in p.masks],
                    "aggregator": parts[0].aggregator, "upsampler": parts[0].upsampler}
        return ObjectSamples(np.concatenate(index), np.concatenate([p.ids for p in parts]),
                             None if any(p.y is None for p in parts) else np.concatenate([p.y for p in parts]),
                             rows=np.concatenate(rows), names=parts[-1].names, **kept)


class Head(ABC):
    """What pixel and object heads share: fitting, class probabilities, saving as plain data."""

    kind = "pixel"
    #: True when the head reads embeddings (the classifier must keep them); False for feature-row heads
    needs_embeddings = False

    @abstractmethod
    def fit(self, samples: Any) -> "Head":
        """Fit on labelled samples (``samples.y`` holds the classes); returns self."""

    @abstractmethod
    def predict_proba(self, samples: Any) -> np.ndarray:
        """(n, K) float32 probabilities of the samples, in the order of ``classes_``."""

    @abstractmethod
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able parameters and numeric arrays that :meth:`from_state` rebuilds the fitted head from."""

    @classmethod
    @abstractmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], *, n_features: int) -> "Head":
        """Rebuild a fitted head from :meth:`get_state` output of a file; check everything, trust nothing."""


class PixelHead(Head):
    """A pixel classification head.

    A head whose prediction at a pixel reads its neighbourhood (an attentive
    probe) says so with ``context_px`` and ``block_alignment``: a block predicts
    as the whole image in its core when its halo covers the extractor's halo plus
    ``context_px`` and its origin is a multiple of ``block_alignment`` pixels.
    """

    kind = "pixel"
    #: pixels around a pixel that its prediction reads, beyond the extractor's halo (0: pixel by pixel)
    context_px = 0
    #: block origins must be multiples of this many pixels (1: any origin)
    block_alignment = 1

    @abstractmethod
    def predict_proba_dense(self, embedding: Embedding, image: np.ndarray | None, upsampler: Any,
                            out_shape: tuple[int, int], region: Any = None) -> np.ndarray:
        """(K, rows, cols) float32 probabilities on an ``out_shape`` grid spanning the image, in ``region``."""


class ObjectHead(Head):
    """An object classification head."""

    kind = "object"
