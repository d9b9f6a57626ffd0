"""The random-forest head shared by the pixel and object classifiers."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestClassifier


def make_forest(*, n_estimators: int = 100, max_depth: int | None = None, min_samples_leaf: int = 1,
                max_features: str | float | int | None = "sqrt", n_jobs: int | None = None,
                random_state=None) -> RandomForestClassifier:
    """A scikit-learn forest with balanced class weights (rare classes count as much as common ones)."""
    return RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, min_samples_leaf=min_samples_leaf,
        max_features=max_features, class_weight="balanced", n_jobs=n_jobs, random_state=random_state)


def predict_proba_float32(forest: RandomForestClassifier, X: np.ndarray) -> np.ndarray:
    """Class probabilities (n, K) as float32."""
    return forest.predict_proba(np.asarray(X, dtype=np.float32)).astype(np.float32, copy=False)
