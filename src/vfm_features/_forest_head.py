"""What the pixel and object classifiers share: the training buffer, the forest fit, saving."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .forest import make_forest
from .validation import check_classes_present


class ForestHeadMixin:
    """Fits ``forest_`` on the samples gathered in ``self._samples`` (key -> (X, y))."""

    def _stacked_samples(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        parts = list(getattr(self, "_samples", {}).values())
        y = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        check_classes_present(np.unique(y), what=what)
        widths = {p[0].shape[1] for p in parts}
        if len(widths) > 1:
            raise InputError(
                f"The images give different numbers of features {sorted(widths)}; train only on images "
                "with the same number of channels (or reduce channels with extractor_options).")
        return np.concatenate([p[0] for p in parts]), y

    def _fit_forest(self, X: np.ndarray, y: np.ndarray, signature: dict[str, Any]) -> None:
        forest = make_forest(n_estimators=self.n_estimators, max_depth=self.max_depth,
                             min_samples_leaf=self.min_samples_leaf, n_jobs=self.n_jobs,
                             random_state=self.random_state)
        forest.fit(X, y)
        self.forest_ = forest
        self.classes_ = forest.classes_
        self.n_features_in_ = X.shape[1]
        self.signature_ = signature

    def _reset(self) -> None:
        self._samples = {}
        for attr in ("classes_", "forest_"):
            self.__dict__.pop(attr, None)

    def save(self, path) -> None:
        """Save to a ``.vfmc`` file (skops forest + JSON metadata); see :func:`load_classifier`."""
        from .persistence import save_classifier

        save_classifier(self, path)
