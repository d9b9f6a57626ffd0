"""Closed-form eigenvalues of symmetric 2x2 matrices, vectorised over images."""

from __future__ import annotations

import numpy as np


def eigenvalues_2x2(a: np.ndarray, b: np.ndarray, c: np.ndarray,
                    out0: np.ndarray, out1: np.ndarray) -> None:
    """Eigenvalues of ``[[a, b], [b, c]]`` per pixel into ``out0 >= out1``.

    lambda = (a + c) / 2 +- hypot((a - c) / 2, b); ``hypot`` keeps it stable and
    exact for diagonal matrices.
    """
    mean = np.add(a, c)
    mean *= 0.5
    radius = np.subtract(a, c)
    radius *= 0.5
    np.hypot(radius, b, out=radius)
    np.add(mean, radius, out=out0)
    np.subtract(mean, radius, out=out1)
