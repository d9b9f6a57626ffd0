"""Classification heads by name, for the evaluation harness: ``rf`` now, DeAP / ObAP later.

A head is any object with ``fit(X, y) -> self`` and ``predict(X) -> classes``
(X: (n, F) float32 features, y: (n,) int classes); :func:`get_head` builds a fresh
one from its registered factory, called as ``factory(task=, random_state=, n_jobs=)``
with ``task`` 'pixels', 'objects' or None.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any, Callable

import numpy as np

from vfm_features.errors import InputError
from vfm_features.heads.forest_predict import make_forest, predict_proba_float32, reference_forest

HeadFactory = Callable[..., Any]


class ForestHead:
    """A forest from ``build(random_state=, n_jobs=)``, predicting through :func:`predict_proba_float32`."""

    def __init__(self, build: Callable[..., Any], *, random_state: int | None = None,
                 n_jobs: int | None = None, fast: bool = True) -> None:
        self.build = build
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.fast = fast

    def fit(self, X: np.ndarray, y: np.ndarray) -> "ForestHead":
        self.forest_ = self.build(random_state=self.random_state, n_jobs=self.n_jobs).fit(X, y)
        self.classes_ = self.forest_.classes_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.fast:
            proba = predict_proba_float32(self.forest_, X, n_jobs=self.n_jobs)
        else:
            proba = self.forest_.predict_proba(np.asarray(X, np.float32))
        return self.classes_[np.argmax(proba, axis=1)]


def _classifier_forest(task: str | None) -> Callable[..., Any]:
    """``make_forest`` with the forest settings that the task's classifier uses by default."""
    if task == "objects":
        from vfm_features.classifiers.object import ObjectClassifier as clf
    else:
        from vfm_features.classifiers.pixel import PixelClassifier as clf
    params = clf().get_params()
    keys = ("n_estimators", "max_depth", "min_samples_leaf")

    def build(*, random_state=None, n_jobs=None):
        return make_forest(**{k: params[k] for k in keys}, random_state=random_state, n_jobs=n_jobs)

    return build


def _rf(*, task=None, random_state=None, n_jobs=None) -> ForestHead:
    return ForestHead(_classifier_forest(task), random_state=random_state, n_jobs=n_jobs)


def _rf_reference(*, task=None, random_state=None, n_jobs=None) -> ForestHead:
    return ForestHead(reference_forest, random_state=random_state, n_jobs=n_jobs, fast=False)


_HEADS: dict[str, tuple[HeadFactory, str]] = {
    "rf": (_rf, "the forest PixelClassifier / ObjectClassifier train by default, with the fast predictor"),
    "rf-reference": (_rf_reference, "RandomForest, 200 trees of depth 10, scikit-learn's own predict"),
}


def register_head(name: str, factory: HeadFactory, description: str = "") -> None:
    """Make ``factory(task=..., random_state=..., n_jobs=...)`` available as head ``name`` (re-registering warns)."""
    if name in _HEADS:
        warnings.warn(f"Head {name!r} is registered already; replacing it.", UserWarning, stacklevel=2)
    _HEADS[name] = (factory, description)


def list_heads() -> dict[str, str]:
    """Registered head names and their one-line descriptions."""
    return {name: desc for name, (_, desc) in sorted(_HEADS.items())}


def get_head(name: str, *, task: str | None = None, random_state: int | None = None,
             n_jobs: int | None = None) -> Any:
    """A new, unfitted head registered as ``name``, for ``task`` ('pixels', 'objects' or None)."""
    try:
        factory, _ = _HEADS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _HEADS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(f"Unknown head {name!r}.{hint} Known heads: {sorted(_HEADS)}.") from None
    return factory(task=task, random_state=random_state, n_jobs=n_jobs)
