"""vfm-features: vision foundation model features for interactive pixel and object classification.

Importing this package is cheap: torch and model libraries load only when an
extractor that needs them is built.
"""

from __future__ import annotations

from ._version import __version__
from .errors import (
    ExtractorMismatchError,
    InputError,
    NotFittedError,
    PluginValidationError,
    UnknownExtractorError,
    VFMFeaturesError,
    WeightsError,
)
from .extractor import FeatureExtractor, ObjectFeatureExtractor, ObjectFeatures
from .geometry import Embedding, EmbeddingGeometry
from .hookspecs import ENTRY_POINT_GROUP, hookimpl
from .registry import Registry, get_extractor, get_spec, list_extractors, register_plugin
from .spec import ExtractorSpec

_LAZY = {
    "PixelClassifier": "pixel_classifier",
    "ObjectClassifier": "object_classifier",
    "load_classifier": "persistence",
    "sample_pixels": "sampling",
    "sample_objects": "sampling",
    "aggregate_embedding": "aggregate",
    "make_synthetic": "synthetic",
    "EmbeddingCache": "cache",
    "load_dataset": "datasets",
    "macro_f1": "metrics",
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
