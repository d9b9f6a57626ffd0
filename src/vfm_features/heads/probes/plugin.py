"""The probe heads as a plugin: specs only, so listing imports neither torch nor the heads.

Registered through the entry point ``vfm_features.plugins: probes``, like a
third-party plugin. ``deap`` (pixels), ``obap`` (objects) and ``hybrid`` (both:
the forest answers at once, a probe trains in the background and takes over
when its validation macro-F1 is higher).
"""

from __future__ import annotations

from vfm_features.hookspecs import hookimpl
from vfm_features.spec import HeadSpec

_TORCH = {"requires": ("torch",), "install": "vfm-features[torch]", "features_version": "1"}
SPECS = (
    HeadSpec("deap", factory="vfm_features.heads.probes.deap:DeapPixelHead", kind="pixel", **_TORCH,
             description="dense attentive probe: 1/8 query grid, Gaussian cross-attention, conv decoder (torch)"),
    HeadSpec("obap", factory="vfm_features.heads.probes.obap:ObapObjectHead", kind="object", **_TORCH,
             description="object attentive probe: one query per object centroid, Gaussian cross-attention (torch)"),
    HeadSpec("hybrid", factory="vfm_features.heads.probes.hybrid:HybridPixelHead", kind="pixel", **_TORCH,
             description="forest at once; a deap probe trains in the background and takes over when better"),
    HeadSpec("hybrid", factory="vfm_features.heads.probes.hybrid:HybridObjectHead", kind="object", **_TORCH,
             description="forest at once; an obap probe trains in the background and takes over when better"),
)


@hookimpl
def vfm_features_heads():
    return list(SPECS)
