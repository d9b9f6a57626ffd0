"""vfm-features: vision foundation model features for interactive pixel and object classification.

Importing this package is cheap: torch and model libraries load only when an
extractor that needs them is built.
"""

from __future__ import annotations

from vfm_features._version import __version__
from vfm_features.errors import (
    ExtractorMismatchError,
    InputError,
    NotFittedError,
    PluginValidationError,
    UnknownExtractorError,
    VFMFeaturesError,
    WeightsError,
)
from vfm_features.extractor import FeatureExtractor, ObjectFeatureExtractor, ObjectFeatures
from vfm_features.geometry import Embedding, EmbeddingGeometry
from vfm_features.hookspecs import ENTRY_POINT_GROUP, hookimpl
from vfm_features.registry import Registry, get_extractor, get_spec, list_extractors, register_plugin
from vfm_features.spec import ExtractorSpec

_LAZY = {
    "PixelClassifier": "classifiers.pixel",
    "ObjectClassifier": "classifiers.object",
    "load_classifier": "classifiers.fileformat",
    "sample_pixels": "features.sampling",
    "sample_objects": "features.sampling",
    "aggregate_embedding": "features.aggregate",
    "make_synthetic": "evaluation.synthetic",
    "EmbeddingCache": "features.cache",
    "load_dataset": "evaluation.datasets",
    "macro_f1": "evaluation.metrics",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vfm_features' has no attribute {name!r}")


__all__ = [
    "ENTRY_POINT_GROUP",
    "Embedding",
    "EmbeddingGeometry",
    "ExtractorMismatchError",
    "ExtractorSpec",
    "FeatureExtractor",
    "InputError",
    "NotFittedError",
    "ObjectFeatureExtractor",
    "ObjectFeatures",
    "PluginValidationError",
    "Registry",
    "UnknownExtractorError",
    "VFMFeaturesError",
    "WeightsError",
    "__version__",
    "get_extractor",
    "get_spec",
    "hookimpl",
    "list_extractors",
    "register_plugin",
    *_LAZY,
]
