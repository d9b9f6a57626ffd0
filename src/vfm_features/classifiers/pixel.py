"""Pixel classification: a head (a random forest by default) on extractor features at labelled pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm_features.errors import InputError
from vfm_features.extractor import ensure_sequence
from vfm_features.features.sampling import sample_balanced, sample_pixels
from vfm_features.features.source import embed_planes
from vfm_features.features.upsample import resize_probabilities
from vfm_features.hashing import content_hash
from vfm_features.heads.base import PixelSamples
from vfm_features.preprocess import check_volume_stack, to_planes
from vfm_features.progress import progress_bar
from vfm_features.validation import (
    check_classes_present,
    check_int,
    check_is_fitted,
    check_labels,
    check_shape_pair,
    warn_if_instance_mask,
)

from .base import BaseClassifier


class PixelClassifier(BaseClassifier):
    """Pixel classifier on the features of any registered extractor, read by any upsampler, with any head.

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
    upsampler : str or Upsampler
        How embedding features are read at pixels (``"bilinear"``; see ``vfm-features list --upsamplers``).
    upsampler_options : dict, optional
        Options passed to :func:`vfm_features.get_upsampler`.
    head : str or PixelHead
        The classification head (``"rf"``: 64 trees of depth 10, at most 4096 labels per tree, all cores; see
        ``vfm-features list --heads``), or an instance.
    head_options : dict, optional
        Options of the head, e.g. ``{"n_estimators": 100}`` for ``rf``.
    reduce : int or None
        Reduce the embedding channels to this many principal components before
        upsampling (a PCA fitted on every cell of the training images' embeddings by
        ``fit``, kept by ``partial_fit``, saved with the classifier); None keeps them all.
    budget : int or None
        Most labelled pixels used for training, balanced over classes (None: all).
    working_shape : (int, int) or None
        Prediction grid (for example ``(256, 256)``); None predicts every pixel.
        The upsampler answers on that grid (bilinear: the interpolated features
        there; anyup: the features of the pixel nearest each grid point), and the
        class probabilities are interpolated back to the image.
    n_jobs, random_state
        Threads and seed; passed to heads that take them (unless ``head_options``
        sets them); ``random_state`` also seeds the pixel draw.
    cache : EmbeddingCache, str or None
        Embedding cache (or its path) so that retraining recomputes nothing.
    band_rows : int
        Rows of the prediction grid processed at once (bounds memory).
    progress : bool or callable
        Show progress bars (or call ``progress(done, total)``).
    """

    _kind = "pixel"

    def __init__(self, extractor: Any = "filters", *, extractor_options: dict | None = None,
                 upsampler: Any = "bilinear", upsampler_options: dict | None = None, head: Any = "rf",
                 head_options: dict | None = None, reduce: int | None = None, budget: int | None = 10_000,
                 working_shape: tuple[int, int] | None = None, n_jobs: int | None = -1,
                 random_state: int | None = 0, cache: Any = None, band_rows: int = 64,
                 progress: Any = False) -> None:
        self.extractor = extractor
        self.extractor_options = extractor_options
        self.upsampler = upsampler
        self.upsampler_options = upsampler_options
        self.head = head
        self.head_options = head_options
        self.reduce = reduce
        self.budget = budget
        self.working_shape = working_shape
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.cache = cache
        self.band_rows = band_rows
        self.progress = progress

    def _check_params(self) -> None:
        super()._check_params()
        check_shape_pair(self.working_shape, "working_shape")
        check_int(self.band_rows, "band_rows", hint="rows of the prediction grid processed at once, e.g. 64")

    def _check_extractor_kind(self, extractor: Any) -> None:
        if getattr(extractor, "kind", "pixel") != "pixel":
            raise InputError(
                f"{extractor.name} computes per-object features; a PixelClassifier needs a pixel extractor "
                "such as 'filters' or 'sam:vit_b' (use ObjectClassifier for object features).")

    # -- training ------------------------------------------------------------
    def fit(self, images: Any, labels: Any, *, axes: str | None = None) -> "PixelClassifier":
        """Train on one image or a list of images with sparse labels (0 = unlabelled, 1..K)."""
        self._reset()
        return self.partial_fit(images, labels, axes=axes)

    def partial_fit(self, images: Any, labels: Any, *, axes: str | None = None) -> "PixelClassifier":
        """Add (or replace) the labels of some images and retrain on everything labelled so far."""
        self._check_params()
        images, labels = ensure_sequence(images, "images"), ensure_sequence(labels, "label images")
        if len(images) != len(labels):
            raise InputError(f"Got {len(images)} image(s) but {len(labels)} label image(s); pass one label "
                             "image per image.")
        self._start_partial_fit()
        extractor, upsampler = self._components()
        head = self._new_head()
        if getattr(extractor, "volumetric", False):
            self._fit_volumes(extractor, upsampler, head, images, labels, axes)
            return self
        pairs = _merge_same_images(
            [(p, lab) for img, labs in zip(images, labels) for p, lab in _planes_with_labels(img, labs, axes)])
        kept: dict[str, Any] = {}
        labelled = [key for key, (_, lab) in pairs.items() if lab.any()]
        if self.reduce is not None and getattr(self, "reduction_", None) is None and labelled:
            fitted = self._fit_reduction(extractor, [pairs[key][0] for key in labelled])
            kept = {labelled[i]: emb for i, emb in fitted.items()}
            extractor, upsampler = self._components()
        for key, (plane, lab) in progress_bar(list(pairs.items()), self.progress, desc="features at labels"):
            if not lab.any():
                self._samples.pop(key, None)
                self._intensities.pop(key, None)
                continue
            warn_if_instance_mask(lab)
            _, coords, y = sample_pixels(lab, self.budget, random_state=self.random_state)
            emb = kept.pop(key, None)
            samples = PixelSamples([self._embed(extractor, plane) if emb is None else emb], [plane],
                                   np.zeros(len(y), np.int64), coords, upsampler, y)
            samples.features()
            self._samples[key] = samples if head.needs_embeddings else samples.without_embeddings()
            self._record_intensity(key, plane)
        self._fit_head(head)
        return self

    def _fit_volumes(self, extractor: Any, upsampler: Any, head: Any, images: list, labels: list,
                     axes: str | None) -> None:
        """partial_fit for a volumetric extractor (3D filters): each image is one volume, embedded as a whole."""
        if self.reduce is not None:
            raise InputError(f"reduce={self.reduce} is not supported with a volumetric extractor (3D filters); "
                             "drop reduce, or use ndim=2.")
        volumes = _merge_same_images([_volume_with_labels(img, labs, axes, extractor.name)
                                      for img, labs in zip(images, labels)])
        for key, (volume, lab) in progress_bar(list(volumes.items()), self.progress, desc="features at labels"):
            if not lab.any():
                self._samples.pop(key, None)
                self._intensities.pop(key, None)
                continue
            warn_if_instance_mask(lab)
            planes = list(volume)
            z, coords, y = sample_pixels(list(lab), self.budget, random_state=self.random_state)
            samples = PixelSamples(embed_planes(extractor, planes, self.cache, self._memo()), planes, z, coords,
                                   upsampler, y)
            samples.features()
            self._samples[key] = samples if head.needs_embeddings else samples.without_embeddings()
            self._record_intensity(key, np.concatenate(planes, axis=0))
        self._fit_head(head)

    def _fit_head(self, head: Any) -> None:
        """Fit ``head`` on a balanced draw of every sample kept so far."""
        if not self._samples:
            check_classes_present(np.zeros(0, np.int64), what="labels")
        samples = PixelSamples.concat(list(self._samples.values()))
        check_classes_present(np.unique(samples.y), what="labels")
        keep = sample_balanced(samples.y, self.budget, random_state=self.random_state)
        head.fit(samples.subset(keep))
        self._finish_fit(head, self._current_signature())
        self.n_training_pixels_ = int(len(keep))

    # -- prediction ----------------------------------------------------------
    def predict_proba(self, image: Any, *, axes: str | None = None) -> np.ndarray:
        """Class probabilities with shape (K, H, W) for a 2D image, (..., K, H, W) for a stack."""
        check_is_fitted(self, "head_")
        self._check_signature()
        planes, stack = to_planes(image, axes)
        extractor, _ = self._components()
        embeddings: list[Any] = [None] * len(planes)
        if getattr(extractor, "volumetric", False):
            check_volume_stack(axes, stack, extractor.name)
            embeddings = embed_planes(extractor, planes, self.cache, self._memo())
        out = [self.predict_proba_plane(p, embedding=e) for p, e in
               progress_bar(list(zip(planes, embeddings)), self.progress if len(planes) > 1 else False,
                            desc="predict")]
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

    def predict_proba_plane(self, plane: np.ndarray, *, region: Any = None, grid: tuple[int, int] | None = None,
                            embedding: Any = None) -> np.ndarray:
        """(K, H, W) probabilities of a validated (Y, X, C) plane (``region`` of it, on ``grid``).

        ``grid`` defaults to ``working_shape`` (clipped to the plane); ``region``
        = (row slice, column slice) of the grid limits the output, which is then
        not resized back to the plane (block prediction reads it as it is).
        ``embedding`` skips embedding the plane (the caller computed it: the
        extractor's embedding, which a channel reduction then reduces like any other).
        """
        check_is_fitted(self, "head_")
        extractor, upsampler = self._components()
        self._warn_intensity(plane)
        emb = self._embed(extractor, plane) if embedding is None else embedding
        if upsampler.n_features(emb) != self.n_features_in_:
            raise InputError(
                f"The input gives {upsampler.n_features(emb)} features but the classifier was trained on "
                f"{self.n_features_in_}; use images with the same channels as in training.")
        H, W = plane.shape[:2]
        if grid is None:
            grid = tuple(self.working_shape) if self.working_shape else (H, W)
            grid = (min(grid[0], H), min(grid[1], W))
        rows_all, cols = (slice(0, grid[0]), slice(0, grid[1])) if region is None else region
        r0, r1 = rows_all.indices(grid[0])[:2]
        c0, c1 = cols.indices(grid[1])[:2]
        proba = np.empty((len(self.classes_), r1 - r0, c1 - c0), np.float32)
        for start in range(r0, r1, self.band_rows):
            rows = slice(start, min(r1, start + self.band_rows))
            proba[:, rows.start - r0:rows.stop - r0] = self.head_.predict_proba_dense(
                emb, plane, upsampler, grid, (rows, slice(c0, c1)))
        if region is None and grid != (H, W):
            proba = resize_probabilities(proba, (H, W))
        return proba


def _merge_same_images(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Key each plane by content; labels of the same plane given twice are merged (later ones win)."""
    merged: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for plane, lab in pairs:
        key = content_hash(plane)
        if key in merged:
            lab = np.where(lab > 0, lab, merged[key][1])
        merged[key] = (plane, lab)
    return merged


def _volume_with_labels(image: Any, labels: Any, axes: str | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(volume (Z, Y, X, C), checked labels (Z, Y, X)) of one ZYX / ZYXC image for a volumetric extractor."""
    planes, stack = to_planes(image, axes)
    check_volume_stack(axes, stack, name)
    return np.stack(planes), np.stack([lab for _, lab in _with_labels(planes, stack, labels)])


def _planes_with_labels(image: Any, labels: Any, axes: str | None) -> list[tuple[np.ndarray, np.ndarray]]:
    return _with_labels(*to_planes(image, axes), labels)


def _with_labels(planes: list[np.ndarray], stack: tuple[int, ...], labels: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(plane, checked labels) pairs; ``labels`` has the stack's shape + the planes' (Y, X)."""
    lab = np.asarray(labels)
    plane_shape = planes[0].shape[:2]
    if lab.shape != tuple(stack) + plane_shape:
        raise InputError(
            f"labels have shape {lab.shape} but the image has planes of {plane_shape}"
            f"{' in a stack of ' + str(stack) if stack else ''}; labels must have shape {tuple(stack) + plane_shape}.")
    lab = lab.reshape((-1,) + plane_shape)
    return [(p, check_labels(lab_i, plane_shape)) for p, lab_i in zip(planes, lab)]
