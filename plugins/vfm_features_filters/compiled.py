"""The filter bank of one band of rows at one scale in one streaming pass, compiled with numba.

Rows flow through two small ring buffers instead of whole-image planes: each image
row is correlated along x once (every x kernel the scale needs), each output row
then reads the ring rows around it along y, computes all its features at once and
writes them; for the structure tensor its gradient products are smoothed along x
into a second ring and along y a few rows later. The working set (rings, a few
rows) stays in L2 cache and only the features go to memory. A band also computes
the few rows of context around it that it needs (twice where bands meet), so bands
are independent jobs without barriers, and every output row comes from the same
arithmetic whichever band, thread or number of threads computes it.

Weights are folded: with the inputs ``a``, ``b`` at ``+j``, ``-j``, a symmetric kernel
(orders 0, 2) multiplies ``a + b`` and an antisymmetric one (order 1) ``a - b``, written
``a + sign * b`` (exact for sign +-1), so that up to three kernels reading the same
rows share one loop over them (a *group*: the kernels of one source row along x,
the derivatives of one ring plane along y). Taps go in pairs (radii padded to even
with zero weights). Loops touch few arrays each, so LLVM vectorises them without
giving up on aliasing checks; constants are float32 (a Python float would make numba
compute in float64). ``contract`` lets LLVM fuse multiply-adds: results differ from
the numpy backend by float32 rounding only (docs/filters.md), and are the same on
every run and for any number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# nogil: bands run on the plugin's own threads; cache: compiled once per machine, not per process
_JIT = dict(nogil=True, fastmath={"contract"}, error_model="numpy", cache=True)
_INLINE = dict(_JIT, inline="always")  # the loops inlined where they are used: 1.3x faster (measured), not everywhere (compile time)
HALF = np.float32(0.5)
ONE = np.ones(3, dtype=np.float32)  # signs of the tensor's smoothing (one symmetric kernel per product)

# rows of the derivative buffer ``d`` (stream.DERIVATIVE_ROWS)
D00, D20, D10, D02, DDOG, D01, D11 = range(7)
# columns of a group table row: source plane (y only), radius, member count, members
PLANE, RADIUS, COUNT, MEMBERS = 0, 1, 2, 3


@njit(**_INLINE)
def mirror(i, n):
    """Vigra REFLECT / scipy 'mirror' position of index ``i`` on an axis of length ``n``."""
    if n == 1:
        return 0
    period = 2 * n - 2
    i = i % period
    if i >= n:
        i = period - i
    return i


@njit(**_INLINE)
def _pair1(first, e, s, w, c, u, v, a1, b1, a2, b2):
    """e (=|+=) w c + u (a1 + s b1) + v (a2 + s b2); ``w`` only when ``first``."""
    if first:
        for x in range(e.shape[0]):
            e[x] = w * c[x] + u * (a1[x] + s * b1[x]) + v * (a2[x] + s * b2[x])
    else:
        for x in range(e.shape[0]):
            e[x] += u * (a1[x] + s * b1[x]) + v * (a2[x] + s * b2[x])


@njit(**_INLINE)
def _pair2(first, e, f, s, t, w, y, c, u, v, p, q, a1, b1, a2, b2):
    """Two kernels of the same rows (:func:`_pair1` for ``e`` with s, w, u, v and ``f`` with t, y, p, q)."""
    if first:
        for x in range(e.shape[0]):
            m, g, h, i, k = c[x], a1[x], b1[x], a2[x], b2[x]
            e[x] = w * m + u * (g + s * h) + v * (i + s * k)
            f[x] = y * m + p * (g + t * h) + q * (i + t * k)
    else:
        for x in range(e.shape[0]):
            g, h, i, k = a1[x], b1[x], a2[x], b2[x]
            e[x] += u * (g + s * h) + v * (i + s * k)
            f[x] += p * (g + t * h) + q * (i + t * k)


@njit(**_INLINE)
def _pair3(first, e, f, o, s, t, z, w, y, n, c, u, v, p, q, k1, k2, a1, b1, a2, b2):
    """Three kernels of the same rows."""
    if first:
        for x in range(e.shape[0]):
            m, g, h, i, k = c[x], a1[x], b1[x], a2[x], b2[x]
            e[x] = w * m + u * (g + s * h) + v * (i + s * k)
            f[x] = y * m + p * (g + t * h) + q * (i + t * k)
            o[x] = n * m + k1 * (g + z * h) + k2 * (i + z * k)
    else:
        for x in range(e.shape[0]):
            g, h, i, k = a1[x], b1[x], a2[x], b2[x]
            e[x] += u * (g + s * h) + v * (i + s * k)
            f[x] += p * (g + t * h) + q * (i + t * k)
            o[x] += k1 * (g + z * h) + k2 * (i + z * k)


# One loop nest per group size: a size-1, -2 and -3 group each run their own nest (the plan
# sorts groups by size). Mixing the sizes under a branch inside one nest made every loop
# 2-4x slower (LLVM's versioned vector loops then lose; measured), as did calling them.


@njit(**_INLINE)
def _along_x(row, pad, width, j):
    """The inputs at +j, -j, +(j + 1), -(j + 1) of every output column of a padded row."""
    return (row[pad + j:pad + j + width], row[pad - j:pad - j + width],
            row[pad + j + 1:pad + j + 1 + width], row[pad - j - 1:pad - j - 1 + width])


@njit(**_INLINE)
def _along_y(ring, slots, centre, plane, j):
    """The ring rows at +j, -j, +(j + 1), -(j + 1) of ring plane ``plane``."""
    return (ring[slots[centre + j], plane], ring[slots[centre - j], plane],
            ring[slots[centre + j + 1], plane], ring[slots[centre - j - 1], plane])


@njit(**_INLINE)
def _x_groups1(row, pad, width, groups, weights, signs, dest):
    c = row[pad:pad + width]
    for g in range(groups.shape[0]):
        k = groups[g, MEMBERS]
        e, s, w = dest[k], signs[k], weights[k]
        a1, b1, a2, b2 = _along_x(row, pad, width, 1)
        _pair1(True, e, s, w[0], c, w[1], w[2], a1, b1, a2, b2)
        for j in range(3, groups[g, RADIUS] + 1, 2):
            a1, b1, a2, b2 = _along_x(row, pad, width, j)
            _pair1(False, e, s, w[0], c, w[j], w[j + 1], a1, b1, a2, b2)


@njit(**_INLINE)
def _x_groups2(row, pad, width, groups, weights, signs, dest):
    c = row[pad:pad + width]
    for g in range(groups.shape[0]):
        k, l = groups[g, MEMBERS], groups[g, MEMBERS + 1]
        e, f, w, v = dest[k], dest[l], weights[k], weights[l]
        a1, b1, a2, b2 = _along_x(row, pad, width, 1)
        _pair2(True, e, f, signs[k], signs[l], w[0], v[0], c, w[1], w[2], v[1], v[2], a1, b1, a2, b2)
        for j in range(3, groups[g, RADIUS] + 1, 2):
            a1, b1, a2, b2 = _along_x(row, pad, width, j)
            _pair2(False, e, f, signs[k], signs[l], w[0], v[0], c, w[j], w[j + 1], v[j], v[j + 1], a1, b1, a2, b2)


@njit(**_INLINE)
def _x_groups3(row, pad, width, groups, weights, signs, dest):
    c = row[pad:pad + width]
    for g in range(groups.shape[0]):
        k, l, m = groups[g, MEMBERS], groups[g, MEMBERS + 1], groups[g, MEMBERS + 2]
        e, f, o, w, v, q = dest[k], dest[l], dest[m], weights[k], weights[l], weights[m]
        a1, b1, a2, b2 = _along_x(row, pad, width, 1)
        _pair3(True, e, f, o, signs[k], signs[l], signs[m], w[0], v[0], q[0], c, w[1], w[2], v[1], v[2], q[1], q[2],
               a1, b1, a2, b2)
        for j in range(3, groups[g, RADIUS] + 1, 2):
            a1, b1, a2, b2 = _along_x(row, pad, width, j)
            _pair3(False, e, f, o, signs[k], signs[l], signs[m], w[0], v[0], q[0], c, w[j], w[j + 1], v[j], v[j + 1],
                   q[j], q[j + 1], a1, b1, a2, b2)


@njit(**_INLINE)
def _y_groups1(ring, slots, centre, groups, weights, signs, dest):
    for g in range(groups.shape[0]):
        p, k = groups[g, PLANE], groups[g, MEMBERS]
        e, s, w, c = dest[k], signs[k], weights[k], ring[slots[centre], p]
        a1, b1, a2, b2 = _along_y(ring, slots, centre, p, 1)
        _pair1(True, e, s, w[0], c, w[1], w[2], a1, b1, a2, b2)
        for j in range(3, groups[g, RADIUS] + 1, 2):
            a1, b1, a2, b2 = _along_y(ring, slots, centre, p, j)
            _pair1(False, e, s, w[0], c, w[j], w[j + 1], a1, b1, a2, b2)


@njit(**_INLINE)
def _y_groups2(ring, slots, centre, groups, weights, signs, dest):
    for g in range(groups.shape[0]):
        p, k, l = groups[g, PLANE], groups[g, MEMBERS], groups[g, MEMBERS + 1]
        e, f, w, v, c = dest[k], dest[l], weights[k], weights[l], ring[slots[centre], p]
        a1, b1, a2, b2 = _along_y(ring, slots, centre, p, 1)
        _pair2(True, e, f, signs[k], signs[l], w[0], v[0], c, w[1], w[2], v[1], v[2], a1, b1, a2, b2)
        for j in range(3, groups[g, RADIUS] + 1, 2):
            a1, b1, a2, b2 = _along_y(ring, slots, centre, p, j)
            _pair2(False, e, f, signs[k], signs[l], w[0], v[0], c, w[j], w[j + 1], v[j], v[j + 1], a1, b1, a2, b2)


@njit(**_INLINE)
def _y_groups3(ring, slots, centre, groups, weights, signs, dest):
    for g in range(groups.shape[0]):
        p, k, l, m = groups[g, PLANE], groups[g, MEMBERS], groups[g, MEMBERS + 1], groups[g, MEMBERS + 2]
        e, f, o, c = dest[k], dest[l], dest[m], ring[slots[centre], p]
        w, v, q = weights[k], weights[l], weights[m]
        a1, b1, a2, b2 = _along_y(ring, slots, centre, p, 1)
        _pair3(True, e, f, o, signs[k], signs[l], signs[m], w[0], v[0], q[0], c, w[1], w[2], v[1], v[2], q[1], q[2],
               a1, b1, a2, b2)
        for j in range(3, groups[g, RADIUS] + 1, 2):
            a1, b1, a2, b2 = _along_y(ring, slots, centre, p, j)
            _pair3(False, e, f, o, signs[k], signs[l], signs[m], w[0], v[0], q[0], c, w[j], w[j + 1], v[j], v[j + 1],
                   q[j], q[j + 1], a1, b1, a2, b2)


@njit(**_JIT)
def correlate_along_x(row, pad, width, groups, sizes, weights, signs, dest):
    """``dest[k]`` = the padded ``row`` (``pad`` mirrored columns each side) correlated with kernel ``k``.

    ``groups[sizes[n - 1]:sizes[n]]`` are the groups of ``n`` kernels (n = 1, 2, 3).
    """
    _x_groups1(row, pad, width, groups[sizes[0]:sizes[1]], weights, signs, dest)
    _x_groups2(row, pad, width, groups[sizes[1]:sizes[2]], weights, signs, dest)
    _x_groups3(row, pad, width, groups[sizes[2]:sizes[3]], weights, signs, dest)


@njit(**_JIT)
def ring_slots(y, radius, height, ring_len, slots):
    """``slots[radius + j]`` = ring slot of image row ``y + j`` (mirrored at the borders), ``|j| <= radius``."""
    for k in range(2 * radius + 1):
        r = y - radius + k
        if r < 0 or r >= height:
            r = mirror(r, height)
        slots[k] = r % ring_len


@njit(**_JIT)
def correlate_along_y(ring, slots, centre, groups, sizes, weights, signs, dest):
    """``dest[k]`` = ring plane ``group[PLANE]`` correlated along y; ring row ``y + j`` is ``slots[centre + j]``."""
    _y_groups1(ring, slots, centre, groups[sizes[0]:sizes[1]], weights, signs, dest)
    _y_groups2(ring, slots, centre, groups[sizes[1]:sizes[2]], weights, signs, dest)
    _y_groups3(ring, slots, centre, groups[sizes[2]:sizes[3]], weights, signs, dest)


@njit(**_JIT)
def _eigenvalues(o0, o1, a, b, c):
    """Eigenvalues of [[a, b], [b, c]] per pixel, o0 >= o1 (fastfilters' formula)."""
    for x in range(o0.shape[0]):
        h = HALF * (a[x] - c[x])
        s = np.sqrt(h * h + b[x] * b[x])
        m = HALF * (a[x] + c[x])
        o0[x] = m + s
        o1[x] = m - s


@njit(**_JIT)
def _features(d, out, y, slots):
    """Row ``y`` of gaussian, log, gradient magnitude, dog, hessian (2): ``out[slots[i], y]`` (-1: not wanted)."""
    width = d.shape[1]
    if slots[0] >= 0:
        o, a = out[slots[0], y], d[D00]
        for x in range(width):
            o[x] = a[x]
    if slots[1] >= 0:
        o, a, b = out[slots[1], y], d[D02], d[D20]
        for x in range(width):
            o[x] = a[x] + b[x]
    if slots[2] >= 0:
        o, a, b = out[slots[2], y], d[D01], d[D10]
        for x in range(width):
            o[x] = np.sqrt(a[x] * a[x] + b[x] * b[x])
    if slots[3] >= 0:
        o, a, b = out[slots[3], y], d[D00], d[DDOG]
        for x in range(width):
            o[x] = a[x] - b[x]
    if slots[4] >= 0:
        _eigenvalues(out[slots[4], y], out[slots[5], y], d[D20], d[D11], d[D02])


@njit(**_JIT)
def _tensor_products(d, products, t_groups, t_weights, dest):
    """Gradient products gy gy, gy gx, gx gx of one row, mirror-padded and smoothed along x into ``dest``.

    ``t_groups`` has one row per product ``i``: its plane ``i`` in the ring and one member, ``i`` (the
    rows of ``t_weights`` are the same smoothing kernel).
    """
    width = d.shape[1]
    pad = (products.shape[1] - width) // 2
    gy, gx = d[D10], d[D01]
    p0, p1, p2 = products[0, pad:pad + width], products[1, pad:pad + width], products[2, pad:pad + width]
    for x in range(width):
        p0[x] = gy[x] * gy[x]
        p1[x] = gy[x] * gx[x]
        p2[x] = gx[x] * gx[x]
    for i in range(3):
        p = products[i]
        for x in range(pad):
            p[pad - 1 - x] = p[pad + mirror(-1 - x, width)]
            p[pad + width + x] = p[pad + mirror(width + x, width)]
        _x_groups1(p, pad, width, t_groups[:1], t_weights, ONE, dest[i:i + 1])


@njit(**_JIT)
def _load_row(image, y, row, pad):
    """Image row ``y`` into ``row`` with ``pad`` mirrored columns each side."""
    width = image.shape[1]
    src = image[y]
    centre = row[pad:pad + width]
    for x in range(width):
        centre[x] = src[x]
    for x in range(pad):
        row[pad - 1 - x] = src[mirror(-1 - x, width)]
        row[pad + width + x] = src[mirror(width + x, width)]


@njit(**_JIT)
def scale_band(image, y0, y1, out,
               x_groups, x_sizes, x_weights, x_signs, d_groups, d_sizes, g_groups, g_sizes, d_weights, d_signs,
               slots, t_groups, t_weights, t_slots,
               row, ring, d, products, t_ring, t_acc):
    """Rows ``[y0, y1)`` of every feature at one scale (see :class:`~.stream.ScalePlan` for the arguments).

    x kernels ``k`` fill ring plane ``k``; derivative ``m`` (row ``m`` of ``d``, stream.DERIVATIVE_ROWS)
    is a ring plane correlated along y (``d_groups``; ``g_groups``: the gradient only, which is
    all the structure tensor needs in the context rows).
    """
    height, width = image.shape
    pad = (row.shape[0] - width) // 2
    tensor = t_slots[0] >= 0
    t_radius = t_groups[0, RADIUS]
    halo = t_radius if tensor else 0  # context rows for the tensor's smoothing along y
    x_radius = 0  # rows each side an output row reads (x kernels' columns: the row buffer's padding)
    for g in range(x_groups.shape[0]):
        x_radius = max(x_radius, x_groups[g, RADIUS])
    for g in range(d_groups.shape[0]):
        x_radius = max(x_radius, d_groups[g, RADIUS])
    ring_len = ring.shape[0]
    slots_x = np.empty(2 * x_radius + 1, dtype=np.int64)  # ring slots of the rows around the current one
    slots_t = np.empty(2 * t_radius + 1, dtype=np.int64)
    lo, hi = max(0, y0 - halo), min(height, y1 + halo)
    next_x = max(0, lo - x_radius)  # next image row to correlate along x
    emitted = y0  # next structure-tensor row to finish
    for y in range(lo, hi):
        while next_x <= min(height - 1, y + x_radius):
            _load_row(image, next_x, row, pad)
            correlate_along_x(row, pad, width, x_groups, x_sizes, x_weights, x_signs, ring[next_x % ring_len])
            next_x += 1
        inside = y0 <= y < y1
        ring_slots(y, x_radius, height, ring_len, slots_x)
        if inside:
            correlate_along_y(ring, slots_x, x_radius, d_groups, d_sizes, d_weights, d_signs, d)
        else:
            correlate_along_y(ring, slots_x, x_radius, g_groups, g_sizes, d_weights, d_signs, d)
        if inside:
            _features(d, out, y, slots)
        if tensor:
            _tensor_products(d, products, t_groups, t_weights, t_ring[y % t_ring.shape[0]])
            while emitted < y1 and min(height - 1, emitted + t_radius) <= y:
                ring_slots(emitted, t_radius, height, t_ring.shape[0], slots_t)
                _y_groups1(t_ring, slots_t, t_radius, t_groups, t_weights, ONE, t_acc)
                _eigenvalues(out[t_slots[0], emitted], out[t_slots[1], emitted], t_acc[0], t_acc[1], t_acc[2])
                emitted += 1
