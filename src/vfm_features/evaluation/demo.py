"""The demo: pixel and object classifiers on the shipped synthetic data, with scores and timings."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from vfm_features.evaluation.metrics import macro_f1
from vfm_features.classifiers.object import ObjectClassifier
from vfm_features.classifiers.pixel import PixelClassifier
from vfm_features.evaluation.synthetic import make_synthetic


@dataclass
class DemoResult:
    task: str
    features: str
    macro_f1: float
    chance: float
    train_s: float
    predict_s: float
    n_train: int


def run_demo(*, n_train: int = 4, n_test: int = 2, shape=(256, 256), scribble_fraction: float = 0.02,
             random_state: int = 0, pixel_extractor: str = "filters", n_jobs: int | None = None,
             log=print) -> list[DemoResult]:
    """Train on ``n_train`` synthetic images, score macro-F1 on ``n_test`` held-out images."""
    data = make_synthetic(n_train + n_test, shape, random_state=random_state)
    train, test = data[:n_train], data[n_train:]
    jobs = {} if n_jobs is None else {"n_jobs": n_jobs}  # None: the classifiers' own default
    results: list[DemoResult] = []

    # pixels: sparse scribbles for training, dense ground truth for scoring
    scribbles = [d.scribbles(scribble_fraction, random_state=random_state + i) for i, d in enumerate(train)]
    for working_shape in (None, (128, 128)):
        clf = PixelClassifier(pixel_extractor, working_shape=working_shape, random_state=random_state, **jobs)
        t0 = time.perf_counter()
        clf.fit([d.image for d in train], scribbles)
        t1 = time.perf_counter()
        preds = [clf.predict(d.image) for d in test]
        t2 = time.perf_counter()
        f1 = macro_f1(np.concatenate([d.semantic.ravel() for d in test]), np.concatenate([p.ravel() for p in preds]))
        grid = "full" if working_shape is None else f"{working_shape[0]}x{working_shape[1]} grid"
        results.append(DemoResult("pixels", f"{pixel_extractor} ({grid})", f1, 1 / 4, t1 - t0,
                                  (t2 - t1) / len(test), clf.n_training_pixels_))
        log(_row(results[-1]))

    # objects: every object of the training images is labelled
    for extractor, kwargs in (("regionprops", {}), (pixel_extractor, {"stats": ("mean", "std")})):
        clf = ObjectClassifier(extractor, random_state=random_state, **jobs, **kwargs)
        t0 = time.perf_counter()
        clf.fit([d.image for d in train], [d.instances for d in train], [d.object_classes for d in train])
        t1 = time.perf_counter()
        preds = [clf.predict(d.image, d.instances) for d in test]
        t2 = time.perf_counter()
        truth = np.concatenate([[d.object_classes[i] for i in p.ids] for d, p in zip(test, preds)])
        f1 = macro_f1(truth, np.concatenate([p.classes for p in preds]), ignore=None)
        label = extractor if extractor == "regionprops" else f"{extractor} (mean+std per object)"
        results.append(DemoResult("objects", label, f1, 1 / 3, t1 - t0, (t2 - t1) / len(test),
                                  clf.n_training_objects_))
        log(_row(results[-1]))
    return results


def header() -> str:
    return (f"{'task':<8} {'features':<38} {'macro-F1':>8} {'chance':>6} {'train s':>8} "
            f"{'predict s/img':>13} {'n train':>8}")


def _row(r: DemoResult) -> str:
    return (f"{r.task:<8} {r.features:<38} {r.macro_f1:>8.3f} {r.chance:>6.2f} {r.train_s:>8.2f} "
            f"{r.predict_s:>13.2f} {r.n_train:>8}")
