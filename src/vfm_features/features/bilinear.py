"""The ``bilinear`` upsampler: parameter-free interpolation of the embedding grid, for any extractor.

Registered through the entry point ``vfm_features.plugins: bilinear``, like a
third-party upsampler would be.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm_features.geometry import Embedding
from vfm_features.hookspecs import hookimpl
from vfm_features.spec import UpsamplerSpec

from .upsample import Upsampler, bilinear_dense, bilinear_sparse


class BilinearUpsampler(Upsampler):
    """Bilinear interpolation between embedding cell centres (clamped at the borders); ignores the image."""

    def __init__(self, spec: Any = None, **options: Any) -> None:
        if options:
            raise TypeError(f"got an unexpected keyword argument {next(iter(options))!r}")
        super().__init__(spec if spec is not None else SPEC)

    def dense(self, embedding: Embedding, image: np.ndarray | None = None, out_shape=None, region=None) -> np.ndarray:
        return bilinear_dense(embedding, out_shape, region)

    def sparse(self, embedding: Embedding, image: np.ndarray | None, coords: np.ndarray) -> np.ndarray:
        return bilinear_sparse(embedding, coords)


SPEC = UpsamplerSpec("bilinear", factory=BilinearUpsampler, features_version="1", distribution="vfm-features",
                     description="bilinear interpolation of the embedding grid (no parameters)")


@hookimpl
def vfm_features_upsamplers():
    return [SPEC]
