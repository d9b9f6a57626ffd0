"""Pixel classification: a random forest on extractor features read at labelled pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from vfm_features.features.source import build_extractor, content_key, embed_plane
from vfm_features.errors import InputError
from vfm_features.extractor import ensure_sequence
from vfm_features.classifiers.base import ForestHeadMixin
from vfm_features.heads.forest_predict import predict_proba_float32
from vfm_features.geometry import Embedding, EmbeddingGeometry
from vfm_features.preprocess import to_planes
from vfm_features.progress import progress_bar
from vfm_features.features.sampling import sample_balanced, sample_pixels
from vfm_features.features.upsample import get_upsampler
from vfm_features.validation import check_is_fitted, check_labels


class PixelClassifier(ForestHeadMixin, ClassifierMixin, BaseEstimator):
    """Random-forest pixel classifier on the features of any registered extractor.

    Training reads features only at the drawn labelled pixels (at most ``budget``,
    balanced over classes). Prediction runs in bands of ``band_rows`` rows, on
    the full image grid or on a coarser ``working_shape`` grid whose probabilities
    are interpolated back to the image (much faster, slightly blurrier).

    Parameters
    ----------
    extractor : str or FeatureExtractor
        Registered name such as ``"filters"`` or ``"sam:vit_b"``, or an instance.
    extractor_options : dict, optional
        Options passed to :func:`vfm_features.get_extractor`.
    upsampler : str
        How embedding features are read at pixels (``"bilinear"``).
    budget : int or None
        Most labelled pixels used for training, balanced over classes (None: all).
    working_shape : (int, int) or None
        Prediction grid (for example ``(256, 256)``); None predicts every pixel.
    n_estimators, max_depth, min_samples_leaf, n_jobs, random_state
        Forest settings (default: 64 trees of depth 10 on all cores, see
        :mod:`vfm_features.heads.forest_predict` and ``docs/performance.md``); ``random_state``
        also seeds the pixel draw.
    cache : EmbeddingCache, str or None
        Embedding cache (or its path) so that retraining recomputes nothing.
    band_rows : int
        Rows of the prediction grid processed at once (bounds memory).
    progress : bool
        Show progress bars.
    """

    def __init__(self, extractor: Any = "filters", *, extractor_options: dict | None = None,
                 upsampler: str = "bilinear", budget: int | None = 10_000,
                 working_shape: tuple[int, int] | None = None, n_estimators: int = 64,
                 max_depth: int | None = 10, min_samples_leaf: int = 1, n_jobs: int | None = -1,
                 random_state: int | None = 0, cache: Any = None, band_rows: int = 64,
                 progress: bool = False) -> None:
        self.extractor = extractor
        self.extractor_options = extractor_options
        self.upsampler = upsampler
        self.budget = budget
        self.working_shape = working_shape
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.cache = cache
        self.band_rows = band_rows
        self.progress = progress

    # -- training ------------------------------------------------------------
    def fit(self, images: Any, labels: Any, *, axes: str | None = None) -> "PixelClassifier":
        """Train on one image or a list of images with sparse labels (0 = unlabelled, 1..K)."""
        self._reset()
        return self.partial_fit(images, labels, axes=axes)

    def partial_fit(self, images: Any, labels: Any, *, axes: str | None = None) -> "PixelClassifier":
        """Add (or replace) labels of images and retrain on everything labelled so far.

        Labels of an image seen before replace its earlier labels, so an
        interactive tool can pass the whole, updated label image each time.
        """
        images, labels = ensure_sequence(images), ensure_sequence(labels)
        if len(images) != len(labels):
            raise InputError(f"Got {len(images)} image(s) but {len(labels)} label image(s); pass one label image per image.")
        self._start_partial_fit()
        extractor = self._get_extractor()
        up = get_upsampler(self.upsampler)
        pairs = _merge_same_images(
            [(p, l) for img, lab in zip(images, labels) for p, l in _planes_with_labels(img, lab, axes)])
        for key, (plane, lab) in progress_bar(list(pairs.items()), self.progress, desc="features at labels"):
            if not lab.any():
                self._samples.pop(key, None)
                continue
            _, coords, y = sample_pixels(lab, self.budget, random_state=self.random_state)
            emb = embed_plane(extractor, plane, self.cache, self._memo())
            X = up.sparse(emb, coords)
            self._samples[key] = (X, y)
        X, y = self._stacked_samples("labels")
        keep = sample_balanced(y, self.budget, random_state=self.random_state)
        self._fit_forest(X[keep], y[keep], extractor.signature())
        self.n_training_pixels_ = int(len(keep))
        return self

    # -- prediction ----------------------------------------------------------
    def predict_proba(self, image: Any, *, axes: str | None = None) -> np.ndarray:
        """Class probabilities with shape (K, H, W) for a 2D image, (..., K, H, W) for a stack."""
        check_is_fitted(self, "forest_")
        extractor = self._get_extractor()
        planes, stack = to_planes(image, axes)
        out = [self._predict_plane(extractor, p) for p in progress_bar(planes, self.progress and len(planes) > 1, desc="predict")]
        arr = np.stack(out)
        return arr.reshape(stack + arr.shape[1:]) if stack else arr[0]

    def predict(self, image: Any, *, axes: str | None = None) -> np.ndarray:
        """Class map with shape (H, W) (or stack shape + (H, W)) holding the label ids 1..K."""
        proba = self.predict_proba(image, axes=axes)
        return self.classes_[np.argmax(proba, axis=-3)]

    def score(self, image: Any, labels: Any, *, axes: str | None = None) -> float:
        """Macro-F1 of the prediction over the labelled pixels of ``labels`` (0 = unlabelled)."""
        from vfm_features.evaluation.metrics import macro_f1

        pred = self.predict(image, axes=axes)
        labels = np.asarray(labels)
        if labels.shape != pred.shape:
            raise InputError(f"labels have shape {labels.shape} but the prediction is {pred.shape}.")
        return macro_f1(labels, pred)

    def _predict_plane(self, extractor, plane: np.ndarray) -> np.ndarray:
        emb = embed_plane(extractor, plane, self.cache, self._memo())
        self._check_features(extractor, emb.n_features)
        H, W = plane.shape[:2]
        grid = tuple(self.working_shape) if self.working_shape else (H, W)
        grid = (min(grid[0], H), min(grid[1], W))
        up = get_upsampler(self.upsampler)
        K = len(self.classes_)
        proba = np.empty((K,) + grid, np.float32)
        for r0 in range(0, grid[0], self.band_rows):
            rows = slice(r0, min(grid[0], r0 + self.band_rows))
            feats = up.dense(emb, grid, rows=rows)
            X = feats.reshape(feats.shape[0], -1).T
            proba[:, rows] = predict_proba_float32(self.forest_, X).T.reshape(K, -1, grid[1])
        if grid != (H, W):
            coarse = Embedding(proba, EmbeddingGeometry((H, W), step=(H / grid[0], W / grid[1])))
            proba = up.dense(coarse, (H, W))
        return proba

    # -- extractor bookkeeping -----------------------------------------------
    def _get_extractor(self):
        if getattr(self, "extractor_", None) is None:
            extractor = build_extractor(self.extractor, self.extractor_options)
            if getattr(extractor, "kind", "pixel") != "pixel":
                raise InputError(
                    f"{extractor.name} computes per-object features; a PixelClassifier needs a pixel extractor "
                    "such as 'filters' or 'sam:vit_b' (use ObjectClassifier for object features).")
            self.extractor_ = extractor
        return self.extractor_


def _merge_same_images(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Key each plane by content; labels of the same plane given twice are merged (later ones win)."""
    merged: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for plane, lab in pairs:
        key = content_key(plane)
        if key in merged:
            lab = np.where(lab > 0, lab, merged[key][1])
        merged[key] = (plane, lab)
    return merged


def _planes_with_labels(image: Any, labels: Any, axes: str | None) -> list[tuple[np.ndarray, np.ndarray]]:
    planes, stack = to_planes(image, axes)
    lab = np.asarray(labels)
    plane_shape = planes[0].shape[:2]
    if lab.shape != tuple(stack) + plane_shape:
        raise InputError(
            f"labels have shape {lab.shape} but the image has planes of {plane_shape}"
            f"{' in a stack of ' + str(stack) if stack else ''}; labels must have shape {tuple(stack) + plane_shape}.")
    lab = lab.reshape((-1,) + plane_shape)
    return [(p, check_labels(l, plane_shape)) for p, l in zip(planes, lab)]


