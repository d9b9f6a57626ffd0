"""Where classifiers get embeddings: the extractor, or an embedding cache in front of it."""

from __future__ import annotations

import threading
from typing import Any, Sequence

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
        self._embedding: Any = None  # an Embedding, or a volume's list of them

    def get(self, extractor: Any, plane: np.ndarray) -> Embedding:
        key = content_hash(plane, [extractor.name, id(extractor)])
        with self._lock:
            if key == self._key and self._embedding is not None:
                return self._embedding
        embedding = extractor.embed_plane(plane)
        with self._lock:
            self._key, self._embedding = key, embedding
        return embedding

    def get_volume(self, extractor: Any, planes: Sequence[np.ndarray]) -> list[Embedding]:
        """The embeddings of a volume's slices by a volumetric extractor, kept like a plane's (the last one seen)."""
        key = content_hash(np.stack(planes), [extractor.name, id(extractor), "volume"])
        with self._lock:
            if key == self._key and self._embedding is not None:
                return self._embedding
        embeddings = extractor.embed_volume(list(planes))
        with self._lock:
            self._key, self._embedding = key, embeddings
        return embeddings

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


def embed_planes(extractor: Any, planes: Sequence[np.ndarray], cache: Any = None,
                 memo: LastEmbedding | None = None) -> list[Embedding]:
    """Embeddings of the (Y, X, C) slices of one volume, in order.

    A volumetric extractor (3D filters) computes the volume as a whole
    (:meth:`~vfm_features.FeatureExtractor.embed_volume`; cached per slice under the
    whole volume's hash); any other embeds each slice on its own, as :func:`embed_plane`.
    """
    if not getattr(extractor, "volumetric", False):
        return [embed_plane(extractor, p, cache, memo) for p in planes]
    cache = open_cache(cache)
    if cache is not None:
        return cache.embed_volume(extractor, planes)
    if memo is not None:
        return memo.get_volume(extractor, planes)
    return extractor.embed_volume(list(planes))
