"""vfm-features plugin: dinov3 (placeholder, filled in by its issue)."""

from vfm_features import hookimpl


@hookimpl
def vfm_features_extractors():
    return []
