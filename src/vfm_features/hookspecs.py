"""pluggy hook specifications: the whole contract between vfm-features and its plugins.

A plugin is a module (or object) with functions marked ``@vfm_features.hookimpl``,
named after the hooks below, and exposed through the entry-point group
``vfm_features.plugins``::

    [project.entry-points."vfm_features.plugins"]
    myplugin = "my_package.vfm_plugin"

A plugin implements any of the three hooks. Each must be cheap: no model is
built and no heavy library is imported when it is called. The registry checks
every ``@hookimpl`` name against these specs (a misspelt hook is reported), and
calls each plugin on its own, so one broken plugin cannot hide the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

PROJECT_NAME = "vfm_features"
ENTRY_POINT_GROUP = "vfm_features.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

if TYPE_CHECKING:
    from .spec import ExtractorSpec, HeadSpec, UpsamplerSpec


@hookspec
def vfm_features_extractors() -> "list[ExtractorSpec]":
    """Return the :class:`~vfm_features.ExtractorSpec` of every extractor variant this plugin provides."""


@hookspec
def vfm_features_upsamplers() -> "list[UpsamplerSpec]":
    """Return the :class:`~vfm_features.UpsamplerSpec` of every upsampler this plugin provides."""


@hookspec
def vfm_features_heads() -> "list[HeadSpec]":
    """Return the :class:`~vfm_features.HeadSpec` of every pixel or object head this plugin provides."""


HOOKS = {"extractor": "vfm_features_extractors", "upsampler": "vfm_features_upsamplers",
         "head": "vfm_features_heads"}
