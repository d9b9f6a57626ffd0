"""The class ilastik loads: :class:`VFMObjectFeatures` on ilastik's own ``ObjectFeaturesPlugin`` base.

Imported only by ilastik, from either plugin mechanism:

* ilastik's main branch loads classes from the entry-point group
  ``ilastik.objectfeature_plugins`` and checks ``issubclass(cls, ObjectFeaturesPlugin)``
  and ``cls.plugin_info.name``;
* released ilastik 1.4.x (yapsy) imports the module named in
  ``yapsy_plugin/vfm_features.yapsy-plugin`` and instantiates the subclass of
  ``ObjectFeaturesPlugin`` it finds there.
"""

from __future__ import annotations

import vfm_features as vf

from vfm_ilastik.object_features import PLUGIN_NAME, VFMObjectFeatures

try:
    from ilastik.plugins.types import ObjectFeaturesPlugin
except ImportError:  # ilastik 1.4.0 kept the plugin types in one module, ilastik/plugins.py
    from ilastik.plugins import ObjectFeaturesPlugin

try:  # ilastik's main branch names plugins with a PluginInfo; 1.4.x reads the .yapsy-plugin file instead
    from ilastik.plugins.types import PluginInfo
except ImportError:
    PluginInfo = None

__all__ = ["VFMObjectFeaturesPlugin"]


class VFMObjectFeaturesPlugin(VFMObjectFeatures, ObjectFeaturesPlugin):
    """Per-object features (mean embedding, area, ...) from any registered vfm-features extractor."""


if PluginInfo is not None:
    VFMObjectFeaturesPlugin.plugin_info = PluginInfo(
        name=PLUGIN_NAME, author="vfm-features", version=vf.__version__,
        description="Per-object features from vision foundation models and the filter bank (vfm-features).")
