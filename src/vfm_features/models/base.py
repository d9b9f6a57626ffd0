"""The documented base of neural-network extractors: declare an input contract and a forward pass; the core does the rest.

A model plugin subclasses :class:`ModelExtractor` and provides four things:

* :meth:`ModelExtractor.input_contract` - input size, resize rule, stride, mean/std
  (an :class:`~vfm_features.models.contract.InputContract`);
* :attr:`ModelExtractor.features_per_image` - channels of the output;
* :meth:`ModelExtractor.load_model` - build the network on a device and load its weights;
* :meth:`ModelExtractor.forward` - a batch tensor (N, 3, h, w) in, a token grid (N, C, h', w') out.

The base class handles the options every model shares (weights, device,
precision, batch size, channel rule, intensity scaling, seed, tiling), prepares
each plane once (channel rule, intensity scaling to 0..1: :meth:`prepare`),
resizes, normalises and pads by the contract, batches model inputs, crops the
cells that cover the image and builds the geometry. The network is built on
first use, under a lock, so an instance is safe to call from several threads.
torch is only imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from typing import Any, Sequence

import numpy as np

from vfm_features.errors import InputError, PluginValidationError, WeightsError
from vfm_features.extractor import FeatureExtractor
from vfm_features.geometry import Embedding
from vfm_features.preprocess import NORMALIZATIONS, normalize_intensity, select_channels, to_rgb
from vfm_features.spec import ExtractorSpec
from vfm_features.validation import CHANNEL_MODES, check_bool, check_channels, check_int

from .contract import InputContract
from .device import PRECISIONS

__all__ = ["CHANNEL_MODES", "InputContract", "ModelExtractor", "check_precision", "load_strict"]


def check_precision(precision: Any) -> str:
    """The canonical name of ``precision`` ('bf16' -> 'bfloat16'), so that aliases give one signature."""
    value = str(precision).strip().lower()
    if value not in PRECISIONS:
        raise InputError(f"precision={precision!r} is unknown; use 'float32', 'bfloat16' or 'float16'.")
    return PRECISIONS[value]


def load_strict(module: Any, state: dict, *, what: str, hint: str) -> None:
    """``module.load_state_dict(state, strict=True)``; a mismatch raises WeightsError saying ``what`` and ``hint``."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 400 else detail[:400] + " …"
        raise WeightsError(f"{what} ({detail}). {hint}") from None


class ModelExtractor(FeatureExtractor):
    """Base of the extractors that run images through a neural network (see the module docstring).

    Shared options (keyword only; stored, nothing loads before the first ``embed`` or ``load()``):

    - ``weights``: a local weights file; default: the variant's published file from the cache.
    - ``pretrained``: False builds the network with random weights (``seed``) and reads no file.
    - ``trust_checkpoint``: allow checkpoints that pickle Python objects (runs code from the file).
    - ``device``: 'auto' (cuda, then mps, then cpu) or an explicit device.
    - ``precision``: 'float32', 'bfloat16' or 'float16' (autocast).
    - ``batch_size``: model inputs per forward pass (planes of a stack, tiles, or channels).
    - ``channels``: 'sum' (channels summed to grey, replicated to RGB), 'rgb' (a 3-channel
      image kept as colour; other counts summed), 'per_channel' (each channel embedded on
      its own, features concatenated) or a list of channel indices (that subset, then as 'rgb').
    - ``normalization``: intensity scaling to 0..1 (see :func:`vfm_features.preprocess.normalize_intensity`),
      done once per plane, also when the plane is tiled; values are clipped to 0..1.
    - ``seed``: seed of the random initialisation (``pretrained=False``).
    - ``progress``: download progress: True (bar), False, or a callable ``(bytes_done, bytes_total)``.
    - ``tile_shape``, ``halo``: embed large planes tile by tile (see :mod:`vfm_features.features.tiling`).
    """

    _TRANSIENT = ("_backend", "_lock")

    def __init__(self, spec: ExtractorSpec, *, weights: Any = None, pretrained: bool = True,
                 trust_checkpoint: bool = False, device: Any = "auto", precision: str = "float32",
                 batch_size: int = 1, channels: str | Sequence[int] = "sum", normalization: str = "auto",
                 seed: int = 0, progress: Any = True, tile_shape: Any = None, halo: Any = None,
                 **model_options: Any) -> None:
        check_bool(pretrained, "pretrained")
        check_bool(trust_checkpoint, "trust_checkpoint")
        if not pretrained and weights is not None:
            raise InputError("pretrained=False builds random weights; leave weights unset or use pretrained=True.")
        if normalization not in NORMALIZATIONS:
            raise InputError(f"normalization={normalization!r} is unknown; choose one of {NORMALIZATIONS}.")
        options = {"weights": None if weights is None else str(weights), "pretrained": pretrained,
                   "trust_checkpoint": trust_checkpoint, "device": device, "precision": check_precision(precision),
                   "batch_size": check_int(batch_size, "batch_size"), "channels": check_channels(channels),
                   "normalization": normalization, **model_options,
                   "seed": check_int(seed, "seed", low=0), "progress": progress}
        if tile_shape is not None:  # only stored when used, so untiled signatures stay as they were
            options.update(tile_shape=tile_shape, halo=halo)
        super().__init__(spec, **options)
        self._init_transient()

    def _init_transient(self) -> None:
        self._lock = threading.Lock()
        self._backend: Any = None

    # -- what a plugin provides ---------------------------------------------------------------
    @abstractmethod
    def input_contract(self) -> InputContract:
        """How the network wants its input (may depend on the options)."""

    @property
    @abstractmethod
    def features_per_image(self) -> int:
        """Feature channels the network gives for one model image."""

    @abstractmethod
    def load_model(self, device: str) -> Any:
        """Build the network on ``device`` with its weights (random ones if ``pretrained`` is False)."""

    def forward(self, model: Any, batch: Any) -> Any:
        """A normalised (N, 3, h, w) batch -> the (N, C, h', w') token grid; the default calls ``model(batch)``."""
        return model(batch)

    def embedding_meta(self) -> dict[str, Any]:
        """Extra facts to record in each embedding's ``meta`` (JSON-able)."""
        return {}

    # -- description ---------------------------------------------------------------------------
    def n_features_for(self, n_channels: int) -> int:
        per = self.features_per_image
        return per * n_channels if self.options["channels"] == "per_channel" else per

    # -- the steps the core runs -------------------------------------------------------------------
    def prepare(self, plane: np.ndarray) -> np.ndarray:
        """(Y, X, C) plane -> its model images side by side, (Y, X, 3k) float32 in 0..1.

        One image for 'sum', 'rgb' and channel indices; one per channel for
        'per_channel'. Each is scaled by ``normalization`` and clipped to 0..1.
        """
        channels = self.options["channels"]
        if channels == "per_channel":
            parts = [plane[..., c:c + 1] for c in range(plane.shape[-1])]
        elif channels == "rgb":
            parts = [plane]
        else:  # "sum" or indices
            parts = [select_channels(plane, channels)]
        scaled = [np.clip(normalize_intensity(to_rgb(p), self.options["normalization"]), 0, 1)
                  .astype(np.float32, copy=False) for p in parts]
        return scaled[0] if len(scaled) == 1 else np.concatenate(scaled, axis=-1)

    def embed_prepared(self, prepared: Sequence[np.ndarray]) -> list[Embedding]:
        contract = self.input_contract()
        jobs = [(i, p[..., k:k + 3]) for i, p in enumerate(prepared) for k in range(0, p.shape[-1], 3)]
        outputs = self.backend().run([img for _, img in jobs], contract)
        parts: list[list[np.ndarray]] = [[] for _ in prepared]
        for (i, _), out in zip(jobs, outputs):
            parts[i].append(out)
        meta = self.embedding_meta()
        embeddings = []
        for plane, maps in zip(prepared, parts):
            data = np.concatenate(maps, axis=0) if len(maps) > 1 else maps[0]
            layout = contract.layout(plane.shape[:2])
            embeddings.append(Embedding(np.ascontiguousarray(data, dtype=np.float32), layout.geometry,
                                        extractor=self.name, meta={**meta, "n_images": len(maps)}))
        return embeddings

    def backend(self) -> Any:
        """The object that runs the network (torch eager by default); created once, thread-safe."""
        with self._lock:
            if self._backend is None:
                from .torch_backend import TorchBackend

                self._backend = TorchBackend(self)
            return self._backend

    def load(self) -> "ModelExtractor":
        """Build the network and load its weights now (otherwise done on the first ``embed``)."""
        self.backend().load()
        return self

    def check_output(self, out: Any, layout: Any) -> None:
        """Raise PluginValidationError when a forward pass gave fewer cells than the contract promises."""
        h, w = out.shape[-2:]
        if h < layout.cells[0] or w < layout.cells[1]:
            raise PluginValidationError(
                f"{self.name}: the forward pass gave a {h} x {w} grid for a {layout.padded} input, but the input "
                f"contract (stride {self.input_contract().stride}) promises at least {layout.cells}.")
