"""Where classifiers get embeddings: the extractor, or an embedding cache in front of it."""

from __future__ import annotations

from typing import Any

from .geometry import Embedding
from .registry import get_extractor


def build_extractor(extractor: Any, options: dict | None) -> Any:
    """A registered name -> extractor instance; an instance is returned as it is."""
    if isinstance(extractor, str):
        return get_extractor(extractor, **(options or {}))
    return extractor


def embed_plane(extractor: Any, plane, cache: Any = None) -> Embedding:
    """Embed a (Y, X, C) plane, through ``cache`` when one is given."""
    if cache is None:
        return extractor.embed_plane(plane)
    if isinstance(cache, str):
        from .cache import EmbeddingCache

        cache = EmbeddingCache(cache)
    return cache.embed_plane(extractor, plane)
