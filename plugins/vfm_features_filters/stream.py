"""The compiled backend: plans the streaming passes of :mod:`.compiled` and runs them over bands of rows.

:class:`ScalePlan` turns (sigma, features) into the arrays the compiled pass reads
(folded weights, radii, which ring plane feeds which derivative, output slots);
:func:`filter_plane` runs every scale of one 2D plane over bands of rows, one job
per band on the plugin's threads (numba releases the GIL). Same definitions as the
numpy backend (:mod:`.scale`), same features within float32 rounding.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from .features import DOG, DOG_RATIO, FEATURES, OUTER_RATIO
from .kernels import gaussian_kernel, kernel_radius

log = logging.getLogger(__name__)

# derivative key -> row of the compiled pass's buffer ``d`` (compiled.D00 ...)
DERIVATIVE_ROWS = {(0, 0): 0, (2, 0): 1, (1, 0): 2, (0, 2): 3, DOG: 4, (0, 1): 5, (1, 1): 6}
GRADIENT_ROWS = (DERIVATIVE_ROWS[1, 0], DERIVATIVE_ROWS[0, 1])
# kernels sharing one loop over their input rows (compiled._pair3): along y the derivatives of one
# plane share their loads from L2 (1.2x faster than one loop each, measured); along x a little
MAX_GROUP = 3
# columns of a group table (as compiled.PLANE, RADIUS, COUNT, MEMBERS; numba-free here)
RADIUS, MEMBERS = 1, 3
BAND_FEATURES = ("gaussian", "log", "gradient_magnitude", "dog", "hessian")  # compiled._features' slot order
MIN_BAND_ROWS = 192  # a band recomputes its context rows (up to about 5.5 sigma each side): keep bands long
JOBS_PER_THREAD = 2  # a thread slowed by other programs takes fewer bands; more bands, more context rows


def _even_radius(sigma: float, order: int) -> int:
    """The kernel's radius rounded up to even (taps go in pairs; the extra tap weighs 0)."""
    r = kernel_radius(sigma, order)
    return r + r % 2


def _folded(sigma: float, order: int, length: int) -> np.ndarray:
    """Weights of taps 0..radius (tap 0: the centre; order 1 has none), zero-padded to ``length``."""
    w = gaussian_kernel(sigma, order)
    r = (len(w) - 1) // 2
    out = np.zeros(length, dtype=np.float32)
    out[:r + 1] = w[r:]
    if order == 1:
        out[0] = 0.0
    return out


class ScalePlan:
    """Everything :func:`~.compiled.scale_band` needs for ``features`` at ``sigma``, outputs at ``slots``.

    Group tables (:data:`~.compiled.PLANE` ...): the x kernels of the source row in groups of
    at most three, and the derivatives grouped by the ring plane they read; weights are
    folded (tap 0 the centre, then taps 1..radius) and zero-padded to one length.
    """

    def __init__(self, sigma: float, features: Sequence[str], slots: Callable[[str], range]) -> None:
        sigma = float(sigma)
        tensor = "structure_tensor" in features
        keys = sorted({key for f in features for key in FEATURES[f].needs}, key=lambda k: (k == DOG, k))

        def along_x(key):
            return (DOG_RATIO * sigma, 0) if key == DOG else (sigma, key[1])

        def along_y(key):
            return (DOG_RATIO * sigma, 0) if key == DOG else (sigma, key[0])

        x_kernels = sorted({along_x(k) for k in keys}, key=lambda k: (k[1], k[0]))
        length = 1 + max(_even_radius(*k) for k in x_kernels + [along_y(k) for k in keys])
        self.x_weights = np.stack([_folded(*k, length) for k in x_kernels])
        self.x_signs = np.array([_sign(k) for k in x_kernels], dtype=np.float32)
        self.x_groups, self.x_sizes = _groups([(0, list(range(len(x_kernels))))], [_even_radius(*k) for k in x_kernels])
        self.d_weights = np.zeros((len(DERIVATIVE_ROWS), length), dtype=np.float32)
        self.d_signs = np.ones(len(DERIVATIVE_ROWS), dtype=np.float32)
        radii = [0] * len(DERIVATIVE_ROWS)
        for key in keys:
            row = DERIVATIVE_ROWS[key]
            self.d_weights[row] = _folded(*along_y(key), length)
            self.d_signs[row] = _sign(along_y(key))
            radii[row] = _even_radius(*along_y(key))
        by_plane = [(p, [DERIVATIVE_ROWS[k] for k in keys if x_kernels.index(along_x(k)) == p])
                    for p in range(len(x_kernels))]
        self.d_groups, self.d_sizes = _groups(by_plane, radii)
        self.g_groups, self.g_sizes = _groups([(p, [r for r in rows if r in GRADIENT_ROWS]) for p, rows in by_plane],
                                              radii)
        self.slots = np.array([i for f in BAND_FEATURES
                               for i in (slots(f) if f in features else [-1] * len(FEATURES[f].outputs))],
                              dtype=np.int64)
        outer = (OUTER_RATIO * sigma, 0)
        t_radius = _even_radius(*outer)
        self.t_weights = np.stack([_folded(*outer, t_radius + 1)] * 3)
        self.t_groups = np.array([[plane, t_radius, 1, plane, 0, 0] for plane in range(3)], dtype=np.int64)
        self.t_slots = np.array(list(slots("structure_tensor")) if tensor else [-1, -1], dtype=np.int64)

    @property
    def x_radius(self) -> int:
        """Columns and rows of context the pass reads (the widest kernel along x or y)."""
        return int(max(self.x_groups[:, RADIUS].max(), self.d_groups[:, RADIUS].max()))

    @property
    def t_radius(self) -> int:
        return int(self.t_groups[0, RADIUS])

    @property
    def n_x_kernels(self) -> int:
        return len(self.x_weights)

    def arguments(self) -> tuple:
        return (self.x_groups, self.x_sizes, self.x_weights, self.x_signs, self.d_groups, self.d_sizes, self.g_groups,
                self.g_sizes, self.d_weights, self.d_signs, self.slots, self.t_groups, self.t_weights, self.t_slots)


def _sign(kernel: tuple[float, int]) -> float:
    """+1 for symmetric kernels (a + b), -1 for the antisymmetric first derivative (a - b)."""
    return -1.0 if kernel[1] == 1 else 1.0


def _groups(by_plane: list[tuple[int, list[int]]], radii: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Group table (rows: plane, radius, count, members...; at most :data:`MAX_GROUP` members), sorted by
    count, and ``sizes``: the groups of ``n`` members are rows ``sizes[n - 1]:sizes[n]``."""
    table = []
    for plane, members in by_plane:
        for i in range(0, len(members), MAX_GROUP):
            chunk = members[i:i + MAX_GROUP]
            table.append([plane, max(radii[m] for m in chunk), len(chunk)] + chunk + [0] * (MAX_GROUP - len(chunk)))
    table.sort(key=lambda row: row[2])
    sizes = np.searchsorted([row[2] for row in table], np.arange(1, MAX_GROUP + 2), side="left")
    return np.array(table, dtype=np.int64).reshape(-1, MEMBERS + MAX_GROUP), sizes.astype(np.int64)


class Scratch:
    """One thread's buffers: the x ring, derivative rows, tensor products and their ring."""

    def __init__(self, width: int, plans: Sequence[ScalePlan]) -> None:
        x_radius = max(p.x_radius for p in plans)
        self.row = np.empty(width + 2 * x_radius, dtype=np.float32)  # one image row, mirror-padded
        t_radius = max(p.t_radius for p in plans)
        planes = max(p.n_x_kernels for p in plans)
        self.ring = np.empty((2 * x_radius + 2, planes, width), dtype=np.float32)
        self.d = np.empty((len(DERIVATIVE_ROWS), width), dtype=np.float32)
        self.products = np.empty((3, width + 2 * t_radius), dtype=np.float32)
        self.t_ring = np.empty((2 * t_radius + 2, 3, width), dtype=np.float32)
        self.t_acc = np.empty((3, width), dtype=np.float32)

    def arguments(self) -> tuple:
        return self.row, self.ring, self.d, self.products, self.t_ring, self.t_acc


def bands(height: int, n_threads: int) -> list[tuple[int, int]]:
    """Row ranges, one job each: one band on one thread, else a few per thread of at least MIN_BAND_ROWS rows."""
    n = 1 if n_threads < 2 else max(1, min(JOBS_PER_THREAD * n_threads, height // MIN_BAND_ROWS))
    edges = [round(i * height / n) for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def filter_plane(plane: np.ndarray, plans: Sequence[ScalePlan], out: np.ndarray,
                 pool: ThreadPoolExecutor | None, n_threads: int) -> None:
    """Every scale's features of one 2D ``plane`` into ``out`` (F, Y, X) at the plans' slots."""
    from .compiled import scale_band

    # C-contiguous, float32 and writeable: numba compiles (and caches) one version per array
    # type, and a read-only array (a memory map, a frozen array) would be another type
    image = np.require(plane, np.float32, ["C", "W"])
    jobs = bands(image.shape[0], n_threads if pool is not None else 1)
    scratches: queue.SimpleQueue = queue.SimpleQueue()  # one per running job, reused by the next
    for _ in range(min(len(jobs), 1 if pool is None else n_threads)):
        scratches.put(Scratch(image.shape[1], plans))

    def job(y0: int, y1: int) -> None:
        scratch = scratches.get()
        try:
            for plan in plans:
                scale_band(image, y0, y1, out, *plan.arguments(), *scratch.arguments())
        finally:
            scratches.put(scratch)

    if pool is None or len(jobs) < 2:
        for y0, y1 in jobs:
            job(y0, y1)
    else:
        list(pool.map(job, *zip(*jobs)))


@lru_cache(maxsize=64)
def plans_for(sigmas: tuple[float, ...], features: tuple[str, ...]) -> tuple[ScalePlan, ...]:
    """The plans of one channel's features, slots numbered as its outputs (feature -> sigma -> component)."""
    first, start = {}, 0
    for name in features:
        first[name] = start
        start += len(sigmas) * len(FEATURES[name].outputs)

    def slots(i: int):
        return lambda name: range(first[name] + i * len(FEATURES[name].outputs),
                                  first[name] + (i + 1) * len(FEATURES[name].outputs))

    return tuple(ScalePlan(sigma, features, slots(i)) for i, sigma in enumerate(sigmas))


_announced = threading.Event()


def announce_first_compile(kernel) -> None:
    """Say once per process when numba has no cached machine code yet, so that the pause is not taken for a hang."""
    if _announced.is_set():
        return
    _announced.set()
    try:
        index = kernel._cache._cache_file._index_path  # numba's cache index (internal: absent -> say nothing)
    except AttributeError:
        return
    if not os.path.exists(index):
        log.warning("Compiling the filter bank for this machine (numba, once: about 20 s); later runs load it "
                    "from %s.", os.path.dirname(index))


def warm_up() -> None:
    """Compile (or load from numba's cache) the pass for the array types every call uses, on a tiny image.

    Called once by :func:`~.backends.compiled_problem`, so that a numba that imports but cannot
    compile here is found before any image is filtered, and the backend falls back to numpy.
    """
    from .compiled import scale_band

    announce_first_compile(scale_band)
    features = tuple(FEATURES)
    plans = plans_for((1.0,), features)
    out = np.empty((sum(len(FEATURES[f].outputs) for f in features), 4, 5), dtype=np.float32)
    filter_plane(np.zeros((4, 5), dtype=np.float32), plans, out, None, 1)
