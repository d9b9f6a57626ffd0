"""The SAM image-encoder extractor: preprocessing, lazy model loading, embedding and geometry.

torch and segment_anything are imported on first use (``load()`` or the first
``embed``), never at import of this module.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np

from vfm_features import Embedding, EmbeddingGeometry, InputError
from vfm_features.models.device import autocast, resolve_device
from vfm_features.models.base import CHANNEL_MODES, ModelExtractor, check_model_options  # noqa: F401
from vfm_features.models.weights import fetch_weights, load_state_dict

from ._checkpoint import check_architecture, encoder_state
from ._models import ARCHITECTURES, PIXEL_MEAN, PIXEL_STD, SamArchitecture

log = logging.getLogger(__name__)


def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Shape after scaling the longest side to ``long_side`` (segment_anything's ResizeLongestSide rule)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_geometry(image_shape: tuple[int, int], arch: SamArchitecture) -> tuple[EmbeddingGeometry, tuple[int, int]]:
    """Geometry of the cropped embedding of an image and the number of valid cells (rows, cols).

    The image is resized to ``(h, w) = resized_shape(H, W, img_size)`` and padded at
    the bottom and right. Each cell covers ``patch_size`` resized pixels, i.e.
    ``patch_size * H / h`` image rows and ``patch_size * W / w`` image columns; the
    cells that hold any image content are the first ``ceil(h / patch_size)`` rows
    and ``ceil(w / patch_size)`` columns (the last may be partly padding).
    """
    H, W = (int(s) for s in image_shape)
    h, w = resized_shape(H, W, arch.img_size)
    p = arch.patch_size
    cells = (math.ceil(h / p), math.ceil(w / p))
    return EmbeddingGeometry(image_shape=(H, W), step=(p * H / h, p * W / w)), cells


def _architecture(value: Any) -> SamArchitecture:
    if isinstance(value, SamArchitecture):
        return value
    if isinstance(value, str) and value in ARCHITECTURES:
        return ARCHITECTURES[value]
    raise InputError(f"architecture={value!r} is unknown; use one of {sorted(ARCHITECTURES)} "
                     "or a vfm_features_sam.SamArchitecture.")


class SamExtractor(ModelExtractor):
    """256 features per 16x16-pixel patch from a SAM image encoder (SAM, µSAM, PathoSAM).

    Options (keyword only; stored, nothing loads before the first ``embed`` or ``load()``):

    - ``weights``: a local checkpoint file (SAM or micro-sam layout); default: the
      variant's published file from the cache, downloaded on first use.
    - ``pretrained``: False builds the encoder with random weights (``seed``) and
      reads no file (tests, benchmarks).
    - ``trust_checkpoint``: allow checkpoints that pickle Python objects (runs code from the file).
    - ``device``: 'auto' (cuda, then mps, then cpu) or an explicit device.
    - ``precision``: 'float32', 'bfloat16' or 'float16' (autocast).
    - ``batch_size``: model inputs per forward pass (planes of a stack, or channels).
    - ``channels``: 'sum' (all channels summed to grey, the default), 'rgb' (a 3-channel
      image kept as colour; other counts summed), 'per_channel' (each channel
      embedded on its own, features concatenated: 256 x C) or a list of channel
      indices (that subset, then as 'rgb').
    - ``normalization``: intensity scaling to [0, 1] before x255 (see
      :func:`vfm_features.preprocess.normalize_intensity`); values are clipped to 0..255.
    - ``architecture``: set by the variant; a :class:`SamArchitecture` builds a custom encoder.
    """

    def __init__(self, spec: Any, *, architecture: str | SamArchitecture = "vit_b", weights: Any = None,
                 pretrained: bool = True, trust_checkpoint: bool = False, device: Any = "auto",
                 precision: str = "float32", batch_size: int = 1, channels: str | Sequence[int] = "sum",
                 normalization: str = "auto", seed: int = 0, progress: Any = True,
                 tile_shape: Any = None, halo: Any = None) -> None:
        _architecture(architecture)
        options = check_model_options(weights=weights, pretrained=pretrained, trust_checkpoint=trust_checkpoint,
                                      device=device, precision=precision, batch_size=batch_size, channels=channels,
                                      normalization=normalization)
        super().__init__(spec, architecture=architecture, **options, seed=seed, progress=progress,
                         tile_shape=tile_shape, halo=halo)
        self._encoder: Any = None
        self._device: str | None = None
        self._weights: tuple[Any, str] | None = None  # (path, verified hash)
        self._layout: str | None = None

    # -- description ---------------------------------------------------------
    @property
    def architecture(self) -> SamArchitecture:
        return _architecture(self.options["architecture"])

    @property
    def features_per_image(self) -> int:
        return self.architecture.out_chans

    @property
    def weights_hash(self) -> str:
        """Checksum ("algo:hexdigest") of the weights file in use, verified against the published one.

        Resolves (and if needed downloads) the file, without building the model.
        Random weights report ``random-init:<architecture>:seed=<seed>``.
        """
        if not self.options["pretrained"]:
            return f"random-init:{self.architecture.name}:seed={self.options['seed']}"
        return self._resolve()[1]

    @property
    def weights_layout(self) -> str | None:
        """Checkpoint layout found when loading ('SAM state dict', 'micro-sam checkpoint …'), None before."""
        return self._layout

    def signature(self) -> dict[str, Any]:
        sig = super().signature()
        arch = self.architecture
        sig["options"]["architecture"] = arch.name if ARCHITECTURES.get(arch.name) == arch else repr(arch)
        return sig

    # -- loading ---------------------------------------------------------------
    def _resolve(self) -> tuple[Any, str]:
        if self._weights is None:
            self._weights = fetch_weights(self.spec, self.options["weights"], progress=self.options["progress"])
        return self._weights

    def load(self) -> "SamExtractor":
        """Build the encoder and load its weights now (otherwise done on the first ``embed``)."""
        if self._encoder is not None:
            return self
        import torch

        device = resolve_device(self.options["device"])
        arch = self.architecture
        if self.options["pretrained"]:
            path, digest = self._resolve()
            encoder_sd, layout = encoder_state(
                load_state_dict(path, trust_checkpoint=self.options["trust_checkpoint"]), path)
            check_architecture(encoder_sd, arch, path=path, extractor=self.name)
            with torch.device("meta"):
                encoder = _build_encoder(arch)
            try:
                encoder.load_state_dict(encoder_sd, strict=True, assign=True)
            except RuntimeError as exc:
                from vfm_features import WeightsError

                raise WeightsError(f"{path} does not fit the {arch.name} image encoder of {self.name}: "
                                   f"{str(exc).splitlines()[0]} {_key_diff(encoder, encoder_sd)}") from None
            encoder = encoder.float()
            self._layout = layout
            log.info("%s: loaded image encoder from %s (%s, %s).", self.name, path, layout, digest)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.options["seed"]))
                encoder = _build_encoder(arch)
            self._layout = "random initialisation"
        self._encoder = encoder.eval().requires_grad_(False).to(device)
        self._device = device
        return self

    # -- embedding -------------------------------------------------------------
    def _views(self, plane: np.ndarray) -> list[np.ndarray]:
        """The (Y, X, 3) float32 images in 0..255 that go to the model for one (Y, X, C) plane."""
        return [x * np.float32(255) for x in self.model_images(plane)]

    def _embed_planes(self, planes: list[np.ndarray]) -> list[Embedding]:
        self.load()
        arch = self.architecture
        geoms: list[tuple[EmbeddingGeometry, tuple[int, int]]] = []
        parts: list[list[np.ndarray]] = []
        batch: list[tuple[int, np.ndarray]] = []
        for i, plane in enumerate(planes):
            geoms.append(sam_geometry(plane.shape[:2], arch))
            parts.append([])
            for view in self._views(plane):
                batch.append((i, view))
                if len(batch) == self.options["batch_size"]:
                    self._run(batch, geoms, parts)
                    batch = []
        if batch:
            self._run(batch, geoms, parts)
        return [Embedding(np.concatenate(p, axis=0) if len(p) > 1 else p[0], g, extractor=self.name,
                          meta={"layout": self._layout})
                for p, (g, _) in zip(parts, geoms)]

    def _run(self, batch: list[tuple[int, np.ndarray]], geoms: list, parts: list[list[np.ndarray]]) -> None:
        import torch

        with torch.inference_mode():
            x = torch.cat([self._model_input(view) for _, view in batch])
            with autocast(self._device, self.options["precision"]):
                y = self._call_model(self._encoder, x)
            y = y.float().cpu().numpy()
        for (i, _), out in zip(batch, y):
            rows, cols = geoms[i][1]
            parts[i].append(np.ascontiguousarray(out[:, :rows, :cols]))

    def _model_input(self, view: np.ndarray) -> Any:
        """(Y, X, 3) 0..255 -> (1, 3, S, S): resized (longest side S), normalised, zero-padded."""
        import torch
        import torch.nn.functional as F

        arch = self.architecture
        t = torch.from_numpy(np.ascontiguousarray(view)).to(self._device).permute(2, 0, 1)[None]
        h, w = resized_shape(view.shape[0], view.shape[1], arch.img_size)
        if (h, w) != tuple(view.shape[:2]):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(PIXEL_MEAN, device=t.device).view(1, 3, 1, 1)
        std = torch.tensor(PIXEL_STD, device=t.device).view(1, 3, 1, 1)
        t = (t - mean) / std
        return F.pad(t, (0, arch.img_size - w, 0, arch.img_size - h))


def _build_encoder(arch: SamArchitecture) -> Any:
    """A ``segment_anything`` ImageEncoderViT with the hyper-parameters of ``arch`` (as in build_sam.py)."""
    from functools import partial

    import torch
    from segment_anything.modeling.image_encoder import ImageEncoderViT

    return ImageEncoderViT(
        img_size=arch.img_size,
        patch_size=arch.patch_size,
        embed_dim=arch.embed_dim,
        depth=arch.depth,
        num_heads=arch.num_heads,
        mlp_ratio=4,
        out_chans=arch.out_chans,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=arch.window_size,
        global_attn_indexes=tuple(arch.global_attn_indexes),
    )


def _key_diff(module: Any, state: dict) -> str:
    expected, found = set(module.state_dict()), set(state)
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s), e.g. {missing[:3]}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s), e.g. {unexpected[:3]}")
    return ("(" + "; ".join(parts) + ")") if parts else ""
