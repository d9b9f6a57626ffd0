"""FilterExtractor: the ilastik-style filter bank per input channel, at full resolution."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from vfm_features import Embedding, EmbeddingGeometry, FeatureExtractor, InputError
from vfm_features.preprocess import NORMALIZATIONS, normalize_intensity
from vfm_features.threads import n_threads as n_threads_for
from vfm_features.threads import native_threads

from .backends import check_backend, resolve_backend
from .features import DEFAULT_FEATURES, DEFAULT_SIGMAS, FEATURES, check_features, check_sigmas, halo_for, output_names
from .volume import check_ndim, check_spacing, filter_volume, output_names_3d


class FilterExtractor(FeatureExtractor):
    """Gaussian, LoG, gradient magnitude, DoG, structure-tensor and Hessian eigenvalues.

    The definitions are ilastik's (fastfilters / Vigra: kernel windows, second-derivative
    kernel, mirror borders, eigenvalue order), equal to fastfilters2 within 1e-5 of each
    feature's range; see docs/filters.md.

    Options (keyword-only):

    - ``sigmas``: scales in pixels, default ``(0.5, 1.0, 2.0, 4.0)``.
    - ``features``: subset and order of ``gaussian``, ``log``, ``gradient_magnitude``,
      ``dog`` (G(σ) − G(0.66σ)), ``structure_tensor`` (2 eigenvalues, descending;
      gradient at inner scale σ, tensor smoothed at outer scale 0.5σ, as ilastik) and
      ``hessian`` (2 eigenvalues, descending); default all.
    - ``normalization``: intensity scaling before filtering (see
      :func:`vfm_features.preprocess.normalize_intensity`); default ``"none"``, i.e.
      raw values as ilastik uses them.
    - ``n_threads``: threads sharing the bands of rows (BLAS is held at one thread
      meanwhile); default: all CPU cores. Does not change the features.
    - ``backend``: ``"numba"`` (one compiled streaming pass per band and scale,
      :mod:`.compiled`; the fast one), ``"numpy"`` (whole-plane passes of numpy and BLAS
      calls, :mod:`.scale`; needs nothing compiled) or ``"auto"`` (default: numba where
      it is installed, the ``fast`` extra). Both compute the same definitions; they
      differ by float32 rounding (below 1e-5 of a feature's range), so a classifier
      trained with one predicts with the other. ``n_threads`` and ``backend`` change how,
      not what: both are left out of :meth:`signature`.
    - ``tile_shape``, ``halo``: embed large planes tile by tile (core tiling). ``halo``
      defaults to :attr:`halo`, what these sigmas and features need for tiles that
      equal the whole-image features exactly; a smaller one warns.
    - ``ndim``: 2 (default: every plane on its own) or 3 (true 3D filters over a whole
      ZYX volume; the extractor is then :attr:`volumetric`, see :mod:`.volume`).
    - ``spacing``: voxel size (z, y, x) for ``ndim=3``, default (1, 1, 1); sigmas are
      in x pixels and scaled per axis so that they are isotropic in physical units.
      ``ndim`` and ``spacing`` enter the signature only with ``ndim=3`` (2D is unchanged).

    Output channels are ordered channel -> feature -> sigma -> component and named by
    :meth:`feature_names`; the embedding has the image's resolution (identity geometry).
    """

    RUNTIME_OPTIONS = FeatureExtractor.RUNTIME_OPTIONS + ("backend",)

    def __init__(self, spec, *, sigmas: Sequence[float] = DEFAULT_SIGMAS,
                 features: Sequence[str] = DEFAULT_FEATURES, normalization: str = "none",
                 n_threads: int | None = None, tile_shape: Any = None, halo: Any = None, ndim: int = 2,
                 spacing: Any = None, backend: str = "auto") -> None:
        sigmas = check_sigmas(sigmas)
        features = check_features(features)
        if normalization not in NORMALIZATIONS:
            raise InputError(f"normalization={normalization!r} is unknown; choose one of {NORMALIZATIONS}.")
        if n_threads is not None and (not isinstance(n_threads, int) or n_threads < 1):
            raise InputError(f"n_threads must be a positive integer or None; got {n_threads!r}.")
        check_backend(backend)
        tiling = {}
        if tile_shape is not None:
            needed = halo_for(features, sigmas)
            if halo is None:
                halo = needed  # the core would fall back to spec.halo, which assumes the default sigmas
            elif _smallest(halo) < needed:
                warnings.warn(f"halo={halo!r} is smaller than the {needed} px that sigmas={list(sigmas)} need; "
                              "tiled features will differ from whole-image ones near tile seams.",
                              UserWarning, stacklevel=2)
            tiling = {"tile_shape": tile_shape, "halo": halo}
        volume = _volume_options(ndim, spacing, tile_shape)
        super().__init__(spec, sigmas=sigmas, features=features, normalization=normalization,
                         n_threads=n_threads, backend=backend, **tiling, **volume)

    @property
    def sigmas(self) -> tuple[float, ...]:
        return self.options["sigmas"]

    @property
    def features(self) -> tuple[str, ...]:
        return self.options["features"]

    @property
    def volumetric(self) -> bool:
        """True with ``ndim=3``: a slice's features depend on its neighbours, so whole volumes are embedded."""
        return self.options.get("ndim", 2) == 3

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(self.options.get("spacing", (1.0, 1.0, 1.0)))

    @property
    def halo(self) -> int:
        """Context in pixels for seamless tiles with these options (the spec's halo is for the defaults)."""
        return halo_for(self.features, self.sigmas)

    def n_features_for(self, n_channels: int) -> int:
        return n_channels * len(self._output_names())

    def _output_names(self) -> list[str]:
        """One channel's output names: 2D ones, or the 3D ones (``'hessian3d_ev2_s1.0'``) with ``ndim=3``."""
        names = output_names_3d if self.volumetric else output_names
        return names(self.features, self.sigmas)

    def feature_names(self, n_channels: int = 1) -> list[str]:
        """Output channel names, e.g. ``'ch0_gaussian_s1.0'`` (``'ch0_gaussian3d_s1.0'`` in 3D), in embedding order."""
        per_channel = self._output_names()
        return [f"ch{c}_{name}" for c in range(n_channels) for name in per_channel]

    def prepare(self, plane: np.ndarray) -> np.ndarray:
        """Intensities scaled by ``normalization`` (once per plane, also when it is tiled), float32."""
        return normalize_intensity(plane, self.options["normalization"])

    @property
    def backend(self) -> str:
        """The backend that computes the features: ``"numba"`` or ``"numpy"`` (``"auto"`` resolved)."""
        return resolve_backend(self.options.get("backend", "auto"))

    def _embed_plane(self, plane: np.ndarray) -> Embedding:
        Y, X, C = plane.shape
        out = np.empty((self.n_features_for(C), Y, X), dtype=np.float32)
        n_threads = self.options["n_threads"] or n_threads_for(-1)  # the library's thread budget
        pool = _pool(n_threads)
        filter_channel = self._filter_compiled if self.backend == "numba" else self._numpy_filter((Y, X))
        with native_threads(1):
            for c in range(C):
                filter_channel(np.asarray(plane[..., c], dtype=np.float32), c, C, out, pool, n_threads)
        return Embedding(out, EmbeddingGeometry(image_shape=(Y, X)), extractor=self.name,
                         meta={"feature_names": self.feature_names(C)})

    def _filter_compiled(self, channel, c, n_channels, out, pool, n_threads) -> None:
        from .stream import filter_plane, plans_for

        per_channel = out.shape[0] // n_channels
        filter_plane(channel, plans_for(self.sigmas, self.features), out[c * per_channel:(c + 1) * per_channel],
                     pool, n_threads)

    def _numpy_filter(self, shape: tuple[int, int]):
        """The numpy backend's per-channel filter, with one workspace (planes) for all channels of one image."""
        from .parallel import run_phases
        from .scale import ScaleFilters, Workspace

        workspace = Workspace(shape, self.sigmas, self.features)

        def filter_channel(channel, c, n_channels, out, pool, n_threads) -> None:
            workspace.load(channel)
            for i, sigma in enumerate(self.sigmas):
                outputs = {name: [out[k] for k in self._slots(c, name, i, n_channels)] for name in self.features}
                run_phases(ScaleFilters(workspace, sigma, self.features, outputs).phases(), pool, n_threads)

        return filter_channel

    def embed_volume(self, planes: Sequence[np.ndarray]) -> list[Embedding]:
        """With ``ndim=3``: the 3D features of the volume of (Y, X, C) slices ``planes``, one embedding per slice.

        The volume is normalised as a whole and filtered once per channel; each
        slice's embedding (identity geometry) is a view into one (Z, F, Y, X) array.
        """
        if not self.volumetric:
            return super().embed_volume(planes)
        volume = normalize_intensity(_stacked(planes), self.options["normalization"])
        Z, Y, X, C = volume.shape
        per_channel = len(self._output_names())
        out = np.empty((Z, C * per_channel, Y, X), dtype=np.float32)
        with native_threads(1):
            for c in range(C):
                targets = [out[:, c * per_channel + k] for k in range(per_channel)]
                filter_volume(np.ascontiguousarray(volume[..., c]), self.sigmas, self.features, self.spacing, targets)
        names = self.feature_names(C)
        return [Embedding(out[z], EmbeddingGeometry(image_shape=(Y, X)), extractor=self.name,
                          meta={"feature_names": names}) for z in range(Z)]

    def _slots(self, channel: int, feature: str, sigma_index: int, n_channels: int) -> range:
        """Output indices of ``feature`` at ``sigmas[sigma_index]`` for ``channel``."""
        start = channel * (self.n_features_for(n_channels) // n_channels)
        for name in self.features:
            n_out = len(FEATURES[name].outputs)
            if name == feature:
                start += sigma_index * n_out
                return range(start, start + n_out)
            start += len(self.sigmas) * n_out
        raise KeyError(feature)


def _pool(n_threads: int) -> ThreadPoolExecutor | None:
    """The process's pool of ``n_threads`` > 1 threads, else None (everything runs on the calling thread)."""
    from .parallel import shared_pool

    return shared_pool(n_threads) if n_threads > 1 else None


def _volume_options(ndim: Any, spacing: Any, tile_shape: Any) -> dict[str, Any]:
    """The options ``ndim`` and ``spacing`` record: none for 2D (its signature stays as it was), both for 3D."""
    ndim = check_ndim(ndim)
    checked = check_spacing((1.0, 1.0, 1.0) if spacing is None else spacing)
    if ndim == 2:
        if checked != (1.0, 1.0, 1.0):
            raise InputError(f"spacing={list(checked)} applies to 3D filters; pass ndim=3 with it (2D filters "
                             "work in pixels of each plane).")
        return {}
    if tile_shape is not None:
        raise InputError("tile_shape tiles 2D planes; filters with ndim=3 compute the whole volume at once. Drop "
                         "tile_shape, or use ndim=2 for tiled 2D planes.")
    return {"ndim": 3, "spacing": checked}


def _stacked(planes: Sequence[np.ndarray]) -> np.ndarray:
    """The (Z, Y, X, C) volume of equally shaped (Y, X, C) slices."""
    shapes = {np.shape(p) for p in planes}
    if not planes or len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise InputError(f"A volume needs one or more (Y, X, C) slices of one shape; got shapes {sorted(shapes)}.")
    return np.stack(planes)


def _smallest(halo: Any) -> float:
    """Smallest entry of an int or (y, x) halo; +inf for malformed ones (the core's Tiling rejects those)."""
    try:
        return float(np.min(np.asarray(halo, dtype=float)))
    except (TypeError, ValueError):
        return float("inf")

