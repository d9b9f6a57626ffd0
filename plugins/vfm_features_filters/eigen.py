"""Closed-form eigenvalues of symmetric 2x2 matrices, vectorised over images (float32)."""

from __future__ import annotations

import numpy as np


def eigenvalues_2x2(a: np.ndarray, b: np.ndarray, c: np.ndarray,
                    out0: np.ndarray, out1: np.ndarray, scratch: np.ndarray) -> None:
    """Eigenvalues of ``[[a, b], [b, c]]`` per pixel into ``out0 >= out1``.

    lambda = (a + c) / 2 +- sqrt(((a - c) / 2)**2 + b**2), the formula fastfilters uses;
    ``scratch`` is a buffer of the outputs' shape. ``np.hypot`` would be 20x slower.
    """
    np.subtract(a, c, out=scratch)
    scratch *= 0.5
    scratch *= scratch
    np.multiply(b, b, out=out0)
    scratch += out0
    np.sqrt(scratch, out=scratch)  # half the distance between the eigenvalues
    np.add(a, c, out=out1)
    out1 *= 0.5  # the mean of the eigenvalues
    np.add(out1, scratch, out=out0)
    out1 -= scratch
