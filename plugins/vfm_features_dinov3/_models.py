"""The dinov3 plugin's model table: architectures and one frozen spec per released ViT.

Nothing here imports torch or transformers, so listing stays cheap.

Sources: facebookresearch/dinov3 at 6876159 (``dinov3/hub/backbones.py`` for the
architectures and file names, ``README.md`` for parameter counts, datasets and the
SAT-493M normalisation, ``LICENSE.md``); huggingface/transformers
``models/dinov3_vit`` (configuration defaults, and ``convert_dinov3_vit_to_hf.py``
at 0882cbfd for the hub ids and the original -> transformers mapping).

``ARCHITECTURES`` translates the original hyper-parameters into
``DINOv3ViTConfig`` arguments. The released ``config.json`` files are gated and
were not read; the table was checked against the original code instead (state
dict names and shapes of every variant, and equal outputs of small models with
the same FFN kinds; see tests/test_dinov3.py). Unverified: whether the hub's
config.json spells the gated FFN activation ``"silu"`` (the original uses SiLU) and
which ``layerscale_value`` it stores (only random initialisation depends on it).
"""

from __future__ import annotations

from dataclasses import dataclass

from vfm_features import ExtractorSpec

FACTORY = "vfm_features_dinov3._extractor:Dinov3Extractor"
PATCH_SIZE = 16
DEFAULT_INPUT_SIZE = 1024  # 64 x 64 cells: the grid of the sam/sam2 extractors
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAT_MEAN = (0.430, 0.411, 0.296)  # README "Image transforms", SAT-493M weights
SAT_STD = (0.213, 0.156, 0.143)
ACCESS_URL = "https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/"
LICENSE = "DINOv3 License"

# Shared by every ViT in backbones.py: patch 16, 4 storage (= register) tokens,
# RoPE base 100, LayerNorm eps 1e-5 ("layernormbf16"), the key bias masked to zero
# (mask_k_bias=True -> no key bias), output projection and FFN with biases, layer
# scale initialised to 1e-5 (transformers' conversion uses 1.0; only random init
# depends on it). pos_embed_rescale=2 only acts in training mode.
_COMMON = dict(
    patch_size=PATCH_SIZE, num_register_tokens=4, rope_theta=100.0, layer_norm_eps=1e-5,
    query_bias=True, key_bias=False, value_bias=True, proj_bias=True, mlp_bias=True,
    layerscale_value=1e-5, pos_embed_rescale=2.0, image_size=224, num_channels=3,
)


def _arch(hidden: int, layers: int, heads: int, ffn_ratio: float, ffn: str, **extra) -> dict:
    """DINOv3ViTConfig arguments from the original (embed_dim, depth, num_heads, ffn_ratio, ffn_layer)."""
    hidden_ffn = int(hidden * ffn_ratio)
    if ffn == "mlp":
        intermediate, act, gated = hidden_ffn, "gelu", False
    else:  # SwiGLUFFN: 2/3 of the hidden width, rounded up to a multiple of align_to
        align = {"swiglu": 8, "swiglu64": 64}[ffn]
        d = int(hidden_ffn * 2 / 3)
        intermediate, act, gated = d + (-d % align), "silu", True
    return {**_COMMON, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "intermediate_size": intermediate, "hidden_act": act, "use_gated_mlp": gated, **extra}


ARCHITECTURES: dict[str, dict] = {
    "vits16": _arch(384, 12, 6, 4, "mlp"),  # intermediate 1536
    "vits16plus": _arch(384, 12, 6, 6, "swiglu"),  # 1536
    "vitb16": _arch(768, 12, 12, 4, "mlp"),  # 3072
    "vitl16": _arch(1024, 24, 16, 4, "mlp"),  # 4096
    "vith16plus": _arch(1280, 32, 20, 6, "swiglu"),  # 5120
    "vit7b16": _arch(4096, 40, 32, 3, "swiglu64", query_bias=False, value_bias=False),  # 8192
}


@dataclass(frozen=True)
class Dinov3Model:
    """One released DINOv3 ViT: where its weights live and how to feed it."""

    variant: str  # our variant name, e.g. "vits16"
    label: str  # e.g. "ViT-S/16"
    architecture: str  # key of ARCHITECTURES
    hf_id: str  # gated Hugging Face repository (transformers format)
    checkpoint: str  # Meta's original file name (torch.hub format)
    params_m: float  # README
    dataset: str = "LVD-1689M"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def hidden_size(self) -> int:
        return ARCHITECTURES[self.architecture]["hidden_size"]

    @property
    def hub_url(self) -> str:
        return f"https://huggingface.co/{self.hf_id}"


def _lvd(variant: str, label: str, sha: str, params: float) -> Dinov3Model:
    return Dinov3Model(variant, label, variant, f"facebook/dinov3-{variant}-pretrain-lvd1689m",
                       f"dinov3_{variant}_pretrain_lvd1689m-{sha}.pth", params)


MODELS: dict[str, Dinov3Model] = {m.variant: m for m in (
    _lvd("vits16", "ViT-S/16", "08c60483", 21),
    _lvd("vits16plus", "ViT-S+/16", "4057cbaa", 29),
    _lvd("vitb16", "ViT-B/16", "73cec8be", 86),
    _lvd("vitl16", "ViT-L/16", "8aa4cbdd", 300),
    _lvd("vith16plus", "ViT-H+/16", "7c1da9a5", 840),
    _lvd("vit7b16", "ViT-7B/16", "a955f4ea", 6716),
    Dinov3Model("vitl16_sat", "ViT-L/16 SAT", "vitl16", "facebook/dinov3-vitl16-pretrain-sat493m",
                "dinov3_vitl16_pretrain_sat493m-eadcf0ff.pth", 300, "SAT-493M", SAT_MEAN, SAT_STD),
    Dinov3Model("vit7b16_sat", "ViT-7B/16 SAT", "vit7b16", "facebook/dinov3-vit7b16-pretrain-sat493m",
                "dinov3_vit7b16_pretrain_sat493m-a6675841.pth", 6716, "SAT-493M", SAT_MEAN, SAT_STD),
)}

# Rule shared with the sam2 plugin: the largest variant that costs no more than
# sam:vit_b (the sam family's default) on a CPU: vitb16 ~0.7x, vitl16 ~2x of it
# (docs/models.md has the timings). vits16 is the fast choice (~2.7x faster than vitb16).
DEFAULT_VARIANT = "vitb16"


def _spec(model: Dinov3Model) -> ExtractorSpec:
    mean = "SAT-493M mean/std" if model.dataset == "SAT-493M" else "ImageNet mean/std"
    return ExtractorSpec(
        name=f"dinov3:{model.variant}",
        factory=FACTORY,
        description=(f"DINOv3 {model.label} ({model.dataset}, {model.params_m:g}M parameters): "
                     f"{model.hidden_size} features per 16 x 16 patch"),
        default=model.variant == DEFAULT_VARIANT,
        n_features=model.hidden_size,  # per channel with channels="per_channel"
        input_size=DEFAULT_INPUT_SIZE,
        patch_size=PATCH_SIZE,
        global_context=True,
        input_channels="rgb",
        normalization=f"intensities to 0..1, resized to 1024x1024 (option input_size), {mean}",
        weights_url=model.hub_url,
        weights_hash=None,  # none published
        weights_file=model.checkpoint,
        license=LICENSE,
        gated=True,
        requires=("torch", "transformers"),
        install="vfm-features[dinov3]",
        features_version="1",
        options={"channels": "sum", "input_size": DEFAULT_INPUT_SIZE},
    )


SPECS: tuple[ExtractorSpec, ...] = tuple(_spec(m) for m in MODELS.values())
