"""The SAM image-encoder extractor: input contract, lazy model loading and weights.

torch and segment_anything are imported on first use (``load()`` or the first
``embed``), never at import of this module. Preprocessing (intensities, channel
rule, resizing the longest side to 1024, mean/std, padding) and the geometry are
the core's, from :meth:`SamExtractor.input_contract`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from vfm_features import InputError
from vfm_features.models.base import ModelExtractor
from vfm_features.models.contract import InputContract
from vfm_features.models.weights import fetch_weights, load_state_dict

from ._checkpoint import check_architecture, encoder_state
from ._models import ARCHITECTURES, PIXEL_MEAN, PIXEL_STD, TINY_ARCHITECTURES, SamArchitecture, TinyVitArchitecture

log = logging.getLogger(__name__)


def _architecture(value: Any) -> SamArchitecture | TinyVitArchitecture:
    if isinstance(value, (SamArchitecture, TinyVitArchitecture)):
        return value
    if isinstance(value, str) and value in ARCHITECTURES:
        return ARCHITECTURES[value]
    if isinstance(value, str) and value in TINY_ARCHITECTURES:
        return TINY_ARCHITECTURES[value]
    if isinstance(value, Mapping):
        if value.get("kind") == "tiny_vit":
            return TinyVitArchitecture.from_dict(value)
        return SamArchitecture.from_dict(value)
    known = sorted({**ARCHITECTURES, **TINY_ARCHITECTURES})
    raise InputError(f"architecture={value!r} is unknown; use one of {known}, a vfm_features_sam.SamArchitecture "
                     "or TinyVitArchitecture, or its as_dict().")


def _plain_architecture(arch: SamArchitecture | TinyVitArchitecture) -> str | dict:
    """How options hold an architecture: the name of an official one, else its fields as plain data."""
    official = {**ARCHITECTURES, **TINY_ARCHITECTURES}
    return arch.name if official.get(arch.name) == arch else arch.as_dict()


class SamExtractor(ModelExtractor):
    """256 features per 16x16-pixel patch from a SAM image encoder (SAM, µSAM, PathoSAM).

    Takes the options of :class:`vfm_features.ModelExtractor` (weights in SAM or
    micro-sam layout, device, precision, channels, ...); intensities are scaled to
    0..1 and then to 0..255 as SAM expects. ``architecture`` is set by the
    variant; a :class:`SamArchitecture` (or its ``as_dict()``) builds a custom
    encoder (tests). Options keep it as plain data, so that classifiers save it.
    """

    def __init__(self, spec: Any, *, architecture: str | SamArchitecture | Mapping = "vit_b",
                 **options: Any) -> None:
        super().__init__(spec, architecture=_plain_architecture(_architecture(architecture)), **options)
        self._weights: tuple[Any, str] | None = None  # (path, verified hash)
        self._layout: str | None = None

    # -- description ---------------------------------------------------------
    @property
    def architecture(self) -> SamArchitecture | TinyVitArchitecture:
        return _architecture(self.options["architecture"])

    @property
    def features_per_image(self) -> int:
        return self.architecture.out_chans

    def input_contract(self) -> InputContract:
        arch = self.architecture
        return InputContract(size=arch.img_size, resize="longest", stride=arch.patch_size, mean=PIXEL_MEAN,
                             std=PIXEL_STD, value_range=255.0)

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

    def embedding_meta(self) -> dict[str, Any]:
        return {"layout": self._layout}

    # -- loading ---------------------------------------------------------------
    def _resolve(self) -> tuple[Any, str]:
        if self._weights is None:
            self._weights = fetch_weights(self.spec, self.options["weights"], progress=self.options["progress"])
        return self._weights

    def load_model(self, device: str) -> Any:
        """The image encoder with its weights (or random ones, seeded)."""
        import torch

        arch = self.architecture
        if isinstance(arch, TinyVitArchitecture):
            return self._load_tiny(arch)
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
        return encoder

    def _load_tiny(self, arch: TinyVitArchitecture) -> Any:
        """MobileSAM's TinyViT, built on the CPU (its attention-bias index buffers are not in checkpoints)."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.options["seed"]))
            encoder = _build_tiny_encoder(arch)
        if not self.options["pretrained"]:
            self._layout = "random initialisation"
            return encoder
        path, digest = self._resolve()
        encoder_sd, layout = encoder_state(load_state_dict(path, trust_checkpoint=self.options["trust_checkpoint"]),
                                           path)
        try:
            encoder.load_state_dict(encoder_sd, strict=True)
        except RuntimeError as exc:
            from vfm_features import WeightsError

            raise WeightsError(f"{path} does not fit the TinyViT image encoder of {self.name} ({arch.name}): "
                               f"{str(exc).splitlines()[0]} {_key_diff(encoder, encoder_sd)}. Pass µSAM vit_t "
                               "weights (musam:vit_t_lm, musam:vit_t_em_organelles).") from None
        self._layout = layout
        log.info("%s: loaded image encoder from %s (%s, %s).", self.name, path, layout, digest)
        return encoder.float()


def _build_tiny_encoder(arch: TinyVitArchitecture) -> Any:
    """MobileSAM's TinyViT with the hyper-parameters of ``arch`` (as in mobile_sam's build_sam_vit_t)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm's deprecation notes and registry overwrites on import
        from mobile_sam.modeling.tiny_vit_sam import TinyViT

    return TinyViT(img_size=arch.img_size, in_chans=3, num_classes=1000, embed_dims=list(arch.embed_dims),
                   depths=list(arch.depths), num_heads=list(arch.num_heads), window_sizes=list(arch.window_sizes),
                   mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False, mbconv_expand_ratio=4.0,
                   local_conv_size=3, layer_lr_decay=0.8)


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
