"""vfm-features plugin: ilastik-style filter features (Gaussian derivatives per channel).

Listing reads :data:`SPECS` only; :class:`FilterExtractor` (scipy) loads when built.
"""

from __future__ import annotations

from vfm_features import hookimpl

from .specs import SPECS

__all__ = ["FilterExtractor", "SPECS", "vfm_features_extractors"]


@hookimpl
def vfm_features_extractors():
    return list(SPECS)


def __getattr__(name: str):
    if name == "FilterExtractor":
        from .extractor import FilterExtractor

        return FilterExtractor
    raise AttributeError(f"module 'vfm_features_filters' has no attribute {name!r}")
