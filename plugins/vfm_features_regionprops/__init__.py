"""vfm-features plugin: per-object features from an instance mask with scikit-image regionprops.

Listing reads :data:`SPECS` only; :class:`RegionpropsExtractor` loads when built.
"""

from __future__ import annotations

from vfm_features import hookimpl

from .specs import SPECS

__all__ = ["RegionpropsExtractor", "SPECS", "vfm_features_extractors"]


@hookimpl
def vfm_features_extractors():
    return list(SPECS)


def __getattr__(name: str):
    if name == "RegionpropsExtractor":
        from .extractor import RegionpropsExtractor

        return RegionpropsExtractor
    raise AttributeError(f"module 'vfm_features_regionprops' has no attribute {name!r}")
