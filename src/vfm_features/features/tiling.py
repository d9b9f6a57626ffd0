"""Tiling large images with overlap and stitching the tiles in embedding space.

A model with a fixed input size (SAM: 1024 px) sees a 4096 x 4096 image either
shrunk four-fold, losing the fine scale, or in tiles at its native scale. This
module does the latter: it cuts the image into tiles that overlap by a halo,
embeds each tile with the extractor, and writes the *core* of every tile's
embedding (the tile minus its halo, except at image borders) into one
(C, h, w) array that spans the whole image.

Two rules make the stitched grid exact, without any resampling:

* every tile has the same shape (only a last tile may be shorter, or padded,
  see :func:`plan_tiles`), so a model that resizes its input resizes every tile
  by the same factor and all tile embeddings share one ``step``;
* tile origins and core boundaries are multiples of the *cell*: the smallest
  whole number of pixels that is a whole number of embedding cells. Cell ``i``
  of a tile at origin ``o`` is then cell ``o / step + i`` of the image.

Tiling changes nothing for an extractor whose receptive field is smaller than
the halo; an extractor with global context (attention over the whole input,
per-image normalisation) gives different features in every tile. See
``docs/tiling-and-cache.md`` for numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Literal, Sequence

import numpy as np

from vfm_features.errors import InputError, PluginValidationError
from vfm_features.geometry import Embedding, EmbeddingGeometry

Progress = Callable[[int, int], Any]
EdgeMode = Literal["shrink", "pad"]


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 \
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise InputError(f"{what} must be an int or a pair of ints (y, x); got {value!r}.")
    return pair


@dataclass(frozen=True)
class Tiling:
    """How to cut an image into tiles: ``tile_shape`` (y, x) pixels, overlapping by ``halo`` pixels.

    ``halo`` is the context a tile needs on each side of the part of it that is
    kept; it should cover the receptive field of the extractor (the spec's
    ``halo``). Ints are expanded to (y, x) pairs.
    """

    tile_shape: tuple[int, int]
    halo: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        tile = _pair(self.tile_shape, "tile_shape")
        halo = _pair(self.halo, "halo")
        if min(tile) < 1:
            raise InputError(f"tile_shape must be positive; got {tile}.")
        if min(halo) < 0:
            raise InputError(f"halo must be >= 0; got {halo}.")
        object.__setattr__(self, "tile_shape", tile)
        object.__setattr__(self, "halo", halo)

    def as_dict(self) -> dict[str, list[int]]:
        """Plain data, for signatures and cache keys."""
        return {"tile_shape": list(self.tile_shape), "halo": list(self.halo)}


@dataclass(frozen=True)
class Tile:
    """One tile of a plan, in image pixel coordinates (y, x).

    The tile reads ``origin`` to ``origin + shape``; where that reaches past the
    image (``pad``), the image is extended by mirroring. Its embedding is kept for
    ``core`` = ((y0, y1), (x0, x1)), the pixels this tile is responsible for.
    """

    index: int
    origin: tuple[int, int]
    shape: tuple[int, int]
    core: tuple[tuple[int, int], tuple[int, int]]
    pad: tuple[int, int] = (0, 0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """Slices of the image that this tile reads (without the padding)."""
        return tuple(slice(o, o + s - p) for o, s, p in zip(self.origin, self.shape, self.pad))  # type: ignore[return-value]


def _plan_axis(length: int, tile: int, halo: int, cell: int, edge: EdgeMode
               ) -> list[tuple[int, int, int, int, int]]:
    """(origin, size, core_start, core_end, pad) of the tiles along one axis."""
    if length <= tile:
        return [(0, length, 0, length, 0)]
    halo_c = -(-halo // cell) * cell  # halo rounded up to whole cells
    stride = (tile - 2 * halo_c) // cell * cell
    if stride <= 0:
        raise InputError(
            f"tile size {tile} is too small for a halo of {halo} px with {cell}-px embedding cells; "
            f"use tiles of at least {2 * halo_c + cell} px or a smaller halo.")
    last = -(-(length - tile) // cell) * cell  # shifted back inside the image, kept on the cell grid
    origins = [0]
    while origins[-1] + tile < length:
        origins.append(min(origins[-1] + stride, last))
    bounds = [0] + [o + halo_c for o in origins[1:]] + [length]
    out = []
    for i, o in enumerate(origins):
        size, pad = tile, 0
        if o + tile > length:  # only the last tile, by less than one cell
            if edge == "pad":
                pad = o + tile - length
            else:
                size = length - o
        out.append((o, size, bounds[i], bounds[i + 1], pad))
    return out


def plan_tiles(image_shape: Sequence[int], tiling: Tiling, cell: int | Sequence[int] = 1, *,
               edge: EdgeMode = "shrink") -> list[Tile]:
    """Tiles covering an image of ``image_shape`` (Y, X), in row-major order.

    Tile origins and core boundaries are multiples of ``cell`` pixels so that
    embedding cells of neighbouring tiles line up (``cell`` = the extractor's
    ``patch_size`` when tiles are not resized; :func:`embed_tiled` derives it from
    the step of the first tile). Neighbouring cores meet ``halo`` (rounded up to
    whole cells) inside the later tile, so each core has at least ``halo`` pixels
    of context on every inner side. The last tile along an axis is shifted back
    inside the image as far as the cell grid allows; if it still reaches past the
    image by a few (< ``cell``) pixels, ``edge='shrink'`` cuts it short and
    ``edge='pad'`` keeps the full tile shape and mirror-pads the image there (for
    models that resize their input, where a shorter tile would change the scale).
    An axis no longer than the tile gets a single tile spanning it.
    """
    if edge not in ("shrink", "pad"):
        raise InputError(f"edge={edge!r} is unknown; use 'shrink' or 'pad'.")
    H, W = (int(s) for s in image_shape[:2])
    cy, cx = _pair(cell, "cell")
    if cy < 1 or cx < 1:
        raise InputError(f"cell must be a positive number of pixels; got {(cy, cx)}.")
    rows = _plan_axis(H, tiling.tile_shape[0], tiling.halo[0], cy, edge)
    cols = _plan_axis(W, tiling.tile_shape[1], tiling.halo[1], cx, edge)
    tiles = []
    for oy, sy, y0, y1, py in rows:
        for ox, sx, x0, x1, px in cols:
            tiles.append(Tile(index=len(tiles), origin=(oy, ox), shape=(sy, sx),
                              core=((y0, y1), (x0, x1)), pad=(py, px)))
    return tiles


def tiling_for(extractor: Any) -> Tiling | None:
    """The tiling an extractor's options ask for (``tile_shape``, optional ``halo``), or None.

    Without a ``halo`` option the extractor's own ``halo`` (which may depend on
    its options) or else the spec's ``halo`` is used.
    """
    tile_shape = extractor.options.get("tile_shape")
    if tile_shape is None:
        return None
    halo = extractor.options.get("halo")
    if halo is None:
        halo = getattr(extractor, "halo", None)
    return Tiling(tile_shape, extractor.spec.halo if halo is None else halo)


def cell_pixels(step: float) -> int:
    """Smallest whole number of pixels that is also a whole number of cells of size ``step``."""
    frac = Fraction(float(step)).limit_denominator(1024)
    if frac <= 0 or abs(float(frac) - float(step)) > 1e-6 * max(1.0, float(step)):
        raise PluginValidationError(
            f"Embedding step {step} is not a ratio of small integers; tiles cannot be aligned. "
            "Choose a tile_shape that the model resizes by a simple factor (e.g. its input_size).")
    return frac.numerator


def _cells(pixels: float, step: float) -> int:
    """Number of cells needed to cover ``pixels`` (partial last cell counts)."""
    return int(np.ceil(pixels / step - 1e-6))


def _read_tile(plane: np.ndarray, tile: Tile) -> np.ndarray:
    data = plane[tile.slices]
    if tile.pad != (0, 0):
        data = np.pad(data, ((0, tile.pad[0]), (0, tile.pad[1]), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(data)


def _embed_tiles(extractor: Any, plane: np.ndarray, tiles: Sequence[Tile]) -> list[Embedding]:
    """Embeddings of ``tiles`` of a prepared plane through the extractor's public ``embed_prepared``."""
    embeddings = extractor.embed_prepared([_read_tile(plane, t) for t in tiles])
    for tile, emb in zip(tiles, embeddings):
        if tuple(emb.geometry.image_shape) != tuple(tile.shape):
            raise PluginValidationError(
                f"Extractor {extractor.name!r} returned an embedding for image_shape {emb.geometry.image_shape} "
                f"from a tile of shape {tile.shape}; the geometry must map onto the plane it was given.")
        if tuple(emb.geometry.origin) != (0.0, 0.0):
            raise PluginValidationError(
                f"Extractor {extractor.name!r} returned an embedding with origin {emb.geometry.origin}; "
                "tiling needs origin (0, 0) (crop model padding before making the Embedding).")
    return embeddings


def _same_step(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(abs(x - y) <= 1e-9 * max(1.0, abs(x)) for x, y in zip(a, b))


def embed_tiled(extractor: Any, plane: np.ndarray, tiling: Tiling, *,
                progress: Progress | None = None) -> Embedding:
    """Embed a prepared (Y, X, C) plane tile by tile and stitch the tiles into one embedding.

    Tiles go through ``extractor.embed_prepared``, ``extractor.batch_size`` tiles
    of equal shape at a time; ``progress(done, total)`` is called after each tile.
    The result has geometry origin (0, 0), the common step of the tiles and as
    many cells per axis as the extractor gives a plane ending at the image border
    (a partial last cell kept or dropped), and its ``meta`` records the tiling and
    the number of tiles. The first tile fixes the step; every other tile must have
    the same one (a shortened last tile that the model resizes differently is
    re-embedded at the full tile shape, mirror-padded).
    """
    plane = np.asarray(plane)
    if plane.ndim != 3:
        raise InputError(f"embed_tiled takes a (Y, X, C) plane; got shape {plane.shape}.")
    H, W = plane.shape[:2]

    # The first tile sits at the origin whatever the cell size; its step fixes the grid.
    first_shape = (min(tiling.tile_shape[0], H), min(tiling.tile_shape[1], W))
    first = Tile(0, (0, 0), first_shape, ((0, first_shape[0]), (0, first_shape[1])))
    first_emb = _embed_tiles(extractor, plane, [first])[0]
    step = tuple(float(s) for s in first_emb.geometry.step)
    if first_shape == (H, W):  # the image fits in one tile
        if progress is not None:
            progress(1, 1)
        return first_emb
    if extractor.spec.global_context:
        warnings.warn(
            f"Extractor {extractor.name!r} has global context: tiled features differ from whole-image "
            "features (each tile sees only itself). Use tiles as large as memory allows.",
            UserWarning, stacklevel=4)

    cell = (cell_pixels(step[0]), cell_pixels(step[1]))
    edge: EdgeMode = "pad" if extractor.spec.input_size else "shrink"
    tiles = plan_tiles((H, W), tiling, cell, edge=edge)
    n = len(tiles)
    shape = (_cells(H, step[0]), _cells(W, step[1]))
    out = np.empty((first_emb.n_features,) + shape, dtype=first_emb.data.dtype)
    extent = (0, 0)
    batch_size = max(1, int(getattr(extractor, "batch_size", 1)))
    embedded: dict[int, Embedding] = {0: first_emb} if tiles[0].shape == first.shape else {}
    for tile in tiles:
        if tile.index not in embedded:
            # this tile and the next ones of the same shape in one call
            ahead = [t for t in tiles[tile.index:] if t.shape == tile.shape and t.index not in embedded]
            ahead = ahead[:batch_size]
            embedded.update(zip([t.index for t in ahead], _embed_tiles(extractor, plane, ahead)))
        emb = embedded.pop(tile.index)
        if not _same_step(tuple(emb.geometry.step), step) and tile.shape != first.shape:
            pad = tuple(max(0, o + s - d) for o, s, d in zip(tile.origin, first.shape, (H, W)))
            tile = Tile(tile.index, tile.origin, first.shape, tile.core, pad)  # type: ignore[arg-type]
            emb = _embed_tiles(extractor, plane, [tile])[0]
        if not _same_step(tuple(emb.geometry.step), step):
            raise PluginValidationError(
                f"Extractor {extractor.name!r} gave tile {tile.index} (shape {tile.shape}) the step "
                f"{emb.geometry.step}, but the first tile had {step}; tiles cannot be stitched.")
        if emb.n_features != out.shape[0]:
            raise PluginValidationError(
                f"Extractor {extractor.name!r} gave tile {tile.index} {emb.n_features} channels, "
                f"the first tile {out.shape[0]}.")
        end = _write_core(out, emb, tile, step, (H, W))
        extent = (max(extent[0], end[0]), max(extent[1], end[1]))
        if progress is not None:
            progress(tile.index + 1, n)

    out = out[:, : extent[0], : extent[1]]  # the extractor may drop a partial last cell
    meta = dict(first_emb.meta)
    meta["tiling"] = {**tiling.as_dict(), "n_tiles": n}
    return Embedding(out, EmbeddingGeometry((H, W), step, (0.0, 0.0)),
                     extractor=first_emb.extractor, meta=meta)


def _write_core(out: np.ndarray, emb: Embedding, tile: Tile, step: tuple[float, float],
                image_shape: tuple[int, int]) -> tuple[int, int]:
    """Copy the cells of ``tile.core`` into ``out``; returns the end cell written along (y, x)."""
    src, dst = [], []
    for ax in range(2):
        start, stop = tile.core[ax]
        offset = int(round(tile.origin[ax] / step[ax]))
        have = offset + emb.data.shape[1 + ax]
        g0 = int(round(start / step[ax]))
        if stop == image_shape[ax]:  # image border: a partial last cell is the extractor's choice
            g1 = max(g0, min(_cells(stop, step[ax]), have))
        else:
            g1 = int(round(stop / step[ax]))
        if g1 > have:
            raise PluginValidationError(
                f"Tile {tile.index} of shape {tile.shape} has only {emb.data.shape[1:]} embedding cells; "
                f"expected at least {g1 - offset} along axis {'yx'[ax]} for step {step[ax]}.")
        src.append(slice(g0 - offset, g1 - offset))
        dst.append(slice(g0, g1))
    out[(slice(None), *dst)] = emb.data[(slice(None), *src)]
    return dst[0].stop, dst[1].stop
