"""The random-forest heads behind ``rf`` (the default) and ``rf-reference``, for pixels and for objects.

Both read feature rows (:meth:`PixelSamples.features`), fit a scikit-learn random
forest with balanced class weights and predict through the blocked predictor,
whose probabilities are bit-for-bit scikit-learn's (see
:mod:`vfm_features.heads.forest_predict`). They save as plain arrays
(:mod:`vfm_features.heads.forest_arrays`). Registered by :mod:`vfm_features.heads.forest`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from vfm_features.errors import InputError
from vfm_features.features.upsample import region_slices
from vfm_features.threads import n_threads
from vfm_features.validation import check_bool, check_int, check_n_jobs, check_random_state

from .base import ObjectHead, PixelHead
from .forest_arrays import forest_from_arrays, forest_to_arrays
from .forest_predict import (MAX_DEPTH, MAX_SAMPLES, N_ESTIMATORS, make_forest, predict_proba_float32,
                             predict_proba_grid, supports_fast_path)

_PARAMS = ("n_estimators", "max_depth", "min_samples_leaf", "max_features", "max_samples", "n_jobs", "random_state",
           "fast")


class _Forest(BaseEstimator):
    """Fit and predict on feature rows; shared by the pixel and the object forest."""

    def _check_params(self) -> None:
        check_int(self.n_estimators, "n_estimators", hint="a forest needs at least one tree")
        check_int(self.max_depth, "max_depth", allow_none=True, hint="None grows trees until the leaves are pure")
        check_int(self.min_samples_leaf, "min_samples_leaf")
        check_int(self.max_samples, "max_samples", allow_none=True,
                  hint="the most labelled samples each tree is fitted on; None fits every tree on all of them")
        if not (self.max_features in ("sqrt", "log2", None)
                or (isinstance(self.max_features, float) and 0 < self.max_features <= 1)
                or (isinstance(self.max_features, int) and not isinstance(self.max_features, bool)
                    and self.max_features >= 1)):
            raise InputError(f"max_features={self.max_features!r} is not valid; use 'sqrt', 'log2', None, a "
                             "fraction in (0, 1] or a positive number of features.")
        check_n_jobs(self.n_jobs)
        check_random_state(self.random_state)
        check_bool(self.fast, "fast")

    def fit(self, samples: Any) -> "_Forest":
        self._check_params()
        X, y = samples.features(), samples.y
        if y is None:
            raise InputError("fit() needs samples with classes (y).")
        # joblib would read -1 as every core; the library's thread budget decides instead
        forest = make_forest(n_estimators=self.n_estimators, max_depth=self.max_depth,
                             min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
                             max_samples=self.max_samples if self.max_samples and self.max_samples < len(y) else None,
                             n_jobs=n_threads(self.n_jobs), random_state=self.random_state)
        forest.fit(X, y)
        self.forest_ = forest
        self.classes_ = forest.classes_
        self.n_features_in_ = int(X.shape[1])
        return self

    def predict_rows(self, X: np.ndarray) -> np.ndarray:
        """(n, K) float32 probabilities of feature rows ``X`` (n, F)."""
        if X.shape[1] != self.n_features_in_:
            raise InputError(f"The input gives {X.shape[1]} features but the head was trained on "
                             f"{self.n_features_in_}; use images with the same channels as in training.")
        if self.fast:
            return predict_proba_float32(self.forest_, X, n_jobs=self.n_jobs)
        return np.asarray(self.forest_.predict_proba(np.asarray(X, np.float32)), np.float32)

    def predict_proba(self, samples: Any) -> np.ndarray:
        return self.predict_rows(samples.features())

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {k: getattr(self, k) for k in _PARAMS}
        return {**params, "n_features_in": self.n_features_in_}, forest_to_arrays(self.forest_)

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], *, n_features: int) -> "_Forest":
        params = dict(params)
        if params.pop("n_features_in", None) != n_features:
            raise InputError(f"The forest in this file was trained on another number of features than the "
                             f"{n_features} its metadata says; the file was edited or damaged. Refusing it.")
        unknown = set(params) - set(_PARAMS)
        if unknown:
            raise InputError(f"The forest parameters in this file hold unknown keys {sorted(unknown)}.")
        head = cls(**params)
        head._check_params()
        forest_params = {k: params[k] for k in ("n_estimators", "max_depth", "min_samples_leaf", "max_features",
                                                "n_jobs", "random_state") if k in params}
        head.forest_ = forest_from_arrays(arrays, n_features, {**forest_params, "class_weight": "balanced"})
        head.classes_ = head.forest_.classes_
        head.n_features_in_ = n_features
        return head


class ForestPixelHead(_Forest, PixelHead):
    """Random forest on features read at the labelled pixels (default: 64 trees of depth 10, at most 4096
    labels per tree, all cores)."""

    def __init__(self, *, n_estimators: int = N_ESTIMATORS, max_depth: int | None = MAX_DEPTH,
                 min_samples_leaf: int = 1, max_features: Any = "sqrt", max_samples: int | None = MAX_SAMPLES,
                 n_jobs: int | None = -1, random_state: int | None = None, fast: bool = True) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_samples = max_samples
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.fast = fast

    def predict_proba_dense(self, embedding, image, upsampler, out_shape, region=None) -> np.ndarray:
        """(K, rows, cols) probabilities of ``region`` of the ``out_shape`` grid, read and predicted a few rows at once."""
        if not (self.fast and supports_fast_path(self.forest_)):
            feats = upsampler.dense(embedding, image, out_shape, region)
            C, r, c = feats.shape
            return self.predict_rows(np.moveaxis(feats, 0, -1).reshape(-1, C)).T.reshape(-1, r, c)
        if upsampler.n_features(embedding) != self.n_features_in_:
            raise InputError(f"The input gives {upsampler.n_features(embedding)} features but the head was trained "
                             f"on {self.n_features_in_}; use images with the same channels as in training.")
        grid = tuple(int(s) for s in (out_shape or embedding.image_shape))
        rows, cols = region_slices(region, grid)

        def read(start: int, stop: int) -> np.ndarray:
            return upsampler.dense(embedding, image, grid, (slice(rows.start + start, rows.start + stop), cols))

        return predict_proba_grid(self.forest_, read, rows.stop - rows.start, cols.stop - cols.start,
                                  n_jobs=self.n_jobs)


class ForestObjectHead(_Forest, ObjectHead):
    """Random forest on per-object feature rows (default: 200 trees grown to pure leaves, all cores)."""

    def __init__(self, *, n_estimators: int = 200, max_depth: int | None = None, min_samples_leaf: int = 1,
                 max_features: Any = "sqrt", max_samples: int | None = None, n_jobs: int | None = -1,
                 random_state: int | None = None, fast: bool = True) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_samples = max_samples
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.fast = fast
