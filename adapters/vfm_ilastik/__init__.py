"""ilastik adapter: VFM object features for Object Classification, VFM feature channels for Pixel Classification.

* :class:`VFMObjectFeatures` is the object feature plugin (ilastik loads it as
  :class:`vfm_ilastik.ilastik_plugin.VFMObjectFeaturesPlugin`, through either of its plugin
  mechanisms; see docs/adapters-ilastik.md).
* :func:`write_ilastik_features` writes an image and its features as the channels of an
  HDF5 dataset that ilastik opens as raw data.

Uses only the public API of vfm-features; imports no ilastik here.
"""

from vfm_ilastik.object_features import (
    AREA,
    PLUGIN_NAME,
    STATS,
    VFMObjectFeatures,
    default_features,
    feature_name,
    offered_extractors,
)
from vfm_ilastik.pixel_features import axistags_json, write_ilastik_features

__all__ = ["AREA", "PLUGIN_NAME", "STATS", "VFMObjectFeatures", "axistags_json", "default_features", "feature_name",
           "offered_extractors", "write_ilastik_features"]
