"""What the neural-network extractors (sam, sam2, dinov3) share: options, channel handling, batching, tiling.

:class:`ModelExtractor` is the base of an extractor that feeds one or more
(Y, X, 3) images in 0..1 per plane to a model (:meth:`ModelExtractor.model_images`)
and concatenates the feature maps. A subclass implements :meth:`_embed_planes`
(a batch of planes through the model) and :attr:`features_per_image`.

The ``check_*`` functions validate the options those extractors have in common
and raise :class:`vfm_features.InputError`.

torch is only imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import Any, Sequence

import numpy as np

from vfm_features.models.device import PRECISIONS
from vfm_features.errors import InputError
from vfm_features.extractor import FeatureExtractor
from vfm_features.geometry import Embedding, EmbeddingGeometry
from vfm_features.preprocess import NORMALIZATIONS, normalize_intensity, select_channels, to_planes, to_rgb
from vfm_features.spec import ExtractorSpec
from vfm_features.features.tiling import tiling_for

__all__ = [
    "CHANNEL_MODES",
    "RUNTIME_OPTIONS",
    "ModelExtractor",
    "check_batch_size",
    "check_channels",
    "check_model_options",
    "check_normalization",
    "check_precision",
    "check_pretrained",
    "resized_batch",
]

CHANNEL_MODES = ("sum", "rgb", "per_channel")
# Options that do not change the features (left out of the signature; weights_hash names the weights).
RUNTIME_OPTIONS = ("weights", "device", "batch_size", "progress", "trust_checkpoint")


# -- option checks -----------------------------------------------------------------
def load_strict(module: Any, state: dict, *, what: str, hint: str) -> None:
    """``module.load_state_dict(state, strict=True)``; a mismatch raises WeightsError saying ``what`` and ``hint``."""
    from vfm_features.errors import WeightsError

    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 400 else detail[:400] + " …"
        raise WeightsError(f"{what} ({detail}). {hint}") from None


def check_precision(precision: Any) -> str:
    """The canonical name of ``precision`` ('bf16' -> 'bfloat16'), so that aliases give one signature."""
    value = str(precision).strip().lower()
    if value not in PRECISIONS:
        raise InputError(f"precision={precision!r} is unknown; use 'float32', 'bfloat16' or 'float16'.")
    return PRECISIONS[value]


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}; expected a positive integer.")
    return int(batch_size)


def check_channels(channels: Any) -> str | tuple[int, ...]:
    """A channel mode of :data:`CHANNEL_MODES`, or the channel indices as a tuple of ints."""
    if isinstance(channels, str):
        if channels not in CHANNEL_MODES:
            raise InputError(f"channels={channels!r} is unknown; use one of {CHANNEL_MODES} or a list of indices.")
        return channels
    try:
        idx = tuple(int(c) for c in channels)
        if any(c != i for c, i in zip(channels, idx)):
            raise ValueError("not whole numbers")
    except (TypeError, ValueError):
        raise InputError(f"channels must be one of {CHANNEL_MODES} or a list of channel indices; "
                         f"got {channels!r}.") from None
    if not idx:
        raise InputError("channels=[] selects nothing; pass at least one channel index.")
    return idx


def check_normalization(normalization: Any) -> str:
    if normalization not in NORMALIZATIONS:
        raise InputError(f"normalization={normalization!r} is unknown; choose one of {NORMALIZATIONS}.")
    return normalization


def check_pretrained(pretrained: Any) -> bool:
    if not isinstance(pretrained, bool):
        raise InputError(f"pretrained must be True or False; got {pretrained!r}.")
    return pretrained


def check_model_options(*, weights: Any, pretrained: Any, trust_checkpoint: Any, device: Any, precision: Any,
                        batch_size: Any, channels: Any, normalization: Any) -> dict[str, Any]:
    """Validate the options every model extractor has; return them normalised, in this order.

    ``weights`` becomes a string (or None), ``precision`` stripped and lower-cased,
    ``batch_size`` an int and channel indices a tuple of ints. ``pretrained`` is only
    checked against ``weights`` (see :func:`check_pretrained` for its type).
    """
    if not pretrained and weights is not None:
        raise InputError("pretrained=False builds random weights; leave weights unset or use pretrained=True.")
    return {"weights": None if weights is None else str(weights), "pretrained": pretrained,
            "trust_checkpoint": trust_checkpoint, "device": device, "precision": check_precision(precision),
            "batch_size": check_batch_size(batch_size), "channels": check_channels(channels),
            "normalization": check_normalization(normalization)}


# -- the base class ------------------------------------------------------------------
class ModelExtractor(FeatureExtractor):
    """Base of the extractors that run (Y, X, 3) images through a neural network.

    Shared behaviour, driven by the options ``channels``, ``normalization``,
    ``batch_size`` and ``tile_shape``/``halo``:

    - :meth:`model_images` turns a (Y, X, C) plane into the images the model sees:
      one ('sum', 'rgb', a list of indices) or one per channel ('per_channel'),
      each scaled to 0..1 by :func:`~vfm_features.preprocess.normalize_intensity`
      and clipped. Their features are concatenated, so an embedding has
      :attr:`features_per_image` x (channels or 1) features.
    - :meth:`embed_stack` sends the planes of a stack through :meth:`_embed_planes`
      together (``batch_size`` model images per forward pass) unless tiling is on.
    - With tiling, :meth:`embed_plane` prepares the model images of the WHOLE plane
      first, so intensities are scaled once per image, not per tile.

    Subclasses implement :meth:`_embed_planes` and :attr:`features_per_image`.
    """

    def __init__(self, spec: ExtractorSpec, *, tile_shape: Any = None, halo: Any = None, **options: Any) -> None:
        super().__init__(spec, **options)
        if tile_shape is not None:  # only stored when used, so untiled signatures stay as they were
            self.options.update(tile_shape=tile_shape, halo=halo)
        self._views_ready = False  # True while tiles of already prepared model images are embedded

    # -- description ---------------------------------------------------------
    @property
    @abstractmethod
    def features_per_image(self) -> int:
        """Features the model gives for one model image."""

    def n_features_for(self, n_channels: int) -> int:
        per = self.features_per_image
        return per * n_channels if self.options["channels"] == "per_channel" else per

    def signature(self) -> dict[str, Any]:
        sig = super().signature()
        sig["options"] = {k: v for k, v in sig["options"].items() if k not in RUNTIME_OPTIONS}
        return sig

    # -- embedding -----------------------------------------------------------
    @abstractmethod
    def _embed_planes(self, planes: list[np.ndarray]) -> list[Embedding]:
        """Embed (Y, X, C) planes (their :meth:`model_images` batched ``batch_size`` at a time)."""

    def _embed_plane(self, plane: np.ndarray) -> Embedding:
        return self._embed_planes([plane])[0]

    def embed_stack(self, image: Any, *, axes: str) -> list[Embedding]:
        """Embed a stack slice by slice, ``batch_size`` model inputs per forward pass."""
        planes, _ = to_planes(image, axes)
        if tiling_for(self) is not None:
            return [self.embed_plane(p) for p in planes]
        return self._embed_planes(planes)

    def embed_plane(self, plane: np.ndarray, *, progress: Any = None) -> Embedding:
        """Embed a (Y, X, C) plane; when tiled, intensities are scaled once for the whole plane.

        Scaling each tile on its own (min-max, percentiles) would give every tile
        other intensities and visible seams, so the model images are prepared here
        and the tiles only cut them.
        """
        if tiling_for(self) is None:
            return super().embed_plane(plane, progress=progress)
        images = np.concatenate(self.model_images(plane), axis=-1)
        self._views_ready = True
        try:
            return super().embed_plane(images, progress=progress)
        finally:
            self._views_ready = False

    def _call_model(self, model: Any, *args: Any, **kwargs: Any) -> Any:
        """``model(*args, **kwargs)``, falling back from MPS to the CPU when an operation is missing.

        MPS lacks some operations; when one is missing the model moves to the CPU
        once, with a warning, instead of failing (setting PYTORCH_ENABLE_MPS_FALLBACK=1
        before starting Python falls back per operation instead). Later inputs
        prepared for MPS are moved to the CPU too.
        """
        import torch

        def to_cpu(values):
            return [v.cpu() if isinstance(v, torch.Tensor) else v for v in values]

        if getattr(self, "_mps_fallback", False):
            args, kwargs = to_cpu(args), dict(zip(kwargs, to_cpu(kwargs.values())))
        try:
            return model(*args, **kwargs)
        except NotImplementedError as exc:
            if not str(getattr(self, "_device", "")).startswith("mps"):
                raise
            warnings.warn(
                f"{self.name}: an operation is not implemented on MPS ({str(exc).splitlines()[0]}); "
                "running this extractor on the CPU from now on. Set PYTORCH_ENABLE_MPS_FALLBACK=1 before "
                "starting Python to fall back per operation instead.", RuntimeWarning, stacklevel=3)
            model.to("cpu")
            self._device = "cpu"
            self._mps_fallback = True
            return model(*to_cpu(args), **dict(zip(kwargs, to_cpu(kwargs.values()))))

    def model_images(self, plane: np.ndarray) -> list[np.ndarray]:
        """(Y, X, C) plane -> the (Y, X, 3) float32 0..1 images the model sees (one, or one per channel)."""
        if self._views_ready:  # a tile of the images prepared by embed_plane
            return [plane[..., i:i + 3] for i in range(0, plane.shape[-1], 3)]
        channels = self.options["channels"]
        if channels == "per_channel":
            parts = [plane[..., c:c + 1] for c in range(plane.shape[-1])]
        elif channels == "rgb":
            parts = [plane]
        else:  # "sum" or indices
            parts = [select_channels(plane, channels)]
        scaled = (normalize_intensity(to_rgb(p), self.options["normalization"]) for p in parts)
        return [np.clip(x, 0, 1).astype(np.float32, copy=False) for x in scaled]

    def _stretched_embedding(self, plane_shape: Sequence[int], parts: list[np.ndarray], meta: dict) -> Embedding:
        """The embedding of a plane from the (C, h, w) maps of its model images, each spanning the whole plane."""
        data = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
        Y, X = plane_shape[:2]
        h, w = data.shape[1:]
        geometry = EmbeddingGeometry(image_shape=(Y, X), step=(Y / h, X / w))
        return Embedding(np.ascontiguousarray(data, dtype=np.float32), geometry, extractor=self.name, meta=meta)


def resized_batch(images: Sequence[np.ndarray], shape: tuple[int, int], mean: Sequence[float], std: Sequence[float],
                  device: Any) -> Any:
    """(N, 3, *shape) torch tensor: (Y, X, 3) images resized (bilinear, antialiased), minus mean, over std."""
    import torch
    import torch.nn.functional as F

    batch = torch.cat([
        F.interpolate(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
                      .to(device), size=tuple(shape), mode="bilinear", align_corners=False, antialias=True)
        for img in images])
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (batch - mean_t) / std_t
