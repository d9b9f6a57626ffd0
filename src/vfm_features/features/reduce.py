"""Channel reduction before upsampling: a PCA of the embedding channels, composable with any upsampler.

:class:`ChannelPCA` is fitted on every cell of the training images' embeddings
(streamed image by image and in blocks of cells: the mean and the C x C
scatter matrix are accumulated in float64 around a shift, then ``numpy.linalg.eigh``),
and maps a (C, h, w) embedding to its ``k`` leading components (k, h, w). It is
saved as two numeric arrays (``mean``, ``components``) that :meth:`ChannelPCA.from_state`
checks like everything read from a file, and its :meth:`ChannelPCA.signature`
(method, k and a hash of the arrays) goes into the classifier's signature.

:class:`ReducedUpsampler` applies the reduction to the embedding and hands the
k-channel embedding to any upsampler: cheaper to upsample (AnyUp's values and
bilinear reads are k- instead of C-wide) and fewer features for the head.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Iterable

import numpy as np

from vfm_features.component import Component
from vfm_features.errors import InputError
from vfm_features.geometry import Embedding
from vfm_features.hashing import content_hash
from vfm_features.validation import check_int

from .upsample import Upsampler

METHOD = "pca"
_BLOCK = 1 << 16  # cells per block of the scatter accumulation and of the projection


class ChannelPCA:
    """The ``n_components`` leading principal components of embedding channels (``mean_``, ``components_``)."""

    def __init__(self, n_components: int) -> None:
        self.n_components = check_int(n_components, "reduce", hint="the number of principal components, e.g. 16")

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, embeddings: Iterable[Embedding]) -> "ChannelPCA":
        """Fit on every cell of ``embeddings`` (an iterable: each is read once, block by block)."""
        shift = scatter = total = None
        n = 0
        for emb in embeddings:
            data = _cells(emb)
            if shift is None:
                shift = data[:, : min(data.shape[1], _BLOCK)].mean(axis=1, dtype=np.float64)
                scatter = np.zeros((len(shift), len(shift)))
                total = np.zeros(len(shift))
            elif data.shape[0] != len(shift):
                raise InputError(f"The training embeddings have {len(shift)} and {data.shape[0]} channels; reduce "
                                 "needs images that give the same channels (the same channel count).")
            for start in range(0, data.shape[1], _BLOCK):
                block = data[:, start:start + _BLOCK].astype(np.float64) - shift[:, None]
                total += block.sum(axis=1)
                scatter += block @ block.T
                n += block.shape[1]
        if shift is None or n == 0:
            raise InputError("reduce needs at least one training embedding to fit its PCA on.")
        C = len(shift)
        if self.n_components > C:
            raise InputError(f"reduce={self.n_components} asks for more components than the {C} channels of the "
                             f"embedding; use reduce <= {C}, or None to keep every channel.")
        centre = total / n
        cov = scatter / n - np.outer(centre, centre)
        values, vectors = np.linalg.eigh((cov + cov.T) / 2)
        components = vectors[:, ::-1][:, : self.n_components].T  # leading components first
        biggest = np.argmax(np.abs(components), axis=1)
        components *= np.sign(components[np.arange(len(components)), biggest])[:, None]  # a fixed sign per component
        self.mean_ = (shift + centre).astype(np.float32)
        self.components_ = np.ascontiguousarray(components, dtype=np.float32)
        self.explained_variance_ = values[::-1][: self.n_components].astype(np.float64)
        return self

    # -- applying ----------------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        return int(self.components_.shape[1])

    def transform(self, embedding: Embedding) -> Embedding:
        """The (k, h, w) embedding of the leading components, with the same geometry."""
        data = _cells(embedding)
        if data.shape[0] != self.n_channels:
            raise InputError(f"The embedding has {data.shape[0]} channels but the channel reduction was fitted on "
                             f"{self.n_channels}; use images with the same channels as in training.")
        out = np.empty((self.n_components, data.shape[1]), np.float32)
        mean = self.mean_[:, None]
        for start in range(0, data.shape[1], _BLOCK):
            out[:, start:start + _BLOCK] = self.components_ @ (data[:, start:start + _BLOCK] - mean)
        h, w = embedding.data.shape[1:]
        return Embedding(out.reshape(self.n_components, h, w), embedding.geometry, extractor=embedding.extractor,
                         meta={**embedding.meta, "reduce": f"{METHOD}{self.n_components}"})

    # -- identity and files ------------------------------------------------------------------------
    def signature(self) -> dict[str, Any]:
        """What classifiers record: the method, the number of components and a hash of the fitted arrays."""
        return {"method": METHOD, "n_components": self.n_components,
                "arrays": content_hash(self.mean_, self.components_)}

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"method": METHOD, "n_components": self.n_components}, {"mean": self.mean_,
                                                                       "components": self.components_}

    @classmethod
    def from_state(cls, params: Any, arrays: dict[str, np.ndarray]) -> "ChannelPCA":
        """Rebuild from a file's parameters and arrays, checking every one (files come from strangers)."""
        if not isinstance(params, dict) or params.get("method") != METHOD or set(params) != {"method", "n_components"}:
            raise InputError(f"The channel reduction {params!r} is not a PCA record of this library; the file is "
                             "damaged or from elsewhere. Retrain the classifier.")
        k = params["n_components"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"The channel reduction has n_components={k!r}; expected a positive whole number.")
        mean, comps = arrays.get("mean"), arrays.get("components")
        if (set(arrays) != {"mean", "components"} or mean.dtype != np.float32 or comps.dtype != np.float32
                or mean.ndim != 1 or comps.shape != (k, len(mean)) or len(mean) < k
                or not np.isfinite(mean).all() or not np.isfinite(comps).all()):
            raise InputError(f"The channel reduction's arrays are not a finite float32 mean (C,) and components "
                             f"({k}, C) with C >= {k}; the file is damaged or edited. Retrain the classifier.")
        pca = cls(k)
        pca.mean_, pca.components_ = mean, np.ascontiguousarray(comps)
        return pca


def _cells(embedding: Embedding) -> np.ndarray:
    """(C, h * w) view of an embedding's data (float32, copied only when it is not)."""
    data = np.asarray(embedding.data)
    return np.ascontiguousarray(data.reshape(data.shape[0], -1), dtype=np.float32)


class ReducedUpsampler(Upsampler):
    """Any upsampler reading the channel-reduced embedding: ``upsampler`` on ``reduction.transform(embedding)``.

    The reduced embedding of the last embedding seen is kept (a classifier reads
    one image in several bands), so each embedding is reduced once; that memo never
    changes a result. Named ``pca<k>+<upsampler>``.
    """

    _TRANSIENT = ("_lock", "_last")

    def __init__(self, reduction: ChannelPCA, upsampler: Any) -> None:
        Component.__init__(self, upsampler.spec)
        self.reduction = reduction
        self.upsampler = upsampler
        self._init_transient()

    def _init_transient(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[Any, Embedding] | None = None

    @property
    def name(self) -> str:
        return f"{METHOD}{self.reduction.n_components}+{self.upsampler.name}"

    @property
    def weights_hash(self) -> str | None:
        return self.upsampler.weights_hash

    def signature(self) -> dict[str, Any]:
        return {**self.upsampler.signature(), "reduce": self.reduction.signature()}

    def n_features(self, embedding: Embedding) -> int:
        return self.reduction.n_components

    def reduced(self, embedding: Embedding) -> Embedding:
        with self._lock:
            if self._last is not None and self._last[0]() is embedding:
                return self._last[1]
        out = self.reduction.transform(embedding)
        with self._lock:
            self._last = (weakref.ref(embedding), out)
        return out

    def dense(self, embedding: Embedding, image: np.ndarray | None, out_shape: Any = None,
              region: Any = None) -> np.ndarray:
        return self.upsampler.dense(self.reduced(embedding), image, out_shape, region)

    def sparse(self, embedding: Embedding, image: np.ndarray | None, coords: np.ndarray) -> np.ndarray:
        return self.upsampler.sparse(self.reduced(embedding), image, coords)
