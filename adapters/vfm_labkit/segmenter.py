"""LabKit's ``Segmenter`` loop in Python: train on images with labellings, segment, predict, save, open.

It follows LabKit's interface (``sc.fiji.labkit.ui.segmentation.Segmenter``): classes are the
label names of the labellings, in order of first appearance; where a pixel carries several
labels the earliest class wins; :meth:`Segmenter.segment` returns class indices into
:attr:`Segmenter.class_names` (0-based) and :meth:`Segmenter.predict` one probability map per
class. Features come from any registered extractor, read by any upsampler, classified by any
head (a random forest by default), through :class:`vfm_features.PixelClassifier`.

Embeddings go through an :class:`vfm_features.EmbeddingCache` (a temporary one unless you give
a path), so :meth:`Segmenter.update` - more strokes drawn, new labels, more images -
retrains without recomputing any embedding (``PixelClassifier.partial_fit``).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

import vfm_features as vf

from vfm_labkit import model_file
from vfm_labkit.labeling import PALETTE, Labeling

_EMPTY = ("error", "ignore")


class EmptyLabelWarning(UserWarning):
    """A label of the labellings has no strokes and is left out of the classes."""


def _axes_for(image: np.ndarray, spatial: int | None) -> str:
    """Axes of an image: from the labelling's dimensions when known, else as ilastik guesses them."""
    if spatial == 2:
        axes = {2: "YX", 3: "YXC"}.get(image.ndim)
    elif spatial == 3:
        axes = {3: "ZYX", 4: "ZYXC"}.get(image.ndim)
    else:
        axes = {2: "YX", 3: "YXC" if image.shape[-1] <= 4 else "ZYX", 4: "ZYXC"}.get(image.ndim)
    if axes is None:
        raise vf.InputError(f"An image of shape {image.shape} does not fit a "
                            f"{'%dD ' % spatial if spatial else ''}labelling; give YX, YXC, ZYX or ZYXC images.")
    return axes


def _as_zyxc(image: Any, axes: str | None, spatial: int | None = None) -> np.ndarray:
    image = np.asarray(image)
    axes = (axes or _axes_for(image, spatial)).upper()
    if axes not in ("YX", "YXC", "ZYX", "ZYXC") or len(axes) != image.ndim:
        raise vf.InputError(f"axes={axes!r} does not fit an image of shape {image.shape}; use YX, YXC, ZYX or ZYXC.")
    vol = image if "Z" in axes else image[None]
    return vol if axes.endswith("C") else vol[..., None]


def _label_stack(labeling: Labeling, names: list[str]) -> np.ndarray:
    image = labeling.to_label_image(names)
    return image if image.ndim == 3 else image[None]


def _key(vol: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((vol.shape, vol.dtype.str)).encode())
    h.update(np.ascontiguousarray(vol).tobytes())
    return h.hexdigest()


class Segmenter:
    """A pixel classifier trained on LabKit labellings.

    Parameters
    ----------
    extractor, extractor_options, upsampler, upsampler_options, head, head_options, budget,
    working_shape, n_jobs, random_state
        As for :class:`vfm_features.PixelClassifier` (default: the ``filters`` bank, bilinear
        upsampling, the ``rf`` forest).
    cache : EmbeddingCache, path or None
        Where embeddings are kept; ``None`` makes a temporary cache that lives as long as
        this segmenter (zarr is needed: ``pip install 'vfm-features[cache]'``; without it
        only the last image's embedding is kept).
    empty_labels : "error" or "ignore"
        What to do with a label that has no strokes in any labelling: refuse (default), or
        leave it out of the classes with an :class:`EmptyLabelWarning`.
    """

    def __init__(self, extractor: Any = "filters", *, extractor_options: dict | None = None,
                 upsampler: Any = "bilinear", upsampler_options: dict | None = None, head: Any = "rf",
                 head_options: dict | None = None, budget: int | None = 10_000,
                 working_shape: tuple[int, int] | None = None, cache: Any = None, empty_labels: str = "error",
                 n_jobs: int | None = -1, random_state: int | None = 0) -> None:
        if empty_labels not in _EMPTY:
            raise vf.InputError(f"empty_labels={empty_labels!r}; use one of {_EMPTY}.")
        self.empty_labels = empty_labels
        self.cache, self._tmp = vf.session_cache(cache, prefix="vfm-labkit-cache-")
        self._params = dict(extractor=extractor, extractor_options=extractor_options, upsampler=upsampler,
                            upsampler_options=upsampler_options, head=head, head_options=head_options,
                            budget=budget, working_shape=working_shape, n_jobs=n_jobs, random_state=random_state)
        self.classifier: Any = None
        self.class_names: list[str] = []
        self.colors: dict[str, str] = {}
        self._counts: dict[str, dict[str, int]] = {}  # image key -> label -> strokes (pixels)

    # -- LabKit's interface ---------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return self.classifier is not None

    def train(self, training_data: Iterable[tuple[Any, Labeling]], *, axes: str | None = None) -> "Segmenter":
        """Train on exactly these (image, labelling) pairs (LabKit's ``train``)."""
        pairs = self._pairs(training_data, axes)
        counts = {key: lab.counts() for key, _, lab in pairs}
        names = self._classes([lab for _, _, lab in pairs], counts, [])
        clf = vf.PixelClassifier(cache=self.cache, **self._params)
        clf.fit([vol for _, vol, _ in pairs], [_label_stack(lab, names) for _, _, lab in pairs], axes="ZYXC")
        self.classifier, self.class_names, self._counts = clf, names, counts
        self._remember_colors([lab for _, _, lab in pairs])
        return self

    def update(self, training_data: Iterable[tuple[Any, Labeling]], *, axes: str | None = None) -> "Segmenter":
        """Continue training: add or replace the labellings of these images, keep the others.

        Labels new to the segmenter become new classes. Embeddings come from the cache, so
        nothing is recomputed for an image seen before.
        """
        if self.classifier is None:
            return self.train(training_data, axes=axes)
        pairs = self._pairs(training_data, axes)
        counts = {**self._counts, **{key: lab.counts() for key, _, lab in pairs}}
        names = self._classes([lab for _, _, lab in pairs], counts, self.class_names)
        self.classifier.partial_fit([vol for _, vol, _ in pairs], [_label_stack(lab, names) for _, _, lab in pairs],
                                    axes="ZYXC")
        self.class_names, self._counts = names, counts
        self._remember_colors([lab for _, _, lab in pairs])
        return self

    def segment(self, image: Any, *, axes: str | None = None) -> np.ndarray:
        """Class index of every pixel into :attr:`class_names` (LabKit's ``segment``): (Y, X) or (Z, Y, X)."""
        image, axes = self._image(image, axes)
        ids = self._checked().predict(image, axes=axes)
        index = ids.astype(np.int64) - 1
        dtype = np.uint8 if len(self.class_names) <= 256 else np.uint16
        return index.astype(dtype)

    def predict(self, image: Any, *, axes: str | None = None) -> np.ndarray:
        """Probabilities (K, Y, X), or (Z, K, Y, X), in the order of :attr:`class_names` (LabKit's ``predict``)."""
        image, axes = self._image(image, axes)
        return self._checked().predict_proba(image, axes=axes)

    def segment_labeling(self, image: Any, *, axes: str | None = None) -> Labeling:
        """The segmentation as a labelling (each class a label, in its colour), to open in LabKit."""
        index = self.segment(image, axes=axes)
        return Labeling.from_label_image(index.astype(np.int64) + 1, self.class_names, dict(self.colors))

    def save_model(self, path: str | os.PathLike) -> Path:
        """Save to a ``.vfmseg`` file (LabKit's ``.classifier`` is a Java-serialised Weka forest; this is ours)."""
        return model_file.save_model(self._checked(), self.class_names, self.colors, path)

    @classmethod
    def open_model(cls, path: str | os.PathLike, *, cache: Any = None, extractor_options: dict | None = None,
                   max_bytes: int = model_file.MAX_BYTES) -> "Segmenter":
        """A segmenter from a saved model (it segments and predicts; to train more, call ``train``)."""
        seg = cls(cache=cache)
        clf, names, colors = model_file.open_model(path, max_bytes=max_bytes, extractor_options=extractor_options,
                                                   cache=seg.cache)
        seg.classifier, seg.class_names, seg.colors = clf, names, colors
        seg._params.update(extractor=clf.extractor, extractor_options=clf.extractor_options,
                           upsampler=clf.upsampler, upsampler_options=clf.upsampler_options, head=clf.head,
                           head_options=clf.head_options, budget=clf.budget, working_shape=clf.working_shape,
                           n_jobs=clf.n_jobs, random_state=clf.random_state)
        return seg

    def close(self) -> None:
        """Remove the temporary embedding cache (if this segmenter made one)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- helpers ------------------------------------------------------------------------------
    def _checked(self) -> Any:
        if self.classifier is None:
            raise vf.NotFittedError("This Segmenter is not trained yet; call train([(image, labeling), ...]) first.")
        return self.classifier

    def _image(self, image: Any, axes: str | None) -> tuple[np.ndarray, str]:
        image = np.asarray(image)
        return image, (axes or _axes_for(image, None)).upper()

    def _pairs(self, training_data: Iterable[tuple[Any, Labeling]], axes: str | None
               ) -> list[tuple[str, np.ndarray, Labeling]]:
        pairs = []
        for item in training_data:
            if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[1], Labeling):
                raise vf.InputError("Training data are (image, Labeling) pairs, as LabKit's train takes; read "
                                    "labellings with vfm_labkit.open_labeling(path).")
            image, labeling = item
            vol = _as_zyxc(image, axes, len(labeling.shape))
            spatial = vol.shape[:3] if len(labeling.shape) == 3 else vol.shape[1:3]
            if tuple(spatial) != labeling.shape:
                raise vf.InputError(f"The image's size {tuple(spatial)} and the labelling's {labeling.shape} differ "
                                    "(numpy order); a labelling is drawn on its own image (LabKit: <image>.labeling).")
            pairs.append((_key(vol), vol, labeling))
        if not pairs:
            raise vf.InputError("No training data; give at least one (image, labeling) pair.")
        return pairs

    def _classes(self, labelings: Sequence[Labeling], counts: dict[str, dict[str, int]], known: list[str]
                 ) -> list[str]:
        """Class names: those known, then new label names in order of first appearance (LabKit's order)."""
        names = list(known)
        for lab in labelings:
            names += [n for n in lab.names if n not in names]
        total = {n: sum(c.get(n, 0) for c in counts.values()) for n in names}
        empty = [n for n in names if total[n] == 0]
        if empty and self.empty_labels == "error":
            raise vf.InputError(
                f"Label(s) {empty} have no strokes in any labelling; draw some in LabKit or delete the label, or "
                "pass empty_labels='ignore' to leave them out of the classes.")
        if empty:
            warnings.warn(f"Label(s) {empty} have no strokes and are left out of the classes.", EmptyLabelWarning,
                          stacklevel=3)
            if any(n in known for n in empty):
                raise vf.InputError(f"Class(es) {[n for n in empty if n in known]} of this segmenter lost all their "
                                    "strokes; call train() with all the data to start again without them.")
            names = [n for n in names if n not in empty]
        if len(names) < 2:
            raise vf.InputError(f"Training needs at least two labels with strokes; got {names}. Draw strokes of a "
                                "second label (LabKit's default labels are 'background' and 'foreground').")
        return names

    def _remember_colors(self, labelings: Sequence[Labeling]) -> None:
        for lab in labelings:
            for name in lab.names:
                if name in self.class_names:
                    self.colors.setdefault(name, lab.colors.get(name, PALETTE[len(self.colors) % len(PALETTE)]))
