"""Where classifiers get embeddings: the extractor, or an embedding cache in front of it."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from vfm_features.geometry import Embedding
from vfm_features.registry import get_extractor


def build_extractor(extractor: Any, options: dict | None) -> Any:
    """A registered name -> extractor instance; an instance is returned as it is."""
    if isinstance(extractor, str):
        return get_extractor(extractor, **(options or {}))
    return extractor


def content_key(plane: np.ndarray) -> str:
    """A digest of a plane's shape, dtype and pixels."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str((plane.shape, plane.dtype.str)).encode())
    h.update(np.ascontiguousarray(plane).data)
    return h.hexdigest()


def embed_plane(extractor: Any, plane, cache: Any = None, memo: dict | None = None) -> Embedding:
    """Embed a (Y, X, C) plane, through ``cache`` when one is given.

    Without a cache, ``memo`` (a dict the caller owns) keeps the last embedding,
    so that training and then predicting the same image embeds it once.
    """
    if cache is None:
        if memo is None:
            return extractor.embed_plane(plane)
        key = content_key(plane)
        if memo.get("key") != key:
            memo.clear()
            memo.update(key=key, embedding=extractor.embed_plane(plane))
        return memo["embedding"]
    if isinstance(cache, str):
        from vfm_features.features.cache import EmbeddingCache

        cache = EmbeddingCache(cache)
    return cache.embed_plane(extractor, plane)
