"""The interfaces every plugin implements: pixel feature extractors and object feature extractors.

A pixel extractor turns a (Y, X, C) plane into an :class:`~vfm_features.Embedding`
in two public steps that tiling, caching and batching call:

* :meth:`FeatureExtractor.prepare` - whole-plane preprocessing (intensity
  scaling, channel rules), done once per plane even when the plane is tiled;
* :meth:`FeatureExtractor.embed_prepared` - prepared planes (or tiles of them)
  to embeddings, batched.

A simple plugin overrides :meth:`FeatureExtractor._embed_plane` only; a neural
network plugin subclasses :class:`vfm_features.ModelExtractor`, which declares
an input contract and does all of the above for it.

Extractors are safe to call from several threads: nothing changes during a call.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import InputError, PluginValidationError, UnknownOptionError
from .features.tiling import embed_tiled, tiling_for
from .geometry import Embedding
from .component import Component
from .preprocess import check_volume_stack, to_planes
from .spec import ExtractorSpec

#: options every extractor takes through the base class
SHARED_OPTIONS = ("tile_shape", "halo")


def _signature_params(target: Callable[..., Any]) -> tuple[set[str], bool]:
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
             and p.name not in ("self", "spec")}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


@functools.lru_cache(maxsize=256)
def _parameters(factory: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    """Keyword parameters of a factory; for a class, of each ``__init__`` up the MRO while they pass ``**options`` on."""
    if not inspect.isclass(factory):
        names, var = _signature_params(factory)
        return frozenset(names), var
    names: set[str] = set()
    var = True
    for klass in factory.__mro__:
        if "__init__" not in klass.__dict__ or klass is object:
            continue
        own, passes_on = _signature_params(klass.__dict__["__init__"])
        names |= own
        if not passes_on:
            var = False
            break
    return frozenset(names), var


def accepted_options(factory: Callable[..., Any], declared: Mapping[str, Any] = ()) -> set[str]:
    """Option names a factory takes: its keyword parameters, and the declared ones if it takes ``**options``."""
    names, var = _parameters(factory)
    return set(names) | (set(declared) | set(SHARED_OPTIONS) if var else set())


def check_options(spec: ExtractorSpec, factory: Callable[..., Any], options: Mapping[str, Any]) -> None:
    """Refuse options a factory does not take: misspelt options fail, also for ``**options`` factories.

    A factory that passes ``**options`` on to the base class takes the options its
    spec declares (with their defaults) and the shared ``tile_shape`` / ``halo``.
    """
    known = accepted_options(factory, spec.options)
    unknown = set(options) - known
    if unknown:
        raise UnknownOptionError(
            f"Extractor {spec.name!r} does not take the option(s) {sorted(unknown)}. Its options: "
            f"{', '.join(sorted(known)) or 'none'}; see 'vfm-features list --details'.")


class _ExtractorBase(Component, ABC):
    """Stores the spec and options (see :class:`vfm_features.component.Component`); weights load lazily."""

    kind = "pixel"
    _SIGNATURE_KEY = "extractor"


class FeatureExtractor(_ExtractorBase):
    """Turns a 2D image into an :class:`Embedding` (C x h x w plus geometry).

    Subclasses implement :meth:`_embed_plane` for one prepared (Y, X, C) plane,
    or :meth:`embed_prepared` for a batch of them, and may override
    :meth:`prepare` (whole-plane preprocessing) and :meth:`n_features_for`.
    Reading features at image pixels is an upsampler's job (see
    :mod:`vfm_features.features.upsample`), not the extractor's.
    """

    kind = "pixel"
    #: True for extractors whose features of a slice depend on the neighbouring slices (3D filters):
    #: they embed whole volumes (:meth:`embed_volume`) and refuse single planes
    volumetric = False

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

    @property
    def batch_size(self) -> int:
        """Prepared planes or tiles per :meth:`embed_prepared` call."""
        return int(self.options.get("batch_size") or 1)

    # -- the two steps plugins provide -----------------------------------------------
    def prepare(self, plane: np.ndarray) -> np.ndarray:
        """Whole-plane preprocessing of a validated (Y, X, C) plane; the default keeps it as it is.

        The result must keep the plane's (Y, X) shape: tiles are cut from it.
        """
        return plane

    def embed_prepared(self, prepared: Sequence[np.ndarray]) -> list[Embedding]:
        """Embeddings of prepared planes (or tiles of one), each with geometry origin (0, 0)."""
        return [self._embed_plane(p) for p in prepared]

    def _embed_plane(self, prepared: np.ndarray) -> Embedding:
        """Embed one prepared (Y, X, C) plane; the geometry must map onto ``prepared.shape[:2]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _embed_plane or embed_prepared")

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
        """Embed a 3D or time stack slice by slice (``axes`` e.g. 'ZYX', 'TZYXC'); a volumetric extractor
        takes one volume ('ZYX' or 'ZYXC') and embeds it as a whole."""
        planes, stack = to_planes(image, axes)
        if self.volumetric:
            check_volume_stack(axes, stack, self.name)
            return self.embed_volume(planes)
        return self.embed_planes(planes)

    def embed_volume(self, planes: Sequence[np.ndarray]) -> list[Embedding]:
        """One embedding per (Y, X, C) slice of one volume (in order, identity geometry for volumetric extractors).

        The default embeds each slice on its own; a :attr:`volumetric` extractor
        overrides this and computes over the whole volume.
        """
        return self.embed_planes(planes)

    def embed_planes(self, planes: Sequence[np.ndarray]) -> list[Embedding]:
        """Embed validated (Y, X, C) planes, ``batch_size`` at a time (tiled ones one by one)."""
        self._refuse_planes()
        if tiling_for(self) is not None:
            return [self.embed_plane(p) for p in planes]
        out: list[Embedding] = []
        for start in range(0, len(planes), self.batch_size):
            chunk = list(planes[start:start + self.batch_size])
            out += self._checked(chunk, self.embed_prepared([self.prepare(p) for p in chunk]))
        return out

    def embed_plane(self, plane: np.ndarray, *, progress: Callable[[int, int], Any] | None = None) -> Embedding:
        """Embed a validated (Y, X, C) plane.

        With a ``tile_shape`` option (and optionally ``halo``; default the
        extractor's or spec's ``halo``) a plane larger than one tile is prepared
        once, cut into tiles, embedded ``batch_size`` tiles at a time and stitched
        in embedding space; ``progress(done, total)`` is then called after each tile.
        """
        self._refuse_planes()
        tiling = tiling_for(self)
        prepared = self.prepare(plane)
        if tiling is None:
            return self._checked([plane], self.embed_prepared([prepared]))[0]
        emb = embed_tiled(self, prepared, tiling, progress=progress)
        return self._checked([plane], [emb])[0]

    def _refuse_planes(self) -> None:
        """A volumetric extractor cannot embed a plane without its neighbours: say so."""
        if self.volumetric:
            raise InputError(
                f"The extractor {self.name!r} is volumetric (e.g. filters with ndim=3): it computes 3D features "
                "over a whole volume (a slice's features depend on the neighbouring slices), so it does not embed "
                "single 2D planes: give it one volume with axes 'ZYX' "
                "or 'ZYXC' (embed_stack, or a classifier's fit/predict with axes='ZYX'). 2D images, tiles and "
                "blockwise prediction need a 2D extractor (for filters: ndim=2).")

    def _checked(self, planes: Sequence[np.ndarray], embeddings: list[Embedding]) -> list[Embedding]:
        if len(embeddings) != len(planes):
            raise PluginValidationError(f"Extractor {self.name!r} returned {len(embeddings)} embeddings for "
                                        f"{len(planes)} planes.")
        for plane, emb in zip(planes, embeddings):
            if tuple(emb.geometry.image_shape) != tuple(plane.shape[:2]):
                raise PluginValidationError(
                    f"Extractor {self.name!r} returned an embedding for image_shape {emb.geometry.image_shape} "
                    f"from a plane of shape {plane.shape[:2]}; the geometry must map onto the plane it was given.")
            if not emb.extractor:
                emb.extractor = self.name
        return embeddings


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

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The feature rows of ``ids`` (each must be present)."""
        ids = np.asarray(ids, np.int64)
        pos = np.searchsorted(self.ids, ids)
        if ids.size and (pos.max() >= len(self.ids) or not np.array_equal(self.ids[pos], ids)):
            missing = sorted(set(ids.tolist()) - set(self.ids.tolist()))[:5]
            raise InputError(f"Object id(s) {missing} are not in the instance mask.")
        return self.values[pos]


class ObjectFeatureExtractor(_ExtractorBase):
    """Per-object features from an image and its instance mask (0 = background)."""

    kind = "object"

    @abstractmethod
    def object_features(self, image: Any, mask: np.ndarray, *, axes: str | None = None) -> ObjectFeatures:
        """Features of every object in ``mask``; ids sorted ascending."""


def ensure_sequence(x: Any, what: str = "images") -> list[Any]:
    """One image or a list of images -> list of images.

    A list whose first element is itself 2D or more is a list of images (they may
    differ in size); a list of rows of numbers is one image written as nested
    lists; rows of different lengths are refused.
    """
    if not isinstance(x, (list, tuple)):
        return [x]
    if not x:
        return []
    try:
        first_ndim = np.ndim(x[0])
    except ValueError:  # a ragged element
        first_ndim = 2
    if isinstance(x[0], np.ndarray) or first_ndim >= 2:
        return list(x)
    try:
        arr = np.asarray(x)
        if arr.dtype == object:
            raise ValueError("ragged")
        return [arr]
    except (ValueError, TypeError):
        raise InputError(f"The {what} were given as nested lists of unequal lengths (a ragged list); pass a "
                         "numpy array per image, or a list of such arrays.") from None
