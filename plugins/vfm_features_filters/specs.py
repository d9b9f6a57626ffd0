"""The filters plugin's variant table (one place for names, defaults and licence)."""

from __future__ import annotations

from vfm_features import ExtractorSpec

from .features import DEFAULT_FEATURES, DEFAULT_SIGMAS, halo_for

SPECS = (
    ExtractorSpec(
        name="filters:default",
        factory="vfm_features_filters.extractor:FilterExtractor",
        kind="pixel",
        description=("ilastik-style filter bank per channel: Gaussian, LoG, gradient magnitude, DoG, "
                     "structure-tensor and Hessian eigenvalues at sigma 0.5, 1, 2, 4; ndim=3: 3D filters "
                     "of volumes."),
        default=True,
        n_features=None,  # 32 per input channel with the defaults
        patch_size=1,
        halo=halo_for(DEFAULT_FEATURES, DEFAULT_SIGMAS),
        global_context=False,
        input_channels="any",
        normalization="none",
        license="MIT",
        features_version="2",  # 2: ilastik's windows and second-derivative kernel (docs/filters.md)
        # ndim=3: true 3D filters over ZYX volumes with voxel size ``spacing`` (z, y, x); docs/filters.md
        options={"sigmas": DEFAULT_SIGMAS, "features": DEFAULT_FEATURES, "normalization": "none", "ndim": 2,
                 "spacing": (1.0, 1.0, 1.0)},
    ),
)
