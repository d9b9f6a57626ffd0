"""Object classification: a random forest on per-object features (regionprops or aggregated embeddings)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from vfm_features.features.source import build_extractor, embed_plane
from vfm_features.features.aggregate import EmbeddingObjectFeatures
from vfm_features.errors import InputError
from vfm_features.extractor import ObjectFeatures, ensure_sequence
from vfm_features.classifiers.base import ForestHeadMixin
from vfm_features.heads.forest_predict import predict_proba_float32
from vfm_features.preprocess import to_planes
from vfm_features.progress import progress_bar
from vfm_features.features.sampling import sample_balanced
from vfm_features.validation import check_instance_mask, check_is_fitted, check_labels


@dataclass
class ObjectPrediction:
    """Per-object result: ``classes[i]`` and ``probabilities[i]`` belong to object ``ids[i]``."""

    ids: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray  # (n, K) in the order of ``class_ids``
    class_ids: np.ndarray
    class_image: np.ndarray  # (Y, X): each object painted with its class, 0 = background

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


class ObjectClassifier(ForestHeadMixin, ClassifierMixin, BaseEstimator):
    """Random-forest classifier of segmented objects.

    With an object extractor (``"regionprops"``) its features are used as they are;
    with a pixel extractor (``"filters"``, ``"sam:vit_b"``...) each object's feature
    is the mean (and optionally std/min/max) of the upsampled embedding over its
    mask, plus its area.

    Object labels are given per image as a mapping ``{object id: class}`` or as a
    class image, reduced to one class per object by majority vote.
    """

    def __init__(self, extractor: Any = "regionprops", *, extractor_options: dict | None = None,
                 stats: Sequence[str] = ("mean",), include_area: bool = True, upsampler: str = "bilinear",
                 budget: int | None = None, n_estimators: int = 200, max_depth: int | None = None,
                 min_samples_leaf: int = 1, n_jobs: int | None = -1, random_state: int | None = 0,
                 cache: Any = None, progress: bool = False) -> None:
        self.extractor = extractor
        self.extractor_options = extractor_options
        self.stats = stats
        self.include_area = include_area
        self.upsampler = upsampler
        self.budget = budget
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.cache = cache
        self.progress = progress

    # -- features ------------------------------------------------------------
    def _get_object_extractor(self):
        if getattr(self, "object_extractor_", None) is None:
            self._use_extractor(build_extractor(self.extractor, self.extractor_options))
        return self.object_extractor_

    def _use_extractor(self, base) -> None:
        """Use ``base`` (object or pixel extractor instance) for the object features."""
        if getattr(base, "kind", "pixel") == "object":
            self.object_extractor_ = base
        else:
            self.object_extractor_ = EmbeddingObjectFeatures(
                base, stats=tuple(self.stats), include_area=self.include_area, upsampler=self.upsampler,
                embed=functools.partial(embed_plane, base, cache=self.cache, memo=self._memo()))

    def object_features(self, image: Any, mask: Any, *, axes: str | None = None) -> ObjectFeatures:
        """The per-object features this classifier uses for ``image`` and its instance ``mask``."""
        planes, stack = to_planes(image, axes)
        if stack:
            raise InputError("ObjectClassifier takes 2D images; loop over the planes of a stack.")
        mask = check_instance_mask(mask, planes[0].shape[:2])
        return self._get_object_extractor().object_features(image, mask, axes=axes)

    # -- training ------------------------------------------------------------
    def fit(self, images: Any, masks: Any, object_labels: Any, *, axes: str | None = None) -> "ObjectClassifier":
        """Train on images, their instance masks and object labels (mapping or class image per image)."""
        self._reset()
        return self.partial_fit(images, masks, object_labels, axes=axes)

    def partial_fit(self, images: Any, masks: Any, object_labels: Any, *,
                    axes: str | None = None) -> "ObjectClassifier":
        """Add labelled objects of more images and retrain on everything labelled so far."""
        images, masks = ensure_sequence(images), ensure_sequence(masks)
        object_labels = [object_labels] if isinstance(object_labels, (Mapping, np.ndarray)) else list(object_labels)
        if not len(images) == len(masks) == len(object_labels):
            raise InputError(
                f"Got {len(images)} image(s), {len(masks)} mask(s) and {len(object_labels)} label set(s); "
                "pass one mask and one label set per image.")
        self._start_partial_fit()
        for img, mask, labs in progress_bar(list(zip(images, masks, object_labels)), self.progress,
                                            desc="object features"):
            feats = self.object_features(img, mask, axes=axes)
            mapping = self._label_mapping(labs, np.asarray(mask), feats.ids)
            if not mapping:
                continue
            ids = np.array(sorted(mapping), np.int64)
            rows = np.searchsorted(feats.ids, ids)
            y = np.array([mapping[i] for i in ids], np.int64)
            self._samples[len(self._samples)] = (feats.values[rows], y)
            self.feature_names_ = feats.names
        X_all, y_all = self._stacked_samples("object labels")
        keep = sample_balanced(y_all, self.budget, random_state=self.random_state)
        self._fit_forest(X_all[keep], y_all[keep], self._get_object_extractor().signature())
        self.n_training_objects_ = int(len(keep))
        return self

    @staticmethod
    def _label_mapping(labels: Any, mask: np.ndarray, ids: np.ndarray) -> dict[int, int]:
        if isinstance(labels, Mapping):
            mapping = {int(k): int(v) for k, v in labels.items() if int(v) != 0}
            unknown = sorted(set(mapping) - set(ids.tolist()))
            if unknown:
                raise InputError(
                    f"Object labels name id(s) {unknown[:5]} that are not in the instance mask; "
                    "label only objects present in the mask.")
            bad = [v for v in mapping.values() if v < 0]
            if bad:
                raise InputError(f"Object classes must be positive integers; got {bad[:5]}.")
            return mapping
        class_image = check_labels(labels, mask.shape, name="class image")
        return majority_vote(mask, class_image)

    # -- prediction ----------------------------------------------------------
    def predict_proba(self, image: Any, mask: Any, *, axes: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, probabilities (n, K)) for every object in ``mask``."""
        check_is_fitted(self, "forest_")
        extractor = self._get_object_extractor()
        feats = self.object_features(image, mask, axes=axes)
        self._check_features(extractor, feats.values.shape[1])
        if len(feats.ids) == 0:
            return feats.ids, np.zeros((0, len(self.classes_)), np.float32)
        return feats.ids, predict_proba_float32(self.forest_, feats.values)

    def predict(self, image: Any, mask: Any, *, axes: str | None = None) -> ObjectPrediction:
        """Class of every object, and the class image (objects painted with their class)."""
        ids, proba = self.predict_proba(image, mask, axes=axes)
        classes = self.classes_[np.argmax(proba, axis=1)] if len(ids) else np.zeros(0, self.classes_.dtype)
        mask = np.asarray(mask).astype(np.int64)
        present, inverse = np.unique(mask, return_inverse=True)  # a lookup table sized by the objects, not the ids
        lut = np.zeros(len(present), dtype=np.int64)
        lut[np.searchsorted(present, ids)] = classes
        return ObjectPrediction(ids=ids, classes=classes, probabilities=proba, class_ids=self.classes_,
                                class_image=lut[inverse].reshape(mask.shape))

    def score(self, image: Any, mask: Any, object_labels: Any, *, axes: str | None = None) -> float:
        """Macro-F1 over the labelled objects (``object_labels``: mapping or class image)."""
        from vfm_features.evaluation.metrics import macro_f1

        pred = self.predict(image, mask, axes=axes)
        truth = self._label_mapping(object_labels, np.asarray(mask), pred.ids)
        if not truth:
            raise InputError("No object of the mask is labelled; pass labels for at least one object.")
        ids = np.array(sorted(truth), np.int64)
        predicted = pred.classes[np.searchsorted(pred.ids, ids)]
        return macro_f1(np.array([truth[i] for i in ids]), predicted, ignore=None)
