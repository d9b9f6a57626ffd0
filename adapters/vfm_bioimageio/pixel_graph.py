"""A trained pixel classifier as one torch module: image (b, c, y, x) -> class probabilities (b, K, y, x).

The features as the library computes them (:mod:`.feature_graph`), then the
random forest (:func:`~vfm_bioimageio.tree_ensemble.forest_module`) on every pixel.
:func:`check_exportable` says, for any classifier, why it cannot be written this
way (one error naming the part and the reason).
"""

from __future__ import annotations

from typing import Any

import vfm_features as vf

from .feature_graph import check_features_exportable, feature_module, refuse
from .tree_ensemble import check_forest_head, forest_module

__all__ = ["check_exportable", "pixel_module"]


def check_exportable(classifier: Any) -> tuple[Any, Any]:
    """(extractor, contract) of a fitted PixelClassifier whose whole pipeline fits one graph; else InputError."""

    if not isinstance(classifier, vf.PixelClassifier):
        raise refuse(f"a {type(classifier).__name__}", "is not a PixelClassifier (use package_object_classifier "
                     "for an ObjectClassifier).")
    check_forest_head(classifier)
    if classifier.working_shape is not None:
        raise refuse(f"working_shape={tuple(classifier.working_shape)}", "predicts on a coarser grid; package a "
                     "classifier trained with working_shape=None.")
    return check_features_exportable(classifier)


def pixel_module(classifier: Any) -> Any:
    """The torch module (eval mode, float32) that predicts like ``classifier.predict_proba``, for batches."""
    import torch

    check_exportable(classifier)
    features, forest = feature_module(classifier), forest_module(classifier.head_.forest_)

    class PixelPipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features, self.forest = features, forest

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            feats = self.features(image)
            b, f = feats.shape[0], feats.shape[1]
            proba = self.forest(feats.permute(0, 2, 3, 1).reshape(-1, f))
            return proba.reshape(b, image.shape[2], image.shape[3], -1).permute(0, 3, 1, 2)

    return PixelPipeline().eval()
