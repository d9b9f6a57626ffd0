"""vfm-features plugin: Segment Anything image encoders (SAM, µSAM, PathoSAM).

Families: ``sam`` (vit_b default, vit_l, vit_h), ``musam`` (vit_b_lm default,
vit_l_lm, vit_b_em_organelles, vit_l_em_organelles, and the TinyViT models
vit_t_lm and vit_t_em_organelles, extra ``musam-tiny``) and ``pathosam``
(vit_b_histopathology default, vit_l_histopathology, vit_h_histopathology).
Each gives 256 features per 16x16 patch of the image resized to 1024 pixels on
its longest side. Importing this package does not import torch.
"""

from vfm_features import hookimpl

from ._models import ARCHITECTURES, SPECS, TINY_ARCHITECTURES, TINY_SPECS, SamArchitecture, TinyVitArchitecture

__all__ = ["ARCHITECTURES", "SPECS", "SamArchitecture", "TINY_ARCHITECTURES", "TINY_SPECS", "TinyVitArchitecture",
           "vfm_features_extractors"]


@hookimpl
def vfm_features_extractors():
    return [*SPECS, *TINY_SPECS]
