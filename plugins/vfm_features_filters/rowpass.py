"""1D correlation along image rows (the contiguous axis) as one small matrix product per band.

Rows are mirror-padded (Vigra's REFLECT) and a band of them is read as one flat
vector; pixel ``p`` of the band then needs ``flat[p - r .. p + r]``. For symmetric
kernels (Gaussian orders 0 and 2) the taps at ``+j`` and ``-j`` share one weight and
for the antisymmetric order 1 they have opposite weights, so the band is folded into
rows ``flat[p] ; flat[p + j] + flat[p - j] ; flat[p + j] - flat[p - j]`` (``j = 1..P``)
and every kernel at that scale is one row of weights against them: one product for
all even kernels, one for the odd one, each writing whole contiguous rows of output.
Along the contiguous axis this is several times faster than block matrices, whose
operands would be narrow strided strips; the padding columns of the output hold junk.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .banded import mirror_index
from .kernels import gaussian_kernel, kernel_radius

# Folded taps of one chunk stay in L2 cache (floats); OpenBLAS runs products of about
# m * n * k <= 2**20 on a fast path for small matrices, which chunks also stay below.
CHUNK_FLOATS = 2**17
PRODUCT_SIZE = 2**20


def mirror_columns(width: int, pad: int) -> np.ndarray:
    """Source column of each of ``width + 2 * pad`` padded columns (Vigra REFLECT, any pad)."""
    return mirror_index(np.arange(-pad, width + pad), width)


@lru_cache(maxsize=256)
def folded_weights(kernels: tuple[tuple[float, int], ...], radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(even, odd) weight rows over the folded taps ``0..radius`` and ``1..radius``."""
    even = [k for k in kernels if k[1] != 1]
    odd = [k for k in kernels if k[1] == 1]
    w_even = np.zeros((len(even), radius + 1), dtype=np.float32)
    w_odd = np.zeros((len(odd), radius), dtype=np.float32)
    for row, k in zip(w_even, even):
        w = gaussian_kernel(*k)
        r = (len(w) - 1) // 2
        row[:r + 1] = w[r:]
    for row, k in zip(w_odd, odd):
        w = gaussian_kernel(*k)
        r = (len(w) - 1) // 2
        row[:r] = w[r + 1:]
    w_even.setflags(write=False)
    w_odd.setflags(write=False)
    return w_even, w_odd


def chunk_size(radius: int, n_kernels: int) -> int:
    """Outputs per product: folded taps in cache, product on BLAS's fast path."""
    return max(1024, min(CHUNK_FLOATS // (radius + 1), PRODUCT_SIZE // (max(1, n_kernels) * (radius + 1))))


def correlate_rows(flat: np.ndarray, start: int, count: int, kernels: tuple[tuple[float, int], ...],
                   even_out: np.ndarray | None, odd_out: np.ndarray | None) -> None:
    """Correlate ``flat[start:start + count]`` with ``kernels`` (even ones first in the outputs).

    ``flat`` holds mirror-padded rows, at least ``max radius`` padding columns each side;
    ``even_out`` is (n_even, count), ``odd_out`` (n_odd, count), rows contiguous.
    """
    radius = max(kernel_radius(*k) for k in kernels)
    w_even, w_odd = folded_weights(kernels, radius)
    step = chunk_size(radius, len(kernels))
    folded = np.empty((radius + 1, min(step, count)), dtype=np.float32)
    for c0 in range(0, count, step):
        n = min(step, count - c0)
        a = start + c0
        if len(w_even):
            f = folded[:, :n]
            f[0] = flat[a:a + n]
            for j in range(1, radius + 1):
                np.add(flat[a + j:a + j + n], flat[a - j:a - j + n], out=f[j])
            np.matmul(w_even, f, out=even_out[:, c0:c0 + n])
        if len(w_odd):
            f = folded[1:, :n]
            for j in range(1, radius + 1):
                np.subtract(flat[a + j:a + j + n], flat[a - j:a - j + n], out=f[j - 1])
            np.matmul(w_odd, f, out=odd_out[:, c0:c0 + n])
