"""Where classifiers get embeddings: the extractor, or an embedding cache in front of it."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from vfm_features.geometry import Embedding
from vfm_features.hashing import content_hash
from vfm_features.registry import get_extractor


def build_extractor(extractor: Any, options: dict | None) -> Any:
    """A registered name -> extractor instance; an instance is returned as it is."""
    if isinstance(extractor, str):
        return get_extractor(extractor, **(options or {}))
    return extractor


class LastEmbedding:
    """Keeps the embedding of the last plane seen (thread-safe), so fit-then-predict embeds an image once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: str | None = None
        self._embedding: Embedding | None = None

    def get(self, extractor: Any, plane: np.ndarray) -> Embedding:
        key = content_hash(plane, [extractor.name, id(extractor)])
        with self._lock:
            if key == self._key and self._embedding is not None:
                return self._embedding
        embedding = extractor.embed_plane(plane)
        with self._lock:
            self._key, self._embedding = key, embedding
        return embedding

    def clear(self) -> None:
        with self._lock:
            self._key, self._embedding = None, None


def open_cache(cache: Any) -> Any:
    """An :class:`EmbeddingCache` for a path, the cache itself, or None."""
    if cache is None or not isinstance(cache, (str, bytes)) and not hasattr(cache, "__fspath__"):
        return cache
    from vfm_features.features.cache import EmbeddingCache

    return EmbeddingCache(cache)


def embed_plane(extractor: Any, plane: np.ndarray, cache: Any = None, memo: LastEmbedding | None = None) -> Embedding:
    """Embed a (Y, X, C) plane through ``cache`` when one is given, else through ``memo`` when given."""
    cache = open_cache(cache)
    if cache is not None:
        return cache.embed_plane(extractor, plane)
    if memo is not None:
        return memo.get(extractor, plane)
    return extractor.embed_plane(plane)
