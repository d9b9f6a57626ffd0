"""Prediction block by block: the unit that tiling, Dask and adapters call, with no whole image in memory.

:func:`plan_blocks` cuts an image into blocks that overlap by a halo (the same
tile plan that :func:`vfm_features.features.tiling.embed_tiled` uses);
:func:`predict_block` predicts the core of one block from the block alone,
stateless; :func:`predict_blockwise` runs the plan over an image in memory. A
halo at least as large as the extractor's receptive field (its ``halo``) makes
the blocks equal the whole-image prediction for extractors without global context.
Blocks predict at full resolution (a classifier's ``working_shape`` applies to
whole-image prediction only).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vfm_features.errors import InputError
from vfm_features.features.source import embed_plane
from vfm_features.features.tiling import Tile, Tiling, plan_tiles
from vfm_features.preprocess import to_planes
from vfm_features.validation import check_is_fitted


def block_alignment(classifier: Any) -> int:
    """Pixels that block origins must be multiples of for this classifier's head (1 for pixel-wise heads)."""
    return int(getattr(classifier.head_, "block_alignment", 1)) if hasattr(classifier, "head_") else 1


def aligned_halo(classifier: Any, halo: int) -> int:
    """``halo`` rounded up to a multiple of the head's block alignment (more context never hurts)."""
    step = block_alignment(classifier)
    return -(-int(halo) // step) * step


def default_halo(classifier: Any) -> int:
    """The context a block needs: the extractor's (its own ``halo``, else the spec's) plus the head's ``context_px``.

    Rounded up to the head's block alignment, so that block origins stay on it.
    """
    extractor = classifier._components()[0]
    halo = getattr(extractor, "halo", None)
    halo = int(halo if isinstance(halo, (int, np.integer)) else extractor.spec.halo or 0)
    context = int(getattr(classifier.head_, "context_px", 0)) if hasattr(classifier, "head_") else 0
    return aligned_halo(classifier, halo + context)


def refuse_volumetric(extractor: Any) -> None:
    """Blocks are 2D: an extractor whose slice features depend on neighbouring slices (3D filters) cannot run here."""
    if getattr(extractor, "volumetric", False):
        raise InputError(f"Blockwise prediction is 2D, but {extractor.name!r} computes 3D features over whole "
                         "volumes (filters with ndim=3). Predict the volume in memory (classifier.predict(volume, "
                         "axes='ZYX')), or train with a 2D extractor (ndim=2) for blockwise prediction.")


def plan_blocks(image_shape: Sequence[int], block_shape: Any = 512, halo: Any = 0, alignment: int = 1) -> list[Tile]:
    """Blocks of ``block_shape`` pixels (with ``halo`` on every inner side) covering an image of ``image_shape``.

    Each :class:`~vfm_features.features.tiling.Tile` reads ``tile.slices`` of the
    image and is responsible for ``tile.core`` (image coordinates); block origins
    are multiples of ``alignment`` pixels.
    """
    return plan_tiles(tuple(int(s) for s in image_shape[:2]), Tiling(block_shape, halo), alignment, edge="shrink")


def predict_block(classifier: Any, block: Any, region: tuple[slice, slice] | None = None, *,
                  axes: str | None = None) -> np.ndarray:
    """Class probabilities (K, rows, cols) of ``region`` of ``block`` (2D, halo included), from the block alone.

    Stateless: the block is embedded on its own (through the classifier's
    embedding cache if it has one, never through its memory of the last image),
    so blocks can run in threads or processes in any order.
    """
    check_is_fitted(classifier, "head_")
    if classifier._kind != "pixel":
        raise InputError("predict_block predicts pixels; object classifiers classify whole objects.")
    planes, stack = to_planes(block, axes)
    if stack:
        raise InputError("predict_block takes one 2D block; loop over the planes of a stack.")
    plane = planes[0]
    classifier._check_signature()
    extractor, _ = classifier._components()
    refuse_volumetric(extractor)
    embedding = embed_plane(extractor, plane, classifier.cache)
    return classifier.predict_proba_plane(plane, region=region, grid=plane.shape[:2], embedding=embedding)


def predict_blockwise(classifier: Any, image: Any, *, block_shape: Any = 512, halo: Any = None,
                      axes: str | None = None) -> np.ndarray:
    """(K, H, W) probabilities of a 2D image, predicted block by block over :func:`plan_blocks`."""
    planes, stack = to_planes(image, axes)
    if stack:
        raise InputError("predict_blockwise takes one 2D image; loop over the planes of a stack.")
    plane = planes[0]
    check_is_fitted(classifier, "head_")
    refuse_volumetric(classifier._components()[0])
    halo = default_halo(classifier) if halo is None else aligned_halo(classifier, halo)
    out = np.empty((len(classifier.classes_),) + plane.shape[:2], np.float32)
    for tile in plan_blocks(plane.shape, block_shape, halo, block_alignment(classifier)):
        (y0, y1), (x0, x1) = tile.core
        oy, ox = tile.origin
        region = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
        out[:, y0:y1, x0:x1] = predict_block(classifier, plane[tile.slices], region, axes="YXC")
    return out
