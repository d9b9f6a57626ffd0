"""pluggy hook specifications: the whole contract between vfm-features and its plugins.

A plugin is a module (or object) with functions marked ``@vfm_features.hookimpl``,
exposed through the entry-point group ``vfm_features.extractors``::

    [project.entry-points."vfm_features.extractors"]
    myplugin = "my_package.vfm_plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

PROJECT_NAME = "vfm_features"
ENTRY_POINT_GROUP = "vfm_features.extractors"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

if TYPE_CHECKING:
    from vfm_features.spec import ExtractorSpec


@hookspec
def vfm_features_extractors() -> "list[ExtractorSpec]":
    """Return the :class:`~vfm_features.ExtractorSpec` of every variant this plugin provides.

    Must be cheap: no model is built and no heavy library is imported here.
    """
