"""The blockwise plan of scale-out prediction: a regular grid of cores, each read with a halo.

Cores tile the image on a regular grid of ``block_shape`` (so each core is one
chunk of the output store); a block reads its core plus ``halo`` pixels on every
side, clipped at the image border, where the extractor applies its own border
rule as it does for the whole image: a local extractor with a large enough halo
gives exactly its whole-image features in every core. With ``pad=True`` (models
with a fixed input size, which resize what they get) every block is instead
mirror-padded to one common shape ``block_shape + 2 * halo``, so every block is
seen at the same scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from vfm_features.errors import InputError
from vfm_features.validation import check_int


@dataclass(frozen=True)
class Block:
    """One block: the ``core`` it is responsible for, what it ``read``s, and the padding to the block shape."""

    index: int
    core: tuple[tuple[int, int], tuple[int, int]]  # ((y0, y1), (x0, x1)) in image pixels
    read: tuple[tuple[int, int], tuple[int, int]]
    pad: tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right)) mirror padding

    @property
    def region(self) -> tuple[slice, slice]:
        """Where the core lies inside the padded block."""
        (cy0, cy1), (cx0, cx1) = self.core
        (ry0, _), (rx0, _) = self.read
        top, left = self.pad[0][0], self.pad[1][0]
        return slice(top + cy0 - ry0, top + cy1 - ry0), slice(left + cx0 - rx0, left + cx1 - rx0)

    @property
    def core_slices(self) -> tuple[slice, slice]:
        return slice(*self.core[0]), slice(*self.core[1])


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2:
        raise InputError(f"{name}={value!r}; expected an int or a pair (y, x).")
    return check_int(pair[0], name, low=0 if name == "halo" else 1), check_int(pair[1], name,
                                                                              low=0 if name == "halo" else 1)


def plan_grid(image_shape: Sequence[int], block_shape: Any = 1024, halo: Any = 0, *,
              pad: bool = False) -> list[Block]:
    """Blocks covering an image of ``image_shape`` (Y, X) with cores on a regular ``block_shape`` grid."""
    H, W = (int(s) for s in image_shape[:2])
    by, bx = _pair(block_shape, "block_shape")
    hy, hx = _pair(halo, "halo")
    blocks = []
    for y0 in range(0, H, by):
        for x0 in range(0, W, bx):
            core = ((y0, min(H, y0 + by)), (x0, min(W, x0 + bx)))
            read, widths = [], []
            for (c0, c1), size, h, n in ((core[0], by, hy, H), (core[1], bx, hx, W)):
                r0, r1 = max(0, c0 - h), min(n, c0 + size + h)
                read.append((r0, r1))
                widths.append((h - (c0 - r0), (c0 + size + h) - r1) if pad else (0, 0))
            blocks.append(Block(len(blocks), core, tuple(read), tuple(widths)))  # type: ignore[arg-type]
    return blocks


def pad_block(data: np.ndarray, block: Block) -> np.ndarray:
    """Mirror-pad a block's read (y, x[, C]) to the common block shape."""
    (top, bottom), (left, right) = block.pad
    if not (top or bottom or left or right):
        return data
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (data.ndim - 2)
    return np.pad(data, widths, mode="reflect" if min(data.shape[:2]) > 1 else "edge")


def read_block(image: Any, block: Block) -> np.ndarray:
    """The padded block of a :class:`~vfm_features.scale.sources.LazyImage` (or an in-memory (Y, X[, C]) array)."""
    (y0, y1), (x0, x1) = block.read
    if hasattr(image, "read"):
        data = image.read(slice(y0, y1), slice(x0, x1))
    else:
        data = np.asarray(image[y0:y1, x0:x1])
    return pad_block(data, block)
