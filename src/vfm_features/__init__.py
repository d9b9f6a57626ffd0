"""vfm-features: vision foundation model features for interactive pixel and object classification.

Importing this package is cheap: torch and model libraries load only when an
extractor that needs them is built. Everything in ``__all__`` is the public API
that scripts, plugins and adapters use; the subpackages hold the rooms of the
architecture (``features``, ``heads``, ``models``, ``classifiers``,
``evaluation``, ``cli``), see docs/architecture.md.
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .errors import (
    ExtractorMismatchError,
    InputError,
    NotFittedError,
    PluginValidationError,
    UnknownExtractorError,
    UnknownOptionError,
    VFMFeaturesError,
    WeightsError,
)
from .extractor import FeatureExtractor, ObjectFeatureExtractor, ObjectFeatures
from .geometry import Embedding, EmbeddingGeometry
from .hookspecs import ENTRY_POINT_GROUP, hookimpl
from .registry import (
    Registry,
    get_extractor,
    get_head,
    get_spec,
    get_upsampler,
    list_extractors,
    list_heads,
    list_upsamplers,
    register_plugin,
    unregister_plugin,
)
from .spec import ExtractorSpec, HeadSpec, UpsamplerSpec

# public names that live in modules with heavier imports (scikit-learn, scipy): loaded on first use
_LAZY = {
    "PixelClassifier": "classifiers.pixel",
    "ObjectClassifier": "classifiers.object",
    "ObjectPrediction": "classifiers.object",
    "load_classifier": "classifiers.load",
    "read_metadata": "classifiers.fileformat",
    "predict_block": "classifiers.blocks",
    "predict_blockwise": "classifiers.blocks",
    "plan_blocks": "classifiers.blocks",
    "Upsampler": "features.upsample",
    "resize_probabilities": "features.upsample",
    "Aggregator": "features.aggregate",
    "aggregate_embedding": "features.aggregate",
    "sample_pixels": "features.sampling",
    "sample_balanced": "features.sampling",
    "EmbeddingCache": "features.cache",
    "session_cache": "features.cache",
    "to_planes": "preprocess",
    "check_instance_mask": "validation",
    "forest_to_arrays": "heads.forest_arrays",
    "check_forest_arrays": "heads.forest_arrays",
    "Tiling": "features.tiling",
    "plan_tiles": "features.tiling",
    "PixelHead": "heads.base",
    "ObjectHead": "heads.base",
    "PixelSamples": "heads.base",
    "ObjectSamples": "heads.base",
    "ModelExtractor": "models.base",
    "InputContract": "models.contract",
    "make_synthetic": "evaluation.synthetic",
    "load_dataset": "evaluation.datasets",
    "evaluate": "evaluation.evaluate",
    "macro_f1": "evaluation.metrics",
    "check_extractor": "testing",
    "atomic_path": "io",
    "read_image": "io",
    "write_image": "io",
    "content_hash": "hashing",
    "set_threads": "threads",
    "thread_budget": "threads",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vfm_features' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ENTRY_POINT_GROUP",
    "Embedding",
    "EmbeddingGeometry",
    "ExtractorMismatchError",
    "ExtractorSpec",
    "FeatureExtractor",
    "HeadSpec",
    "InputError",
    "NotFittedError",
    "ObjectFeatureExtractor",
    "ObjectFeatures",
    "PluginValidationError",
    "Registry",
    "UnknownExtractorError",
    "UnknownOptionError",
    "UpsamplerSpec",
    "VFMFeaturesError",
    "WeightsError",
    "__version__",
    "get_extractor",
    "get_head",
    "get_spec",
    "get_upsampler",
    "hookimpl",
    "list_extractors",
    "list_heads",
    "list_upsamplers",
    "register_plugin",
    "unregister_plugin",
    *_LAZY,
]
