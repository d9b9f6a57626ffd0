"""vfm-features plugin: DINOv3 vision transformers (through transformers' ``DINOv3ViTModel``).

Variants ``dinov3:vits16``, ``vits16plus``, ``vitb16`` (default), ``vitl16``,
``vith16plus``, ``vit7b16`` (web images, LVD-1689M) and ``vitl16_sat``,
``vit7b16_sat`` (satellite images, SAT-493M). Each gives its width (384 … 4096)
in features per 16 x 16 patch of the image resized to 1024 x 1024. The weights are
gated: see ``Dinov3Extractor`` for the ways to supply them. Needs
``pip install 'vfm-features[dinov3]'``; importing this package imports neither
torch nor transformers.
"""

from vfm_features import hookimpl

from ._models import ARCHITECTURES, DEFAULT_VARIANT, MODELS, SPECS, Dinov3Model

__all__ = ["ARCHITECTURES", "DEFAULT_VARIANT", "MODELS", "SPECS", "Dinov3Model", "vfm_features_extractors"]


@hookimpl
def vfm_features_extractors():
    return list(SPECS)
