"""The interfaces every plugin implements: pixel feature extractors and object feature extractors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from vfm_features.errors import InputError
from vfm_features.geometry import Embedding
from vfm_features.preprocess import to_planes
from vfm_features.spec import ExtractorSpec
from vfm_features.features.tiling import embed_tiled, tiling_for
from vfm_features.features.upsample import get_upsampler


class _ExtractorBase(ABC):
    """Stores the spec and options; constructors do nothing else (weights load lazily)."""

    kind = "pixel"

    def __init__(self, spec: ExtractorSpec, **options: Any) -> None:
        self.spec = spec
        self.options = dict(options)

    @property
    def name(self) -> str:
        return self.spec.name

    def signature(self) -> dict[str, Any]:
        """What determines the features: used by caches and saved classifiers."""
        return {"extractor": self.name, "options": _jsonable(self.options)}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({self.name!r}{', ' + opts if opts else ''})"


class FeatureExtractor(_ExtractorBase):
    """Turns a 2D image into an :class:`Embedding` (C x h x w plus geometry).

    Subclasses implement :meth:`_embed_plane` for one (Y, X, C) plane in its raw
    dtype and may override :meth:`n_features_for`. Batching, device and weights are
    the extractor's business; construction only stores options (weights load lazily).

    Reading features at image resolution goes through an upsampler: dense for an
    output grid (:meth:`features_dense`) or sparse at pixel coordinates
    (:meth:`features_at`), so training reads features only where labels are.
    """

    kind = "pixel"

    # -- description ---------------------------------------------------------
    def n_features_for(self, n_channels: int) -> int:
        """Number of feature channels for an input with ``n_channels`` channels."""
        if self.spec.n_features is None:
            raise NotImplementedError(f"{type(self).__name__} must override n_features_for")
        return self.spec.n_features

    @property
    def n_features(self) -> int:
        """Feature channels for a single-channel (grey) image."""
        return self.n_features_for(1)

    def signature(self) -> dict[str, Any]:
        """What determines the features (name, options, weights): used by caches and saved classifiers."""
        return {**super().signature(), "weights_hash": self.weights_hash}

    @property
    def weights_hash(self) -> str | None:
        """Checksum of the weights in use (None for weight-free extractors)."""
        return None

    # -- embedding -----------------------------------------------------------
    def embed(self, image: Any, *, axes: str | None = None) -> Embedding:
        """Embed one 2D image (``YX``, ``YXC`` or ``CYX``). Stacks go to :meth:`embed_stack`."""
        planes, stack_shape = to_planes(image, axes)
        if stack_shape:
            raise InputError(
                f"embed() takes one 2D image; got a stack of {int(np.prod(stack_shape))} planes. "
                "Use embed_stack() to embed slice by slice.")
        return self.embed_plane(planes[0])

    def embed_stack(self, image: Any, *, axes: str) -> list[Embedding]:
        """Embed a 3D or time stack slice by slice (``axes`` e.g. 'ZYX', 'TZYXC')."""
        planes, _ = to_planes(image, axes)
        return [self.embed_plane(p) for p in planes]

    def embed_plane(self, plane: np.ndarray, *, progress: Callable[[int, int], Any] | None = None) -> Embedding:
        """Embed a validated (Y, X, C) plane.

        With a ``tile_shape`` option (and optionally ``halo``; default ``spec.halo``)
        a plane larger than one tile is embedded tile by tile and stitched in
        embedding space (:func:`vfm_features.features.tiling.embed_tiled`);
        ``progress(done, total)`` is then called after each tile.
        """
        tiling = tiling_for(self)
        if tiling is None:
            emb = self._embed_plane(plane)
        else:
            emb = embed_tiled(self, plane, tiling, progress=progress)
        if not emb.extractor:
            emb.extractor = self.name
        return emb

    @abstractmethod
    def _embed_plane(self, plane: np.ndarray) -> Embedding:
        """Embed one (Y, X, C) plane; the returned geometry must map onto ``plane.shape[:2]``."""

    # -- reading features ----------------------------------------------------
    def features_at(self, embedding: Embedding, coords: np.ndarray, *, upsampler: Any = "bilinear") -> np.ndarray:
        """Features (N, C) at image pixel coordinates ``coords`` (N, 2) as (y, x)."""
        return get_upsampler(upsampler).sparse(embedding, coords)

    def features_dense(self, embedding: Embedding, out_shape: tuple[int, int] | None = None, *,
                       upsampler: Any = "bilinear") -> np.ndarray:
        """Features (C, H', W') on a grid of ``out_shape`` spanning the image (default: image shape)."""
        return get_upsampler(upsampler).dense(embedding, out_shape)



@dataclass
class ObjectFeatures:
    """One row of features per object: ``values[i]`` belongs to object ``ids[i]``."""

    ids: np.ndarray  # (n,) int64, sorted
    values: np.ndarray  # (n, F) float32
    names: list[str]

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.ids), len(self.names)):
            raise ValueError(
                f"ObjectFeatures: values {self.values.shape} do not match {len(self.ids)} ids x {len(self.names)} names.")


class ObjectFeatureExtractor(_ExtractorBase):
    """Per-object features from an image and its instance mask (0 = background)."""

    kind = "object"

    @abstractmethod
    def object_features(self, image: Any, mask: np.ndarray, *, axes: str | None = None) -> ObjectFeatures:
        """Features of every object in ``mask``; ids sorted ascending."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def ensure_sequence(x: Any) -> Sequence[Any]:
    """A single image or a list of images -> list."""
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]
