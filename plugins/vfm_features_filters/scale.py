"""All filter features of one 2D image at one scale, in phases of equal jobs over row bands.

One set of Gaussian derivative passes per scale feeds every feature:

1. x pass (bands of rows): the mirror-padded image correlated along x with every kernel
   the features need (orders 0, 1, 2 and the DoG's smoothing): folded (:mod:`.rowpass`),
   or for wide kernels (sigma > 2) block products, which are faster there.
2. y pass (bands of rows): each derivative ``d(oy, ox)`` is the x result of order ``ox``
   correlated along y with order ``oy`` (:mod:`.banded` block products); the features are
   computed from these rows at once, while they are in cache, and the gradient products
   of the structure tensor are formed and smoothed along x right there.
3. (structure tensor only) the products smoothed along y, and their eigenvalues.

Jobs of one phase write disjoint rows and read only what earlier phases wrote, so a
phase runs on any number of threads (numpy's BLAS and ufuncs release the GIL).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from .banded import Block, correlation_blocks
from .features import DOG, DOG_RATIO, FEATURES, HALVED, OUTER_RATIO, TENSOR
from .kernels import kernel_radius
from .rowpass import PRODUCT_SIZE, correlate_rows, mirror_columns

BAND_PIXELS = 65536  # pixels per band: rows stay in L2 cache; fewer, larger numpy calls scale better on 2 threads (measured)
WIDE_ROWS = 256  # rows per block product of the wide x kernels (measured: 2048 columns 25 % faster than whole images)
FOLD_RADIUS = 8  # x kernels up to this radius are folded (rowpass); wider ones use block products (measured)

Phase = tuple[Callable[[int, int], None], int]  # (job over bands [j0, j1), number of bands)


def y_block(radius: int, width: int) -> int:
    """Rows per block product along y: ``block + 2 r`` multiply-adds per output.

    16 rows where the product (block x width x (block + 2 r) multiply-adds) stays on
    OpenBLAS's fast path for small products (:data:`~.rowpass.PRODUCT_SIZE`), else 8:
    past it a product runs 1.5-2x slower (measured at 512-2048 columns, docs/filters.md).
    """
    return 16 if 16 * width * (16 + 2 * radius) <= PRODUCT_SIZE else 8


def x_kernels(sigma: float, features: Sequence[str]) -> list[tuple[float, int]]:
    """The x kernels (sigma, order) the features need at ``sigma``: even ones first, then order 1."""
    keys = _needs(features)
    orders = {key[1] for key in keys if key != DOG}
    kernels = [(sigma, o) for o in (0, 2) if o in orders]
    if DOG in keys:
        kernels.append((DOG_RATIO * sigma, 0))
    if 1 in orders:
        kernels.append((sigma, 1))
    return kernels


def x_radius(sigmas: Sequence[float], features: Sequence[str]) -> int:
    """Padding columns the x pass needs for every scale."""
    return max(kernel_radius(*k) for s in sigmas for k in x_kernels(float(s), features))


class Workspace:
    """Planes for one image shape, reused by every scale and channel of one call."""

    def __init__(self, shape: tuple[int, int], sigmas: Sequence[float], features: Sequence[str]) -> None:
        height, width = shape
        self.pad = x_radius(sigmas, features)
        self.columns = mirror_columns(width, self.pad)
        self.padded = np.empty((height, width + 2 * self.pad), dtype=np.float32)
        n_x = max(len(x_kernels(float(s), features)) for s in sigmas)
        self.x = np.empty((n_x, height, width + 2 * self.pad), dtype=np.float32)
        tensor = any(FEATURES[f].tensor for f in features)
        self.tensor_pad = max(kernel_radius(OUTER_RATIO * s) for s in sigmas)
        self.tensor_columns = mirror_columns(width, self.tensor_pad)
        tpad = self.tensor_pad  # padding columns of the products, and the columns they mirror (made once)
        self.tensor_edges = np.r_[0:tpad, tpad + width:width + 2 * tpad]
        self.tensor_sources = tpad + self.tensor_columns[self.tensor_edges]
        self.products = (np.empty((height, 3, width + 2 * self.tensor_pad), dtype=np.float32)
                         if tensor else None)

    def load(self, image: np.ndarray) -> None:
        """Mirror-pad one channel (2D) into :attr:`padded` (a slice copy and the padding columns: 5x faster than ``take``)."""
        pad, width = self.pad, image.shape[1]
        self.padded[:, pad:pad + width] = image
        if pad:
            edges = np.r_[0:pad, pad + width:width + 2 * pad]
            self.padded[:, edges] = image[:, self.columns[edges]]


class ScaleFilters:
    """The ``features`` of the image in ``workspace.padded`` at ``sigma``, into ``outputs[name]`` planes."""

    def __init__(self, workspace: Workspace, sigma: float, features: Sequence[str],
                 outputs: dict[str, list[np.ndarray]]) -> None:
        self.ws = workspace
        self.sigma = float(sigma)
        self.outputs = outputs
        self.height, padded_width = workspace.padded.shape
        self.width = padded_width - 2 * workspace.pad
        self.band_features = [FEATURES[f] for f in features if not FEATURES[f].tensor]
        self.tensor_features = [FEATURES[f] for f in features if FEATURES[f].tensor]
        self.x_kernels = tuple(x_kernels(self.sigma, features))
        self.n_even = sum(order != 1 for _, order in self.x_kernels)
        self.wide = max(kernel_radius(*k) for k in self.x_kernels) > FOLD_RADIUS
        # rows per job of the x pass; fixed chunks for block products, so that the result does not
        # depend on the number of threads (a product's rounding depends on its number of rows)
        self.x_band = WIDE_ROWS if self.wide else max(1, BAND_PIXELS // padded_width)
        # y products: key -> (blocks along y, index of its x result)
        index = {(s, o): i for i, (s, o) in enumerate(self.x_kernels)}
        self.derivatives = {}
        for key in _needs(features):
            if key == DOG:
                y_kernel, x_index = (DOG_RATIO * self.sigma, 0), index[DOG_RATIO * self.sigma, 0]
            else:
                y_kernel, x_index = (self.sigma, key[0]), index[self.sigma, key[1]]
            self.derivatives[key] = (y_kernel, x_index)
        block = y_block(max(kernel_radius(*k) for k, _ in self.derivatives.values()), self.width)
        self.derivatives = {key: (correlation_blocks(self.height, *k, block), i)
                            for key, (k, i) in self.derivatives.items()}
        outer = OUTER_RATIO * self.sigma
        self.tensor_kernel = ((outer, 0),)
        tensor_block = y_block(kernel_radius(outer), self.width)
        self.tensor_blocks = correlation_blocks(self.height, outer, 0, tensor_block)
        self.tensor_half_blocks = halved_blocks(self.height, outer, tensor_block)
        align = max(block, tensor_block)  # y bands are whole blocks of every y product
        self.y_band = max(align, BAND_PIXELS // max(self.width, 1) // align * align)

    def phases(self) -> list[Phase]:
        """The jobs in order; each phase needs all of the previous one."""
        phases = [(self._x_pass, -(-self.height // self.x_band)), (self._y_pass, self._n_y_bands())]
        if self.tensor_features:
            phases.append((self._tensor_y_pass, self._n_y_bands()))
        return phases

    def _n_y_bands(self) -> int:
        return -(-self.height // self.y_band)

    def _x_pass(self, j0: int, j1: int) -> None:
        ws, pad = self.ws, self.ws.pad
        padded_width = ws.padded.shape[1]
        n = len(self.x_kernels)
        if self.wide:
            for j in range(j0, j1):
                rows = slice(j * self.x_band, min((j + 1) * self.x_band, self.height))
                for k, (sigma, order) in enumerate(self.x_kernels):
                    blocks = correlation_blocks(self.width, sigma, order, 32)
                    _correlate_rows(ws.padded[rows, pad:pad + self.width], blocks, ws.x[k][rows, pad:pad + self.width])
            return
        for j in range(j0, j1):
            y0, y1 = j * self.x_band, min((j + 1) * self.x_band, self.height)
            count = (y1 - y0 - 1) * padded_width + self.width  # first to last pixel of the band
            flat = ws.padded[y0:y1].reshape(-1)
            out = ws.x[:n, y0:y1].reshape(n, -1)[:, pad:pad + count]
            correlate_rows(flat, pad, count, self.x_kernels, out[:self.n_even], out[self.n_even:])

    def _y_pass(self, j0: int, j1: int) -> None:
        ws, pad, width = self.ws, self.ws.pad, self.width
        for j in range(j0, j1):
            rows = slice(j * self.y_band, min((j + 1) * self.y_band, self.height))
            n = rows.stop - rows.start
            d = {}
            for key, (blocks, x_index) in self.derivatives.items():
                # the smoothed image goes straight into its output plane when it is one
                d[key] = (self.outputs["gaussian"][0][rows] if key == (0, 0) and "gaussian" in self.outputs
                          else np.empty((n, width), dtype=np.float32))
                _correlate_columns(ws.x[x_index][:, pad:pad + width], blocks, rows, d[key])
            scratch = np.empty((n, width), dtype=np.float32)
            if self.tensor_features:
                self._tensor_products(d, rows)
            for f in self.band_features:
                f.compute(d, [plane[rows] for plane in self.outputs[f.name]], scratch)

    def _tensor_products(self, d: dict, rows: slice) -> None:
        """Gradient products of rows ``rows``, mirror-padded and smoothed along x into ``ws.products``."""
        ws, tpad, width = self.ws, self.ws.tensor_pad, self.width
        n = rows.stop - rows.start
        products = np.empty((n, 3, width + 2 * tpad), dtype=np.float32)
        centre = products[:, :, tpad:tpad + width]
        np.multiply(d[1, 0], d[1, 0], out=centre[:, 0])
        np.multiply(d[1, 0], d[0, 1], out=centre[:, 1])
        np.multiply(d[0, 1], d[0, 1], out=centre[:, 2])
        d["gy2"], d["gx2"] = centre[:, 0], centre[:, 2]  # the gradient magnitude reuses the squares
        if tpad:
            products[:, :, ws.tensor_edges] = products[:, :, ws.tensor_sources]
        count = (3 * n - 1) * (width + 2 * tpad) + width
        out = ws.products[rows].reshape(1, -1)[:, tpad:tpad + count]
        correlate_rows(products.reshape(-1), tpad, count, self.tensor_kernel, out, None)

    def _tensor_y_pass(self, j0: int, j1: int) -> None:
        ws, tpad, width = self.ws, self.ws.tensor_pad, self.width
        for j in range(j0, j1):
            rows = slice(j * self.y_band, min((j + 1) * self.y_band, self.height))
            n = rows.stop - rows.start
            # one contiguous plane per product: element-wise steps on strided views cost 1.6x (measured)
            tensor = {}
            for i, key in enumerate(TENSOR):
                tensor[key] = np.empty((n, width), dtype=np.float32)
                blocks = self.tensor_half_blocks if key in HALVED else self.tensor_blocks
                _correlate_columns(ws.products[:, i, tpad:tpad + width], blocks, rows, tensor[key])
            scratch = np.empty((n, width), dtype=np.float32)
            for f in self.tensor_features:
                f.compute(tensor, [plane[rows] for plane in self.outputs[f.name]], scratch)


@lru_cache(maxsize=64)
def halved_blocks(n: int, sigma: float, block: int) -> tuple[Block, ...]:
    """:func:`~.banded.correlation_blocks` of the order-0 kernel with every weight halved (exact in float32).

    Products with them are exactly half those with the original weights, bit for bit.
    """
    halved, made = [], {}  # blocks that share a matrix still share one (see _interior_run)
    for b in correlation_blocks(n, sigma, 0, block):
        if id(b.weights) not in made:
            made[id(b.weights)] = b.weights * np.float32(0.5)
            made[id(b.weights)].setflags(write=False)
        halved.append(Block(b.start, b.stop, b.lo, b.hi, made[id(b.weights)]))
    return tuple(halved)


def _correlate_rows(source: np.ndarray, blocks, out: np.ndarray) -> None:
    """2D ``source`` correlated along axis 1 into ``out`` with block products (wide kernels)."""
    for b in blocks:
        np.matmul(source[:, b.lo:b.hi], b.weights.T, out=out[:, b.start:b.stop])


def _correlate_columns(source: np.ndarray, blocks, rows: slice, out: np.ndarray) -> None:
    """Rows ``rows`` of 2D ``source`` correlated along axis 0 into ``out`` (len(rows) x columns).

    The run of interior blocks (one shared matrix) is one stacked product: numpy calls
    sgemm per block from C with the same operands as one call per block (same result),
    without Python's cost per block and holding the GIL once per band, not per block.
    """
    size = blocks[0].stop - blocks[0].start  # rows are whole blocks: bands are multiples of every block size
    k0, k1 = rows.start // size, -(-rows.stop // size)
    i0, i1 = _interior_run(blocks)
    i0, i1 = max(i0, k0), min(i1, k1)
    if i1 - i0 < 2 or not out.flags.c_contiguous:  # (the stacked output is a reshaped view of out)
        i0 = i1 = k1
    for b in blocks[k0:i0] + blocks[i1:k1]:
        np.matmul(b.weights, source[b.lo:b.hi], out=out[b.start - rows.start:b.stop - rows.start])
    if i1 > i0:
        first = blocks[i0]
        s0, s1 = source.strides
        stacked = np.lib.stride_tricks.as_strided(source[first.lo:], (i1 - i0, first.weights.shape[1], source.shape[1]),
                                                  (size * s0, s0, s1), writeable=False)
        target = out[first.start - rows.start:blocks[i1 - 1].stop - rows.start]
        np.matmul(first.weights, stacked, out=target.reshape(i1 - i0, size, out.shape[1]))


_INTERIOR: dict[int, tuple] = {}


def _interior_run(blocks) -> tuple[int, int]:
    """Indices ``[i0, i1)`` of the blocks that share the interior (Toeplitz) matrix; (0, 0) if none."""
    hit = _INTERIOR.get(id(blocks))
    if hit is not None and hit[0] is blocks:
        return hit[1]
    shared = [i for i, b in enumerate(blocks) if b.weights is blocks[len(blocks) // 2].weights]
    run = (shared[0], shared[-1] + 1) if len(shared) > 1 else (0, 0)
    if len(_INTERIOR) > 1024:
        _INTERIOR.clear()
    _INTERIOR[id(blocks)] = (blocks, run)
    return run


def _needs(features: Sequence[str]) -> list:
    """Derivative keys the features read, in a fixed order."""
    keys = {key for f in features for key in FEATURES[f].needs}
    return sorted(keys, key=lambda k: (k == DOG, k))
