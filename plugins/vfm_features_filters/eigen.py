"""Closed-form eigenvalues of symmetric 2x2 matrices, vectorised over images (float32)."""

from __future__ import annotations

import numpy as np


def eigenvalues_2x2(a: np.ndarray, b: np.ndarray, c: np.ndarray,
                    out0: np.ndarray, out1: np.ndarray, scratch: np.ndarray,
                    total: np.ndarray | None = None, halved: bool = False) -> None:
    """Eigenvalues of ``[[a, b], [b, c]]`` per pixel into ``out0 >= out1``.

    lambda = (a + c) / 2 +- sqrt(((a - c) / 2)**2 + b**2), the formula fastfilters uses;
    ``scratch`` is a buffer of the outputs' shape. ``np.hypot`` would be 20x slower.
    ``total``, if given, is ``a + c`` already computed (the LoG for the Hessian): one pass less,
    same result. With ``halved``, ``a`` and ``c`` hold a / 2 and c / 2 (scaled by an exact power of
    two upstream): same eigenvalues, bit for bit, in 8 passes instead of 10.
    """
    if halved:  # a, c given as a / 2, c / 2: the same numbers (halving is exact) in two passes less
        np.subtract(a, c, out=scratch)
        scratch *= scratch
        np.multiply(b, b, out=out0)
        scratch += out0
        np.sqrt(scratch, out=scratch)
        np.add(a, c, out=out1)
        np.add(out1, scratch, out=out0)
        out1 -= scratch
        return
    np.subtract(a, c, out=scratch)
    scratch *= 0.5
    scratch *= scratch
    np.multiply(b, b, out=out0)
    scratch += out0
    np.sqrt(scratch, out=scratch)  # half the distance between the eigenvalues
    if total is None:
        np.add(a, c, out=out1)
        out1 *= 0.5  # the mean of the eigenvalues
    else:
        np.multiply(total, 0.5, out=out1)
    np.add(out1, scratch, out=out0)
    out1 -= scratch


def eigenvalues_3x3(a00: np.ndarray, a01: np.ndarray, a02: np.ndarray, a11: np.ndarray, a12: np.ndarray,
                    a22: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues of symmetric 3x3 matrices per voxel, descending, in float64.

    The trigonometric closed form: with ``q = trace / 3`` and ``p`` the root mean
    square of ``A - q I`` (scaled), the eigenvalues are ``q + 2 p cos(phi + 2 pi k / 3)``
    where ``cos(3 phi) = det((A - q I) / p) / 2``. Matrices with ``p = 0`` are ``q I``.
    """
    a00, a01, a02, a11, a12, a22 = (np.asarray(m, np.float64) for m in (a00, a01, a02, a11, a12, a22))
    q = (a00 + a11 + a22) / 3.0
    b00, b11, b22 = a00 - q, a11 - q, a22 - q
    off = a01 * a01 + a02 * a02 + a12 * a12
    p = np.sqrt((b00 * b00 + b11 * b11 + b22 * b22 + 2.0 * off) / 6.0)
    safe = np.where(p > 0, p, 1.0)
    det = (b00 * (b11 * b22 - a12 * a12) - a01 * (a01 * b22 - a12 * a02) + a02 * (a01 * a12 - b11 * a02))
    r = np.clip(det / (2.0 * safe ** 3), -1.0, 1.0)
    phi = np.arccos(r) / 3.0
    largest = q + 2.0 * p * np.cos(phi)
    smallest = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    middle = 3.0 * q - largest - smallest
    return largest, middle, smallest
