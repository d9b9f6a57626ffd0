"""What the pixel and object classifiers share: the training buffer, the forest fit, saving."""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm_features.errors import ExtractorMismatchError, InputError
from vfm_features.heads.forest_predict import make_forest
from vfm_features.validation import check_classes_present

# everything fit() learns; set_params() + fit() must start from none of it
_LEARNED = ("classes_", "forest_", "extractor_", "object_extractor_", "signature_", "n_features_in_",
            "feature_names_", "n_training_pixels_", "n_training_objects_")


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

    def _memo(self) -> dict:
        """The last embedding computed without a cache (see ``_embedding_source.embed_plane``)."""
        if "_last_embedding" not in self.__dict__:
            self._last_embedding: dict = {}
        return self._last_embedding

    def _reset(self) -> None:
        self._samples = {}
        self.__dict__.pop("_last_embedding", None)
        for attr in _LEARNED:
            self.__dict__.pop(attr, None)

    def _start_partial_fit(self) -> None:
        """Refuse to extend a loaded classifier, whose training samples were not saved."""
        if not hasattr(self, "_samples"):
            if hasattr(self, "forest_"):
                raise InputError(
                    "This classifier was loaded from a file, which keeps the forest but not its training "
                    "samples, so partial_fit cannot add to them; call fit() with all the labels instead.")
            self._samples = {}

    def _check_features(self, extractor: Any, n_features: int) -> None:
        """The features at prediction must be those of training: same extractor signature and width."""
        expected = getattr(self, "signature_", None)
        if expected is not None and extractor.signature() != expected:
            raise ExtractorMismatchError(
                f"This classifier was trained on features {expected} but is applied with "
                f"{extractor.signature()}; use the same extractor, options and weights, or retrain.")
        if n_features != self.n_features_in_:
            raise InputError(
                f"The input gives {n_features} features but the classifier was trained on "
                f"{self.n_features_in_}; use images with the same channels as in training.")

    def save(self, path) -> None:
        """Save to a ``.vfmc`` file (skops forest + JSON metadata); see :func:`load_classifier`."""
        from vfm_features.classifiers.fileformat import save_classifier

        save_classifier(self, path)
