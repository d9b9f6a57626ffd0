"""Module that ilastik 1.4.x's yapsy loads by file path: it exposes the plugin class and nothing else."""

from vfm_ilastik.ilastik_plugin import VFMObjectFeaturesPlugin  # noqa: F401 - yapsy finds it in this namespace
