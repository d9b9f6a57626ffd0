"""Object classification: a head (a random forest by default) on per-object features.

Per-object features come from an object extractor (``regionprops``), or from a
pixel extractor's embedding aggregated over each object's mask (mean, and
optionally std/min/max, plus its area) through the upsampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from vfm_features.errors import InputError
from vfm_features.extractor import ObjectFeatures, ensure_sequence
from vfm_features.features.aggregate import DEFAULT_STATS, Aggregator
from vfm_features.features.sampling import sample_balanced
from vfm_features.features.source import embed_planes
from vfm_features.heads.base import ObjectSamples
from vfm_features.preprocess import check_volume_axes, to_planes, volume_mask
from vfm_features.progress import progress_bar
from vfm_features.validation import (
    check_bool,
    check_classes_present,
    check_instance_mask,
    check_is_fitted,
    check_labels,
    check_stats,
)

from .base import BaseClassifier


@dataclass
class ObjectPrediction:
    """Per-object result: ``classes[i]`` and ``probabilities[i]`` belong to object ``ids[i]``."""

    ids: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray  # (n, K) in the order of ``class_ids``
    class_ids: np.ndarray
    class_image: np.ndarray  # (Y, X), or (Z, Y, X) for a volume: each object painted with its class, 0 = background

    def as_dict(self) -> dict[int, int]:
        return {int(i): int(c) for i, c in zip(self.ids, self.classes)}


def majority_vote(instances: np.ndarray, class_image: np.ndarray) -> dict[int, int]:
    """id -> most frequent non-zero class among the object's pixels (objects without labels omitted)."""
    sel = (instances > 0) & (class_image > 0)
    if not sel.any():
        return {}
    obj = instances[sel].astype(np.int64)
    cls = class_image[sel].astype(np.int64)
    pairs, counts = np.unique(np.stack([obj, cls], 1), axis=0, return_counts=True)
    # sort by object, then by count descending: the first row of each object wins (ties -> smaller class)
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    pairs = pairs[order]
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
    return {int(o): int(c) for o, c in pairs[first]}


def volume_object_features(extractor: Any, planes: list[np.ndarray], mask: np.ndarray) -> ObjectFeatures:
    """Features of the 3D objects of ``mask`` from an object extractor that measures volumes."""
    if not getattr(extractor, "volumes", False):
        raise InputError(f"The extractor {extractor.name!r} measures 2D objects only; for a volume use a pixel "
                         "extractor (its per-slice embeddings are merged per 3D object) or classify the slices "
                         "as 2D images.")
    return extractor.object_features(np.stack(planes), mask, axes="ZYXC")


def _joined(planes: list[np.ndarray]) -> np.ndarray:
    """One (Y, X, C) plane, or the slices of a volume one below the other (for intensity ranges)."""
    return planes[0] if len(planes) == 1 else np.concatenate(planes, axis=0)


def _whole(value: Any, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise InputError(f"{what} {value!r} is not a whole number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} {value!r} is not a whole number.") from None
    if not np.isfinite(number) or number != int(number):
        raise InputError(f"{what} {value!r} is not a whole number.")
    return int(number)


def label_mapping(labels: Any, mask: np.ndarray, ids: np.ndarray) -> dict[int, int]:
    """Object labels (mapping id -> class, or a class image reduced by majority vote) as {id: class}; 0 = unlabelled."""
    if isinstance(labels, Mapping):
        mapping = {}
        for key, value in labels.items():
            obj = _whole(key, "Object id")
            cls = _whole(value, f"The class of object {key!r},")
            if cls < 0 or obj < 1:
                raise InputError(f"Object {key!r} has class {value!r}; object ids are >= 1 and classes >= 1 "
                                 "(0 = unlabelled).")
            if cls:
                mapping[obj] = cls
        unknown = sorted(set(mapping) - set(np.asarray(ids).tolist()))
        if unknown:
            raise InputError(f"Object labels name id(s) {unknown[:5]} that are not in the instance mask; "
                             "label only objects present in the mask.")
        return mapping
    class_image = check_labels(labels, mask.shape, name="class image")
    return majority_vote(mask, class_image)


class ObjectClassifier(BaseClassifier):
    """Classifier of segmented objects, on object features or on aggregated embeddings.

    With an object extractor (``"regionprops"``) its features are used as they are;
    with a pixel extractor (``"filters"``, ``"sam:vit_b"``...) each object's feature
    is the ``stats`` of the upsampled embedding over its mask, plus its area
    (``include_area``). Object labels are given per image as a mapping
    ``{object id: class}`` or as a class image, reduced to one class per object by
    majority vote. Parameters not listed here work as in :class:`PixelClassifier`;
    the default head ``rf`` has 200 trees grown to pure leaves. ``reduce=k`` (pixel
    extractors only) aggregates the embedding's ``k`` leading principal components,
    fitted on the training images' embeddings.

    Volumes: an image with axes ``ZYX`` / ``ZYXC`` and a 3D instance mask gives 3D objects. A pixel
    extractor embeds each slice and merges the per-slice partial sums of every object, so its
    statistics cover all its voxels (``area`` = voxel count; an object in one slice gets exactly its
    2D features); an object extractor must measure volumes itself (``regionprops`` does).
    """

    _kind = "object"

    def __init__(self, extractor: Any = "regionprops", *, extractor_options: dict | None = None,
                 stats: Sequence[str] = DEFAULT_STATS, include_area: bool = True, upsampler: Any = "bilinear",
                 upsampler_options: dict | None = None, head: Any = "rf", head_options: dict | None = None,
                 reduce: int | None = None, budget: int | None = None, n_jobs: int | None = -1,
                 random_state: int | None = 0, cache: Any = None, progress: Any = False) -> None:
        self.extractor = extractor
        self.extractor_options = extractor_options
        self.stats = stats
        self.include_area = include_area
        self.upsampler = upsampler
        self.upsampler_options = upsampler_options
        self.head = head
        self.head_options = head_options
        self.reduce = reduce
        self.budget = budget
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.cache = cache
        self.progress = progress

    def _check_params(self) -> None:
        super()._check_params()
        check_stats(self.stats)
        check_bool(self.include_area, "include_area")

    def _aggregator(self) -> Aggregator:
        return Aggregator(tuple(self.stats), self.include_area)

    def _current_signature(self) -> dict[str, Any]:
        sig = super()._current_signature()
        if "upsampler" in sig:
            sig["aggregation"] = self._aggregator().signature()
        return sig

    # -- features ------------------------------------------------------------
    def _planes(self, image: Any, mask: Any, axes: str | None) -> tuple[list[np.ndarray], np.ndarray]:
        """The (Y, X, C) planes of ``image`` (one for a 2D image, one per slice of a volume) and its checked
        instance mask ((Y, X), or (Z, Y, X) for a volume)."""
        planes, stack = to_planes(image, axes)
        if not stack:
            return planes, check_instance_mask(mask, planes[0].shape[:2])
        check_volume_axes(axes, stack)
        return planes, volume_mask(mask, tuple(stack) + planes[0].shape[:2])

    def _object_samples(self, planes: list[np.ndarray], mask: np.ndarray, embeddings: Sequence[Any] = (),
                        head: Any = None) -> ObjectSamples:
        """Samples of every object of ``mask`` in ``planes`` (classes unset), features not yet read.

        ``embeddings`` holds embeddings of the planes computed already (None where not).
        """
        extractor, upsampler = self._components()
        if mask.ndim == 3:
            return self._volume_samples(planes, mask, embeddings, head)
        plane = planes[0]
        if getattr(extractor, "kind", "pixel") == "object":
            feats = extractor.object_features(plane, mask, axes="YXC")
            return ObjectSamples(np.zeros(len(feats.ids), np.int64), feats.ids, object_features=[feats])
        ids = np.unique(mask[mask > 0])
        emb = embeddings[0] if len(embeddings) and embeddings[0] is not None else self._embed(extractor, plane)
        return ObjectSamples(np.zeros(len(ids), np.int64), ids, embeddings=[emb],
                             images=[plane], masks=[mask], aggregator=self._aggregator(), upsampler=upsampler)

    def _volume_samples(self, planes: list[np.ndarray], mask: np.ndarray, embeddings: Sequence[Any],
                        head: Any) -> ObjectSamples:
        """Samples of the 3D objects of a volume: per-slice partial sums of the embedding, merged per object."""
        extractor, upsampler = self._components()
        if getattr(extractor, "kind", "pixel") == "object":
            feats = volume_object_features(extractor, planes, mask)
            return ObjectSamples(np.zeros(len(feats.ids), np.int64), feats.ids, object_features=[feats])
        if head is not None and head.needs_embeddings:
            raise InputError(f"The head {self.head!r} reads the embedding of each image itself, which a volume "
                             "(one embedding per slice) does not give; use a feature-row head such as 'rf' for "
                             "volumes, or classify the slices as 2D images.")
        aggregator = self._aggregator()
        slices = [z for z in range(len(planes)) if mask[z].any()] or [0]
        if getattr(extractor, "volumetric", False):  # 3D filters: the whole volume at once, not slice by slice
            embeddings = embed_planes(extractor, planes, self.cache, self._memo())
        parts = []
        for z in slices:
            emb = embeddings[z] if z < len(embeddings) and embeddings[z] is not None else None
            emb = self._embed(extractor, planes[z]) if emb is None else emb
            parts.append(aggregator.sums(emb, planes[z], mask[z], upsampler))
        feats = aggregator.merge(parts)
        return ObjectSamples(np.zeros(len(feats.ids), np.int64), feats.ids, object_features=[feats])

    def object_features(self, image: Any, mask: Any, *, axes: str | None = None) -> ObjectFeatures:
        """The per-object features this classifier uses for ``image`` and its instance ``mask``."""
        self._check_params()
        planes, mask = self._planes(image, mask, axes)
        samples = self._object_samples(planes, mask)
        return ObjectFeatures(samples.ids, samples.features(), list(samples.names or []))

    # -- training ------------------------------------------------------------
    def fit(self, images: Any, masks: Any, object_labels: Any, *, axes: str | None = None) -> "ObjectClassifier":
        """Train on images, their instance masks and object labels (mapping or class image per image)."""
        self._reset()
        return self.partial_fit(images, masks, object_labels, axes=axes)

    def partial_fit(self, images: Any, masks: Any, object_labels: Any, *,
                    axes: str | None = None) -> "ObjectClassifier":
        """Add labelled objects of more images and retrain on everything labelled so far."""
        self._check_params()
        images, masks = ensure_sequence(images, "images"), ensure_sequence(masks, "masks")
        object_labels = [object_labels] if isinstance(object_labels, (Mapping, np.ndarray)) else list(object_labels)
        if not len(images) == len(masks) == len(object_labels):
            raise InputError(
                f"Got {len(images)} image(s), {len(masks)} mask(s) and {len(object_labels)} label set(s); "
                "pass one mask and one label set per image.")
        self._start_partial_fit()
        head = self._new_head()
        kept: dict[int, Any] = {}
        if self.reduce is not None and getattr(self, "reduction_", None) is None:
            kept = self._fit_reduction(self._components()[0], [
                p for img, mask in zip(images, masks) for p in self._planes(img, mask, axes)[0]])
        start = 0  # position of the image's first plane among all planes (the keys of ``kept``)
        for img, mask, labs in progress_bar(list(zip(images, masks, object_labels)), self.progress,
                                            desc="object features"):
            planes, mask = self._planes(img, mask, axes)
            embeddings = [kept.pop(start + z, None) for z in range(len(planes))]
            start += len(planes)
            samples = self._object_samples(planes, mask, embeddings, head)
            mapping = label_mapping(labs, mask, samples.ids)
            if not mapping:
                continue
            ids = np.array(sorted(mapping), np.int64)
            labelled = samples.subset(np.searchsorted(samples.ids, ids))
            labelled.y = np.array([mapping[i] for i in ids], np.int64)
            labelled.features()
            key = len(self._samples)
            self._samples[key] = labelled if head.needs_embeddings else labelled.without_embeddings()
            self._record_intensity(key, _joined(planes))
            self.feature_names_ = list(labelled.names or [])
        if not self._samples:
            check_classes_present(np.zeros(0, np.int64), what="object labels")
        samples = ObjectSamples.concat(list(self._samples.values()))
        check_classes_present(np.unique(samples.y), what="object labels")
        keep = sample_balanced(samples.y, self.budget, random_state=self.random_state)
        head.fit(samples.subset(keep))
        self._finish_fit(head, self._current_signature())
        self.n_training_objects_ = int(len(keep))
        return self

    # -- prediction ----------------------------------------------------------
    def predict_proba(self, image: Any, mask: Any, *, axes: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, probabilities (n, K)) for every object in ``mask``."""
        check_is_fitted(self, "head_")
        self._check_signature()
        planes, mask = self._planes(image, mask, axes)
        self._warn_intensity(_joined(planes))
        samples = self._object_samples(planes, mask, head=self.head_)
        if len(samples) == 0:
            return samples.ids, np.zeros((0, len(self.classes_)), np.float32)
        if samples.features().shape[1] != self.n_features_in_ and not self.head_.needs_embeddings:
            raise InputError(f"The input gives {samples.features().shape[1]} features per object but the classifier "
                             f"was trained on {self.n_features_in_}; use images with the same channels as in training.")
        return samples.ids, self.head_.predict_proba(samples)

    def predict(self, image: Any, mask: Any, *, axes: str | None = None) -> ObjectPrediction:
        """Class of every object, and the class image (objects painted with their class)."""
        ids, proba = self.predict_proba(image, mask, axes=axes)
        classes = self.classes_[np.argmax(proba, axis=1)] if len(ids) else np.zeros(0, self.classes_.dtype)
        mask = check_instance_mask(mask, np.shape(mask))
        present, inverse = np.unique(mask, return_inverse=True)  # a lookup table sized by the objects, not the ids
        lut = np.zeros(len(present), dtype=np.int64)
        lut[np.searchsorted(present, ids)] = classes
        return ObjectPrediction(ids=ids, classes=classes, probabilities=proba, class_ids=self.classes_,
                                class_image=lut[inverse].reshape(mask.shape))

    def score(self, image: Any, mask: Any, object_labels: Any, *, axes: str | None = None) -> float:
        """Macro-F1 over the labelled objects (``object_labels``: mapping or class image)."""
        from vfm_features.evaluation.metrics import macro_f1

        pred = self.predict(image, mask, axes=axes)
        truth = label_mapping(object_labels, np.asarray(mask), pred.ids)
        if not truth:
            raise InputError("No object of the mask is labelled; pass labels for at least one object.")
        ids = np.array(sorted(truth), np.int64)
        predicted = pred.classes[np.searchsorted(pred.ids, ids)]
        return macro_f1(np.array([truth[i] for i in ids]), predicted, ignore=None)
