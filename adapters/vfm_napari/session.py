"""What the napari widget runs, without Qt: embed, train and predict on an image and its strokes.

:meth:`Session.steps` is a generator that yields :class:`Progress` after each step and
returns a :class:`Result`; the widget runs it in napari's ``thread_worker`` (so the viewer
never waits) and scripts or tests call :meth:`Session.run`. Embeddings go through one
:class:`vfm_features.EmbeddingCache` for the whole session (a temporary one unless a path
is given), so training again after more strokes, or with another head, recomputes no
embedding; built extractors are kept too (a model loads once).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import numpy as np

import vfm_features as vf


@dataclass(frozen=True)
class Settings:
    """The choices of the widget: registered names and a few options."""

    extractor: str = "filters:default"
    upsampler: str = "bilinear"
    head: str = "rf"
    head_options: dict = field(default_factory=dict)
    probabilities: bool = False
    working_shape: tuple[int, int] | None = None


@dataclass(frozen=True)
class Progress:
    stage: str  # "embedding", "training" or "predicting"
    done: int
    total: int


@dataclass
class Result:
    classes: np.ndarray  # the image's shape without channels: predicted stroke ids
    class_ids: np.ndarray  # (K,) the stroke ids that were classes
    probabilities: np.ndarray | None  # (K, ...) per class, or None
    seconds: dict[str, float]  # time of each stage


def image_axes(image: np.ndarray, rgb: bool = False) -> str:
    """Axes of a napari Image layer's data: YX, YXC (rgb) or ZYX."""
    if rgb and image.ndim == 3:
        return "YXC"
    axes = {2: "YX", 3: "ZYX"}.get(image.ndim)
    if axes is None:
        raise vf.InputError(f"The image layer has shape {image.shape}; the widget takes 2D images, RGB images and "
                            "3D stacks (Z, Y, X).")
    return axes


class Session:
    """Embedding cache and built extractors shared by every run of one widget."""

    def __init__(self, cache: Any = None) -> None:
        self.cache, self._tmp = vf.session_cache(cache, prefix="vfm-napari-cache-")
        self._extractors: dict[str, Any] = {}
        self.classifier: Any = None

    def extractor(self, name: str) -> Any:
        if name not in self._extractors:
            self._extractors[name] = vf.get_extractor(name)
        return self._extractors[name]

    def steps(self, image: Any, strokes: Any, settings: Settings, *, rgb: bool = False
              ) -> Generator[Progress, None, Result]:
        """Embed every plane, train on the strokes (0 = unlabelled), predict every plane."""
        image, strokes = np.asarray(image), np.asarray(strokes)
        axes = image_axes(image, rgb)
        spatial = image.shape[:-1] if axes == "YXC" else image.shape
        if strokes.shape != spatial:
            raise vf.InputError(f"The labels layer has shape {strokes.shape} but the image {spatial}; draw the "
                                "strokes on a labels layer of the image's size.")
        planes = [image] if "Z" not in axes else list(image)
        plane_axes = axes.replace("Z", "")
        total = len(planes)
        seconds = {}
        t0 = time.perf_counter()
        ext = self.extractor(settings.extractor)
        if self.cache is not None:
            for i, plane in enumerate(planes):
                self.cache.embed(ext, plane, axes=plane_axes)
                yield Progress("embedding", i + 1, total)
        seconds["embedding"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        yield Progress("training", 0, 1)
        clf = vf.PixelClassifier(ext, upsampler=settings.upsampler, head=settings.head,
                                 head_options=dict(settings.head_options) or None,
                                 working_shape=settings.working_shape, cache=self.cache)
        clf.fit(image, strokes, axes=axes)
        self.classifier = clf
        seconds["training"] = time.perf_counter() - t0
        yield Progress("training", 1, 1)
        t0 = time.perf_counter()
        proba = []
        for i, plane in enumerate(planes):
            proba.append(clf.predict_proba(plane, axes=plane_axes))
            yield Progress("predicting", i + 1, total)
        seconds["predicting"] = time.perf_counter() - t0
        p = proba[0] if "Z" not in axes else np.stack(proba, axis=1)  # (K, [Z,] Y, X)
        classes = clf.classes_[np.argmax(p, axis=0)]
        return Result(classes, np.asarray(clf.classes_), p if settings.probabilities else None, seconds)

    def run(self, image: Any, strokes: Any, settings: Settings | None = None, *, rgb: bool = False,
            progress: Callable[[Progress], Any] | None = None) -> Result:
        """Run :meth:`steps` here (no thread), calling ``progress`` with each step."""
        gen = self.steps(image, strokes, settings or Settings(), rgb=rgb)
        while True:
            try:
                step = next(gen)
            except StopIteration as stop:
                return stop.value
            if progress is not None:
                progress(step)

    def close(self) -> None:
        """Remove the temporary embedding cache (if the session made one)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
