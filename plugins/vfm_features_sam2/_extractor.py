"""Sam2Extractor: the SAM2 / SAM2.1 image encoder (Hiera trunk + FPN neck) as a feature extractor.

torch and sam2 are imported inside methods: building the extractor only stores
(and checks) options; the model is built on first use (or by :meth:`Sam2Extractor.load`).
The encoder is built from plain data (the model table, or a checked ``config``,
see :mod:`vfm_features_sam2._config`); hydra is never called.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vfm_features import InputError, WeightsError
from vfm_features.models.base import ModelExtractor, load_strict
from vfm_features.models.contract import InputContract

from ._config import build_image_encoder, plain, read_config
from ._models import ARCHITECTURES, DEFAULT_STRIDE, INPUT_SIZE, MODELS, PIXEL_MEAN, PIXEL_STD, STRIDES

_ENCODER_PREFIX = "image_encoder."


class Sam2Extractor(ModelExtractor):
    """Features from the image encoder of SAM 2 / SAM 2.1.

    The image is prepared as SAM2's image predictor does it: intensities scaled to
    0..1, resized to ``input_size`` x ``input_size`` (1024; the aspect ratio is not
    kept, so cells are anisotropic for non-square images), ImageNet mean/std. The
    output is one FPN level of the encoder, 256 channels: stride 16 (64 x 64 cells,
    the map SAM2's mask decoder uses as image embedding) by default.

    Options (keyword-only; stored, nothing loads before the first ``embed`` or ``load()``):

    - ``weights``: a checkpoint file (``{"model": state_dict}`` as Meta publishes
      them, or a plain state dict with ``image_encoder.*`` keys). Default: the
      variant's published file from the cache, downloaded on first use.
    - ``pretrained``: False builds a randomly initialised encoder (``seed``,
      reproducible) and reads no file: a baseline that needs no download.
    - ``trust_checkpoint``: allow a checkpoint that pickles Python objects (see
      :func:`vfm_features.models.weights.load_state_dict`; runs code from the file).
    - ``device``: 'auto' (cuda, then mps, then cpu) or an explicit device.
    - ``precision``: 'float32' (default), 'bfloat16' or 'float16' (autocast).
    - ``batch_size``: model inputs per forward pass (planes of a stack, or channels).
    - ``channels``: 'sum' (all channels summed to grey, replicated to RGB; the
      default), 'rgb' (a 3-channel image kept as colour; other counts summed),
      'per_channel' (each channel embedded on its own, features concatenated:
      256 x C) or a list of channel indices (that subset, then as 'rgb').
    - ``normalization``: intensity scaling to 0..1 before the ImageNet statistics
      (see :func:`vfm_features.preprocess.normalize_intensity`); clipped to 0..1.
    - ``level``: stride of the FPN level returned: 16 (default), 8 or 4. The
      stride-8 and stride-4 levels are the raw 256-channel neck outputs (SAM2's mask
      decoder projects them to 64 and 32 channels; that projection is not applied).
    - ``input_size``: side of the square model input, a multiple of 32; default
      the config's ``image_size`` (1024, the size the models were trained at).
      Smaller is faster but coarser.
    - ``config``: a SAM2 model config (YAML file or mapping with
      ``model.image_encoder``, or the ``image_encoder`` mapping itself) for
      architectures other than the released ones. It is data, not code: each
      section builds its one sam2 class, values must be numbers, flags or lists of
      integers, and anything else is refused (see :mod:`vfm_features_sam2._config`).
    - ``seed``: seed of the random initialisation (``pretrained=False``); default 0.
    - ``progress``: download progress: True (tqdm bar), False, or a callable
      ``progress(bytes_done, bytes_total_or_None)``.
    - ``tile_shape``, ``halo``: embed large planes tile by tile (see
      :mod:`vfm_features.features.tiling`); intensities are scaled once for the whole plane.

    The encoder's ``no_mem_embed`` (a constant 256-vector that SAM2's image
    predictor adds to the stride-16 map) is not added: it shifts every cell by the
    same vector and carries no image information.
    """

    def __init__(self, spec, *, level: int = DEFAULT_STRIDE, input_size: int | None = None,
                 config: str | os.PathLike | Mapping | None = None, **options: Any) -> None:
        if spec.variant not in MODELS and config is None:
            raise InputError(f"{spec.name} is not a released SAM2 model ({', '.join(MODELS)}); "
                             "pass its architecture with config=PATH_TO_YAML.")
        if level not in STRIDES:
            raise InputError(f"level={level!r} is not an FPN stride of the SAM2 image encoder; "
                             f"use one of {STRIDES} (16 = the decoder's image embedding, 64 x 64 cells).")
        if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer))
                                       or input_size < 64 or input_size % 32):
            raise InputError(f"input_size must be a multiple of 32 of at least 64 (Hiera windows and the "
                             f"FPN need it); got {input_size!r}. The models were trained at {INPUT_SIZE}.")
        if config is not None and not isinstance(config, (str, os.PathLike, Mapping)):
            raise InputError(f"config must be a YAML file path or a mapping; got {type(config).__name__}.")
        config = str(config) if isinstance(config, (str, os.PathLike)) else plain(config)
        # checked now, so that a config that is not a SAM2 image encoder is refused before anything runs
        self._architecture, self._image_size = (
            (ARCHITECTURES[MODELS[spec.variant].architecture], None) if config is None else read_config(config))
        super().__init__(spec, level=int(level), input_size=None if input_size is None else int(input_size),
                         config=config, **options)
        self._weights: tuple[Path, str] | None = None  # (file, verified "algo:hexdigest")

    # -- description ---------------------------------------------------------
    @property
    def out_channels(self) -> int:
        """Channels of one FPN level (256 for every released model)."""
        return int(self._architecture["neck"]["d_model"])

    @property
    def features_per_image(self) -> int:
        return self.out_channels

    @property
    def stride(self) -> int:
        """Input pixels per output cell at the model input (``level``)."""
        return int(self.options["level"])

    @property
    def weights_hash(self) -> str:
        """Checksum ("algo:hexdigest") of the checkpoint in use, resolving (maybe downloading) it.

        Random weights report ``random-init:<variant>:seed=<seed>``.
        """
        if not self.options["pretrained"]:
            return f"random-init:{self.spec.variant}:seed={self.options['seed']}"
        return self._weights_file()[1]

    # -- model ---------------------------------------------------------------
    def load_model(self, device: str) -> Any:
        """The image encoder (trunk + FPN neck) with its weights, or random ones (seeded)."""
        import torch

        state = self._checkpoint_state() if self.options["pretrained"] else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.options["seed"])
            encoder = build_image_encoder(self._architecture)
        if state is not None:
            self._load_state(encoder, state)
        return encoder

    def _model_size(self) -> int:
        return int(self.options["input_size"] or self._image_size or INPUT_SIZE)

    def input_contract(self) -> InputContract:
        return InputContract(size=self._model_size(), resize="stretch", stride=int(self.options["level"]),
                             mean=PIXEL_MEAN, std=PIXEL_STD)

    def forward(self, model: Any, batch: Any) -> Any:
        return _pick_level(model(batch)["backbone_fpn"], batch.shape[-1], int(self.options["level"]))

    def embedding_meta(self) -> dict[str, Any]:
        return {"level": int(self.options["level"]), "input_size": self._model_size()}

    def signature(self) -> dict[str, Any]:
        sig = super().signature()
        if isinstance(self.options["config"], str):  # a file: what it says decides the features, not its name
            sig["options"]["config"] = {"model": {"image_size": self._image_size,
                                                  "image_encoder": self._architecture}}
        return sig

    def _weights_file(self) -> tuple[Path, str]:
        if self._weights is None:
            from vfm_features.models.weights import fetch_weights

            self._weights = fetch_weights(self.spec, self.options["weights"], progress=self.options["progress"])
        return self._weights

    def _checkpoint_state(self) -> dict:
        """The image-encoder part of the checkpoint, keys without the ``image_encoder.`` prefix."""
        from vfm_features.models import weights as W

        path = self._weights_file()[0]
        state = W.load_state_dict(path, trust_checkpoint=self.options["trust_checkpoint"])
        if isinstance(state.get("model"), Mapping):
            state = state["model"]
        encoder = {k[len(_ENCODER_PREFIX):]: v for k, v in state.items()
                   if isinstance(k, str) and k.startswith(_ENCODER_PREFIX)}
        if not encoder:
            sample = ", ".join(repr(k) for k in list(state)[:4]) or "none"
            raise WeightsError(
                f"Weights file {path} is not a SAM2 checkpoint: it has no '{_ENCODER_PREFIX}*' keys "
                f"(found {len(state)} keys such as {sample}). Pass a SAM2/SAM2.1 checkpoint, e.g. "
                f"{MODELS.get(self.spec.variant, next(iter(MODELS.values()))).url}.")
        return encoder

    def _load_state(self, encoder: Any, state: dict) -> None:
        path = self._weights_file()[0]
        sizes = ", ".join(f"sam2:{v}" for v in MODELS)
        load_strict(encoder, state, what=f"Weights file {path} does not fit the {self.spec.name} image encoder",
                    hint=f"It is probably a checkpoint of another size: pick the matching variant ({sizes}) "
                         "or pass its architecture with config=...")


# -- helpers -------------------------------------------------------------------
def _pick_level(fpn: Sequence[Any], input_size: int, stride: int) -> Any:
    for feat in fpn:
        if feat.shape[-1] * stride == input_size:
            return feat
    have = sorted(input_size // f.shape[-1] for f in fpn)
    raise InputError(f"level={stride} is not produced by this encoder; its FPN strides are {have}.")
