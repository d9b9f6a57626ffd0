"""Seeded synthetic microscopy-like data with instance masks and per-object classes.

Three cell types on a noisy background with uneven illumination. Their sizes
and brightness overlap on purpose, and a few cells of every type are atypical
(a ring with a half-filled centre, a granular cell with few spots), so that
classifiers need many labels to approach a perfect score and label-efficiency
curves are not flat:

=====  ===========  ================  ===========================================
class  name         size (radius px)  appearance
=====  ===========  ================  ===========================================
1      round        small (4-8)       bright, smooth, dimmer towards the rim
2      granular     large (7-13 x 5-9)  dim, elongated, speckled with bright spots
3      ring         medium (6-10)     bright rim, darker interior
=====  ===========  ================  ===========================================

Pixel classification uses the semantic map: 1 = background, 2..4 = class 1..3.

With ``context=True`` the class of a cell depends on its neighbourhood, not on its
looks, so that heads which read the embedding around a pixel or object (the
attentive probes) can show what local features miss. Every cell is drawn alike
(round, bright, of random size); a few large textured *landmarks* are scattered
first, and each cell is placed either close to a landmark or far from all of them:

=====  ========  ==================================================================
class  name      where
=====  ========  ==================================================================
1      near      the cell's rim is at most ``NEAR`` px from a landmark's rim
2      far       the cell's rim is at least ``FAR`` px from every landmark's rim
3      landmark  a large disc (radius 12-16 px) speckled with bright spots
=====  ========  ==================================================================

Semantic map: 1 = background, 2 = near cell, 3 = far cell, 4 = landmark. A filter
bank with sigmas up to 4 px sees about 12 px around a pixel, so it cannot tell a
near cell from a far one; a head that looks ``FAR`` px around can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

CELL_TYPES = ("round", "granular", "ring")
CONTEXT_TYPES = ("near", "far", "landmark")
NEAR = 8.0  # px between a near cell's rim and its landmark's rim, at most
FAR = 28.0  # px between a far cell's rim and every landmark's rim, at least
ATYPICAL = 0.15  # fraction of cells drawn with an appearance close to another type
PHOTONS = 500.0  # photon count of intensity 1.0 (sets the shot noise)


@dataclass
class SyntheticImage:
    image: np.ndarray  # (Y, X) uint16
    instances: np.ndarray  # (Y, X) int32, 0 = background
    object_classes: dict[int, int]  # instance id -> cell type 1..3
    semantic: np.ndarray  # (Y, X) uint8: 1 = background, 2..4 = cell types 1..3

    def scribbles(self, fraction: float = 0.02, *, random_state=None, width: int = 1) -> np.ndarray:
        """Sparse labels like brush strokes: short random lines inside each class region."""
        return make_scribbles(self.semantic, fraction, random_state=random_state, width=width)


def _semi_axes(rng, cls: int) -> tuple[float, float]:
    if cls == 1:
        a = rng.uniform(4, 8)
        return a, a
    if cls == 2:
        return rng.uniform(7, 13), rng.uniform(5, 9)
    a = rng.uniform(6, 10)
    return a, a


def _texture(rng, cls: int, r: np.ndarray, atypical: bool) -> np.ndarray:
    """Intensity of the pixels at normalised radius ``r`` (0 centre, 1 rim) of one cell."""
    if cls == 1:
        peak = rng.uniform(0.5, 1.0)
        return peak * (1.0 - (0.6 if atypical else 0.3) * r**2)
    if cls == 2:
        density = rng.uniform(0.02, 0.05) if atypical else rng.uniform(0.08, 0.16)
        spots = (rng.random(r.shape) < density).astype(np.float32)
        return rng.uniform(0.25, 0.45) + rng.uniform(0.35, 0.55) * spots
    rim = rng.uniform(0.5, 0.9)
    inner = rng.uniform(0.45, 0.65) * rim if atypical else rng.uniform(0.1, 0.3)
    return np.where(r > rng.uniform(0.55, 0.7), rim, inner)


def _place(rng, occupied, shape, radius, max_tries=60):
    H, W = shape
    for _ in range(max_tries):
        cy = rng.uniform(radius + 2, H - radius - 2)
        cx = rng.uniform(radius + 2, W - radius - 2)
        y0, y1 = int(cy - radius - 2), int(cy + radius + 3)
        x0, x1 = int(cx - radius - 2), int(cx + radius + 3)
        if not occupied[max(y0, 0):y1, max(x0, 0):x1].any():
            return cy, cx
    return None


def _ellipse(shape, cy: float, cx: float, a: float, b: float, theta: float):
    """A window around an ellipse and its normalised radius there: (window slices, r, inside)."""
    H, W = shape
    R = int(np.ceil(max(a, b))) + 3
    y0, y1 = max(int(cy) - R, 0), min(int(cy) + R + 1, H)
    x0, x1 = max(int(cx) - R, 0), min(int(cx) + R + 1, W)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return (slice(y0, y1), slice(x0, x1)), r, r <= 1.0


def make_synthetic_image(shape=(256, 256), n_cells: int = 40, *, random_state=None,
                         context: bool = False) -> SyntheticImage:
    """One image with about ``n_cells`` cells of the three types in equal proportion.

    ``context=True`` draws the neighbourhood task instead (see the module docstring):
    alike cells near or far from landmarks.
    """
    rng = np.random.default_rng(random_state)
    if context:
        return _context_image(rng, shape, n_cells)
    instances = np.zeros(shape, np.int32)
    signal = np.zeros(shape, np.float32)
    classes: dict[int, int] = {}
    occupied = np.zeros(shape, bool)
    next_id = 1
    for k in range(n_cells):
        cls = 1 + k % 3
        a, b = _semi_axes(rng, cls)
        pos = _place(rng, occupied, shape, max(a, b))
        if pos is None:
            continue
        cy, cx = pos
        # draw in a window around the cell only
        theta = rng.uniform(0, np.pi)
        window, r, inside = _ellipse(shape, cy, cx, a, b, theta)
        if not inside.any():
            continue
        instances[window][inside] = next_id
        occupied[window] |= ndi.binary_dilation(inside, iterations=2)
        classes[next_id] = cls
        signal[window][inside] = _texture(rng, cls, r[inside], rng.random() < ATYPICAL)
        next_id += 1
    return _finish(rng, signal, instances, classes)


def _finish(rng, signal: np.ndarray, instances: np.ndarray, classes: dict[int, int]) -> SyntheticImage:
    """Blur, uneven illumination, background and noise; the semantic map from the object classes."""
    H, W = shape = signal.shape
    signal = ndi.gaussian_filter(signal, 0.8)
    # uneven illumination: a smooth multiplicative field plus a smooth additive background
    yy, xx = np.ogrid[0:H, 0:W]
    field = 0.6 + 0.4 * np.sin(yy / H * np.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 3)) * np.cos(
        xx / W * np.pi * rng.uniform(0.5, 1.5))
    background = 0.1 + 0.4 * ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 8)
    img = (signal + np.clip(background, 0, None)) * field
    img = rng.poisson(np.clip(img, 0, None) * PHOTONS).astype(np.float32) + rng.normal(100, 8, shape)
    image = np.clip(img, 0, 65535).astype(np.uint16)
    lut = np.zeros(max(classes, default=0) + 1, np.uint8)
    for oid, cls in classes.items():
        lut[oid] = cls
    semantic = (lut[instances] + 1).astype(np.uint8)
    return SyntheticImage(image=image, instances=instances, object_classes=classes, semantic=semantic)


def _context_image(rng, shape, n_cells: int) -> SyntheticImage:
    """Landmarks first, then alike cells placed alternately near a landmark and far from all of them."""
    H, W = shape
    instances = np.zeros(shape, np.int32)
    signal = np.zeros(shape, np.float32)
    classes: dict[int, int] = {}
    occupied = np.zeros(shape, bool)
    next_id = 1
    for _ in range(max(1, int(H * W / 150**2 + 0.5))):
        radius = rng.uniform(12, 16)
        pos = _place(rng, occupied, shape, radius)
        if pos is None:
            continue
        window, r, inside = _ellipse(shape, pos[0], pos[1], radius, radius, 0.0)
        instances[window][inside] = next_id
        occupied[window] |= ndi.binary_dilation(inside, iterations=2)
        classes[next_id] = 3
        signal[window][inside] = _texture(rng, 2, r[inside], False)
        next_id += 1
    # distance of every pixel to the nearest landmark pixel (inf-like when there is none)
    landmark = instances > 0
    rim = ndi.distance_transform_edt(~landmark) if landmark.any() else np.full(shape, float(H + W))
    for k in range(n_cells):
        near = k % 2 == 0
        a = rng.uniform(4, 8)
        gap = rim - a  # distance from a cell's rim to the nearest landmark rim, per candidate centre
        allowed = (gap >= 2) & (gap <= NEAR) if near else gap >= FAR
        allowed[: int(a) + 2] = allowed[H - int(a) - 2:] = False
        allowed[:, : int(a) + 2] = allowed[:, W - int(a) - 2:] = False
        ys, xs = np.nonzero(allowed)
        placed = None
        for _ in range(60 if len(ys) else 0):
            i = rng.integers(len(ys))
            cy, cx = ys[i] + rng.uniform(-0.5, 0.5), xs[i] + rng.uniform(-0.5, 0.5)
            y0, x0 = int(cy - a - 2), int(cx - a - 2)
            if not occupied[max(y0, 0):int(cy + a + 3), max(x0, 0):int(cx + a + 3)].any():
                placed = cy, cx
                break
        if placed is None:
            continue
        window, r, inside = _ellipse(shape, placed[0], placed[1], a, a, 0.0)
        if not inside.any():
            continue
        instances[window][inside] = next_id
        occupied[window] |= ndi.binary_dilation(inside, iterations=2)
        classes[next_id] = 1 if near else 2
        signal[window][inside] = _texture(rng, 1, r[inside], False)
        next_id += 1
    return _finish(rng, signal, instances, classes)


def make_synthetic(n_images: int = 4, shape=(256, 256), n_cells: int | None = None, *,
                   random_state=0, context: bool = False) -> list[SyntheticImage]:
    """``n_images`` synthetic images; the same ``random_state`` gives the same data.

    ``context=True`` gives the neighbourhood task (classes near / far / landmark,
    see the module docstring) instead of the three cell types.
    """
    rng = np.random.default_rng(random_state)
    if n_cells is None:
        n_cells = max(6, int(shape[0] * shape[1] / 1600))
    return [make_synthetic_image(shape, n_cells, random_state=rng.integers(2**32), context=context)
            for _ in range(n_images)]


def make_scribbles(semantic: np.ndarray, fraction: float = 0.02, *, random_state=None, width: int = 1) -> np.ndarray:
    """Sparse labels that look like brush strokes, about ``fraction`` of each class region.

    Strokes are short horizontal or vertical runs inside eroded class regions, so
    they stay away from boundaries as a person's strokes would.
    """
    rng = np.random.default_rng(random_state)
    labels = np.zeros(semantic.shape, np.uint8)
    for cls in np.unique(semantic):
        if cls == 0:
            continue
        region = ndi.binary_erosion(semantic == cls, iterations=1) if width else semantic == cls
        if not region.any():
            region = semantic == cls
        target = max(4, int(fraction * region.sum()))
        ys, xs = np.nonzero(region)
        got = 0
        while got < target:
            i = rng.integers(len(ys))
            length = int(rng.integers(3, 12))
            if rng.random() < 0.5:
                y, x0 = ys[i], xs[i]
                seg = (np.full(length, y), np.clip(np.arange(x0, x0 + length), 0, semantic.shape[1] - 1))
            else:
                x, y0 = xs[i], ys[i]
                seg = (np.clip(np.arange(y0, y0 + length), 0, semantic.shape[0] - 1), np.full(length, x))
            ok = region[seg]
            labels[seg[0][ok], seg[1][ok]] = cls
            got += int(ok.sum())
    return labels
