"""Antialiased bilinear resizing in numpy that reproduces torch's ``F.interpolate`` (no torch needed).

``resize_bilinear_aa(image, shape)`` gives what
``F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=True)``
gives on the CPU for a float32 image, so that a model exported to ONNX sees the
input the torch backend would have given it. It follows ATen's separable
antialiased kernel step by step, in float32 where ATen works in float32:

* per output index ``i``: ``scale = in / out`` (float32), ``support = scale`` when
  downscaling, else 1; ``center = float32(scale * (i + 0.5))``;
  ``xmin = int(float32(center - support) + 0.5)``, clipped at 0, and
  ``xmax = int(float32(center + support) + 0.5)``, clipped at ``in``;
* tap ``j`` weighs ``max(0, 1 - |float32((float32(xmin + j - center) + 0.5) * invscale)|)``,
  the taps normalised by their float32 sum;
* the last axis (width) is resized first, then the rows; each output is the
  first tap's product followed by one fused multiply-add per further tap
  (emulated exactly: a product of two float32 numbers is exact in float64).

Measured against torch 2.14 on this machine (tests/test_numpy_resize.py): bit for
bit when enlarging, and when shrinking by less than 2; when shrinking by 2 or more
(where ATen's compiled loop rounds some taps differently) up to 2 float32 ulps,
i.e. at most 2.4e-7 relative to the largest value. One exception is torch's own:
for a one-pixel-wide input torch's antialiased kernel gives wrong rows (it
disagrees with itself on the same column repeated twice); this module gives the
correct values there.
"""

from __future__ import annotations

import numpy as np

from vfm_features.errors import InputError

__all__ = ["aa_taps", "resize_bilinear_aa"]

#: documented agreement with torch: |numpy - torch| <= RELATIVE_TOLERANCE * max|image| (see the module docstring)
RELATIVE_TOLERANCE = 4e-7


def aa_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (out, K) int64 and weights (out, K) float32 of ATen's antialiased bilinear filter.

    Rows are padded to K taps with weight 0 (and a valid index), which leaves a
    fused multiply-add chain unchanged.
    """
    if in_size < 1 or out_size < 1:
        raise InputError(f"Cannot resize {in_size} pixels to {out_size}; both sizes must be at least 1.")
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    support = scale if scale >= 1 else f32(1.0)
    invscale = f32(1.0) / scale if scale >= 1 else f32(1.0)
    i = np.arange(out_size, dtype=np.float64)
    center = (np.float64(scale) * (i + 0.5)).astype(f32)
    xmin = np.maximum(((center - support).astype(f32).astype(np.float64) + 0.5).astype(np.int64), 0)
    xmax = np.minimum(((center + support).astype(f32).astype(np.float64) + 0.5).astype(np.int64), in_size)
    xsize = np.maximum(xmax - xmin, 0)
    k = int(xsize.max())
    j = np.arange(k)
    pos = xmin[:, None] + j[None, :]
    offset = (pos.astype(f32) - center[:, None]).astype(f32)
    arg = ((offset.astype(np.float64) + 0.5) * np.float64(invscale)).astype(f32)
    weights = np.maximum(f32(1.0) - np.abs(arg), f32(0.0)).astype(f32)
    weights[j[None, :] >= xsize[:, None]] = 0
    total = np.zeros(out_size, f32)
    for t in range(k):  # sequential float32 sum, as ATen
        total = (total + weights[:, t]).astype(f32)
    safe = np.where(total == 0, f32(1.0), total)
    weights = np.where(total[:, None] != 0, weights / safe[:, None], weights).astype(f32)
    return np.minimum(pos, in_size - 1), weights


def _resize_rows(image: np.ndarray, out_size: int) -> np.ndarray:
    """Resize axis 0 of a C-contiguous array: each tap gathers whole rows (contiguous copies)."""
    index, weights = aa_taps(image.shape[0], out_size)
    shape = (out_size,) + (1,) * (image.ndim - 1)
    w64 = weights.astype(np.float64)
    acc = np.empty((out_size,) + image.shape[1:], np.float32)
    prod = np.empty(acc.shape, np.float64)
    np.multiply(image[index[:, 0]], w64[:, 0].reshape(shape), out=prod)
    acc[...] = prod
    for t in range(1, index.shape[1]):
        np.multiply(image[index[:, t]], w64[:, t].reshape(shape), out=prod)  # exact: float32 x float32
        prod += acc
        acc[...] = prod  # exact product + one rounding to float32: a fused multiply-add
    return acc


def resize_bilinear_aa(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (Y, X[, C]) float32 image resized to ``shape`` (rows, cols) as torch's antialiased bilinear interpolation.

    Width first, then height, as ATen does; an axis whose size does not change is
    left untouched (as in torch).
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise InputError(f"resize_bilinear_aa takes a (Y, X) or (Y, X, C) image; got shape {image.shape}.")
    out = image.astype(np.float32, copy=False)
    rows, cols = (int(s) for s in shape)
    if cols != out.shape[1]:
        out = np.ascontiguousarray(_resize_rows(np.ascontiguousarray(out.swapaxes(0, 1)), cols).swapaxes(0, 1))
    if rows != out.shape[0]:
        out = _resize_rows(np.ascontiguousarray(out), rows)
    return out
