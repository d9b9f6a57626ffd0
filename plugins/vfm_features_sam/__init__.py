"""vfm-features plugin: Segment Anything image encoders (SAM, µSAM, PathoSAM).

Families: ``sam`` (vit_b default, vit_l, vit_h), ``musam`` (vit_b_lm default,
vit_l_lm, vit_b_em_organelles, vit_l_em_organelles) and ``pathosam``
(vit_b_histopathology default, vit_l_histopathology, vit_h_histopathology).
Each gives 256 features per 16x16 patch of the image resized to 1024 pixels on
its longest side. Importing this package does not import torch.
"""

from vfm_features import hookimpl

from ._models import ARCHITECTURES, SPECS, SamArchitecture

__all__ = ["ARCHITECTURES", "SPECS", "SamArchitecture", "vfm_features_extractors"]


@hookimpl
def vfm_features_extractors():
    return list(SPECS)
