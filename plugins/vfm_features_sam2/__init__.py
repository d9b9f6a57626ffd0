"""vfm-features plugin: SAM 2 / SAM 2.1 image encoders (Hiera trunk + FPN neck).

Variants ``sam2:hiera_t``, ``hiera_s``, ``hiera_b+`` and ``hiera_l`` (default) are
SAM 2.1; ``…_v2.0`` are the first SAM 2 release. Each gives 256 features per
16 x 16 cell of the image resized to 1024 x 1024 (option ``level`` for the stride-8
and stride-4 levels). Needs ``pip install 'vfm-features[sam2]'``; importing this
package imports neither torch nor sam2. Encoders are built from plain data (the
released architectures, or a checked ``config``); hydra is never called.
"""

from vfm_features import hookimpl

from ._models import ARCHITECTURES, DEFAULT_VARIANT, MODELS, SPECS, Sam2Model

__all__ = ["ARCHITECTURES", "DEFAULT_VARIANT", "MODELS", "SPECS", "Sam2Model", "vfm_features_extractors"]


@hookimpl
def vfm_features_extractors():
    return list(SPECS)
