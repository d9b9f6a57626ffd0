"""The ``rf`` and ``rf-reference`` heads as a plugin: specs only, so listing imports no scikit-learn.

Registered through the entry point ``vfm_features.plugins: forest``, like a
third-party head would be; the heads themselves are in :mod:`.forest_heads`.
"""

from __future__ import annotations

from vfm_features.hookspecs import hookimpl
from vfm_features.spec import HeadSpec

_PIXEL = "vfm_features.heads.forest_heads:ForestPixelHead"
_OBJECT = "vfm_features.heads.forest_heads:ForestObjectHead"
_REFERENCE = {"n_estimators": 200, "max_depth": 10, "max_samples": None, "fast": False}
SPECS = (
    HeadSpec("rf", factory=_PIXEL, kind="pixel", features_version="1",
             description="random forest, 64 trees of depth 10, at most 4096 labels per tree, all cores, fast "
                         "exact predictor (default)"),
    HeadSpec("rf", factory=_OBJECT, kind="object", features_version="1",
             description="random forest, 200 trees to pure leaves on all cores, fast exact predictor (default)"),
    HeadSpec("rf-reference", factory=_PIXEL, kind="pixel", features_version="1", options=_REFERENCE,
             description="the seed's forest: 200 trees of depth 10, scikit-learn's own predict"),
    HeadSpec("rf-reference", factory=_OBJECT, kind="object", features_version="1", options=_REFERENCE,
             description="the seed's forest: 200 trees of depth 10, scikit-learn's own predict"),
)


@hookimpl
def vfm_features_heads():
    return list(SPECS)
