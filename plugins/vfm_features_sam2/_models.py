"""The sam2 plugin's model table: one frozen record and one spec per checkpoint.

Nothing here imports torch, hydra or sam2, so listing stays cheap.

Sources (facebookresearch/sam2 at 2b90b9f, the code that the PyPI sdist
``sam2==1.1.0`` ships unchanged): checkpoint URLs from
``checkpoints/download_ckpts.sh`` and ``README.md`` (SAM 2.1 under ``092824/``,
SAM 2 under ``072824/``), parameter counts from the README's "Size (M)" column
(whole model, not the image encoder alone). The checkpoints are Apache-2.0
(README "License"); Meta publishes no checksum, so the weights module records the
sha256 on first use.

``ARCHITECTURES`` holds the ``model.image_encoder`` section of the package's
configs (``sam2/configs/sam2.1/*.yaml``; the ``sam2/*.yaml`` of the first release
give the same numbers) as plain data, in the layout that
:mod:`vfm_features_sam2._config` checks and builds (``_target_`` keys left out:
each section has one class). tests/test_sam2.py compares it with the YAML files.
"""

from __future__ import annotations

from dataclasses import dataclass

from vfm_features import ExtractorSpec

FACTORY = "vfm_features_sam2._extractor:Sam2Extractor"
OUT_CHANNELS = 256  # FPN neck width (d_model) of every released SAM2 / SAM2.1 config
INPUT_SIZE = 1024  # model.image_size of every released config
STRIDES = (4, 8, 16)  # FPN levels kept by the image encoder (scalp=1 drops stride 32)
DEFAULT_STRIDE = 16  # the level SAM2's mask decoder uses as its image embedding
PIXEL_MEAN = (0.485, 0.456, 0.406)  # sam2/utils/transforms.py, on 0..1 RGB
PIXEL_STD = (0.229, 0.224, 0.225)
NORMALIZATION = "intensities to 0..1, resized to 1024x1024 (aspect not kept), ImageNet mean/std"

_URL_21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
_URL_20 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824"


@dataclass(frozen=True)
class Sam2Model:
    """One released SAM2 checkpoint and the architecture of its image encoder."""

    variant: str  # our variant name, e.g. "hiera_b+"
    architecture: str  # key of ARCHITECTURES
    release: str  # "2.1" or "2.0"
    config: str  # the config in the sam2 package that ARCHITECTURES was read from (not read at run time)
    checkpoint: str  # published file name
    hf_id: str
    params_m: float  # whole SAM2 model, README "Size (M)"

    @property
    def url(self) -> str:
        return f"{_URL_21 if self.release == '2.1' else _URL_20}/{self.checkpoint}"


def _encoder(channels: list[int], **trunk) -> dict:
    """An image-encoder section: Hiera ``trunk`` arguments and the FPN neck shared by every release."""
    return {"scalp": 1, "trunk": trunk,
            "neck": {"position_encoding": {"num_pos_feats": 256, "normalize": True, "scale": None,
                                           "temperature": 10000},
                     "d_model": OUT_CHANNELS, "backbone_channel_list": channels, "fpn_top_down_levels": [2, 3],
                     "fpn_interp_model": "nearest"}}


# model.image_encoder of sam2/configs/sam2.1/sam2.1_hiera_<size>.yaml (identical in sam2/configs/sam2/)
ARCHITECTURES: dict[str, dict] = {
    "hiera_t": _encoder([768, 384, 192, 96], embed_dim=96, num_heads=1, stages=[1, 2, 7, 2],
                        global_att_blocks=[5, 7, 9], window_pos_embed_bkg_spatial_size=[7, 7]),
    "hiera_s": _encoder([768, 384, 192, 96], embed_dim=96, num_heads=1, stages=[1, 2, 11, 2],
                        global_att_blocks=[7, 10, 13], window_pos_embed_bkg_spatial_size=[7, 7]),
    "hiera_b+": _encoder([896, 448, 224, 112], embed_dim=112, num_heads=2),
    "hiera_l": _encoder([1152, 576, 288, 144], embed_dim=144, num_heads=2, stages=[2, 6, 36, 4],
                        global_att_blocks=[23, 33, 43], window_pos_embed_bkg_spatial_size=[7, 7],
                        window_spec=[8, 4, 16, 8]),
}

MODELS: dict[str, Sam2Model] = {m.variant: m for m in (
    Sam2Model("hiera_t", "hiera_t", "2.1", "configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt",
              "facebook/sam2.1-hiera-tiny", 38.9),
    Sam2Model("hiera_s", "hiera_s", "2.1", "configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt",
              "facebook/sam2.1-hiera-small", 46.0),
    Sam2Model("hiera_b+", "hiera_b+", "2.1", "configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt",
              "facebook/sam2.1-hiera-base-plus", 80.8),
    Sam2Model("hiera_l", "hiera_l", "2.1", "configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt",
              "facebook/sam2.1-hiera-large", 224.4),
    # The first release (July 2024); same image-encoder architecture, other weights.
    Sam2Model("hiera_t_v2.0", "hiera_t", "2.0", "configs/sam2/sam2_hiera_t.yaml", "sam2_hiera_tiny.pt",
              "facebook/sam2-hiera-tiny", 38.9),
    Sam2Model("hiera_s_v2.0", "hiera_s", "2.0", "configs/sam2/sam2_hiera_s.yaml", "sam2_hiera_small.pt",
              "facebook/sam2-hiera-small", 46.0),
    Sam2Model("hiera_b+_v2.0", "hiera_b+", "2.0", "configs/sam2/sam2_hiera_b+.yaml", "sam2_hiera_base_plus.pt",
              "facebook/sam2-hiera-base-plus", 80.8),
    Sam2Model("hiera_l_v2.0", "hiera_l", "2.0", "configs/sam2/sam2_hiera_l.yaml", "sam2_hiera_large.pt",
              "facebook/sam2-hiera-large", 224.4),
)}

# Rule shared with the dinov3 plugin: the largest variant that costs no more than
# sam:vit_b (the sam family's default) on a CPU, so that the families' defaults
# compare at equal cost. hiera_l ~ sam:vit_b; hiera_b+ ~0.4x (docs/models.md).
DEFAULT_VARIANT = "hiera_l"

_SIZE_WORDS = {"t": "tiny", "s": "small", "b+": "base+", "l": "large"}


def _spec(model: Sam2Model) -> ExtractorSpec:
    size = _SIZE_WORDS[model.variant.split("_")[1]]
    return ExtractorSpec(
        name=f"sam2:{model.variant}",
        factory=FACTORY,
        description=(f"SAM {model.release} Hiera-{size} image encoder: 256 features per 16 x 16 cell "
                     f"({model.params_m:g}M-parameter model)"),
        default=model.variant == DEFAULT_VARIANT,
        n_features=OUT_CHANNELS,  # 256 per channel with channels="per_channel"
        input_size=INPUT_SIZE,
        patch_size=DEFAULT_STRIDE,
        global_context=True,
        input_channels="rgb",
        normalization=NORMALIZATION,
        weights_url=model.url,
        weights_hash=None,  # none published
        weights_file=model.checkpoint,
        license="Apache-2.0",
        gated=False,
        requires=("torch", "sam2", "hydra"),  # the plugin never calls hydra, but sam2/__init__.py imports it
        install="vfm-features[sam2]",
        features_version="1",
        options={"channels": "sum", "level": DEFAULT_STRIDE},
    )


SPECS: tuple[ExtractorSpec, ...] = tuple(_spec(m) for m in MODELS.values())
