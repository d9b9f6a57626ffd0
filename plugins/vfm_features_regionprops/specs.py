"""The regionprops plugin's variant table."""

from __future__ import annotations

from vfm_features import ExtractorSpec

SPECS = (
    ExtractorSpec(
        name="regionprops:default",
        factory="vfm_features_regionprops.extractor:RegionpropsExtractor",
        kind="object",
        description=("Per-object shape and intensity features (area, intensity mean/max/min, perimeter, "
                     "eccentricity, solidity, extent, axis lengths, orientation, centroid) via scikit-image; "
                     "3D objects of a volume get volume, intensities, extent, axis lengths, equivalent "
                     "diameter and centroid."),
        default=True,
        input_channels="any",
        license="MIT",
        features_version="1",
        options={"channels": "sum"},
    ),
)
