"""Gaussian derivative kernels with ilastik's definitions (fastfilters / Vigra).

Window: a kernel of derivative order ``k`` at scale ``sigma`` reaches
``ceil((3 + k / 2) * sigma)`` pixels to each side (3 sigma for smoothing, 3.5 sigma
for first and 4 sigma for second derivatives).
Normalisation, so that every kernel is exact on low-order polynomials:

- order 0: the sampled Gaussian divided by its sum (keeps constants);
- order 1: ``x * g`` scaled so that the derivative of ``x`` is 1;
- order 2: ``(x**2 / sigma**2 - 1) * g`` minus its mean over the window (no response to
  constants), scaled so that the second derivative of ``x**2`` is 2.

Weights are for correlation (``out[i] = sum_j w[j] * in[i + j - r]``); numpy only, so
the spec reads the halo without importing anything heavy.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def kernel_radius(sigma: float, order: int = 0) -> int:
    """Half-width in pixels of the ``order``-th Gaussian derivative kernel at ``sigma`` (ilastik's rule)."""
    return max(1, math.ceil((3.0 + 0.5 * order) * float(sigma)))


@lru_cache(maxsize=256)
def gaussian_kernel(sigma: float, order: int) -> np.ndarray:
    """Correlation weights (float64, read-only) of the ``order``-th (0, 1, 2) Gaussian derivative."""
    if order not in (0, 1, 2):
        raise ValueError(f"Gaussian derivative order must be 0, 1 or 2; got {order}.")
    r = kernel_radius(sigma, order)
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    if order == 0:
        w = g / g.sum()
    elif order == 1:
        w = x * g
        w /= np.sum(x * w)  # sum(x * w) = 1
    else:
        w = ((x / sigma) ** 2 - 1.0) * g
        w -= w.mean()  # the window mean, as Vigra: sum(w) = 0
        w *= 2.0 / np.sum(x * x * w)  # sum(x**2 * w) = 2
    w.setflags(write=False)
    return w
