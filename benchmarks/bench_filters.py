"""The filter bank (32 channels per image) against fastfilters2, ilastik's SIMD filters, at three sizes.

    python benchmarks/bench_filters.py              # 512, 1024, 2048 (about a minute on 2 cores)
    python benchmarks/bench_filters.py --sizes 256 512 --repeats 5

For every size, from one run: our time at 1 and at 2 threads (the default backend:
numba where it is installed), fastfilters2's time (7 features per scale, 28 channels:
it has no DoG, so it does less work than our 32 channels), their ratios, the largest
difference between our features and fastfilters2's in units of each filter's range,
and the numpy backend's 1-thread time (what an install without numba gets). Measurements are interleaved (ours,
ours on 2 threads, fastfilters2, again) and the best of ``repeats`` is kept, so load
from other programs hits all three alike; the 1-thread CPU times (``time.thread_time``)
are printed too, as they hardly move with load. fastfilters2 is in the ``bench`` extra
(``pip install fastfilters2``); without it the fastfilters2 columns are left empty.
A napari-style scipy / scikit-image bank (one library call per feature) is measured
at the middle size.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

import vfm_features

SIGMAS = (0.5, 1.0, 2.0, 4.0)


def plain_filters(image: np.ndarray, sigmas=SIGMAS) -> np.ndarray:
    """Gaussian, LoG, gradient magnitude, DoG, structure-tensor and Hessian eigenvalues per sigma."""
    from skimage.feature import hessian_matrix, hessian_matrix_eigvals, structure_tensor, structure_tensor_eigenvalues

    img = image.astype(np.float32)
    out = []
    for s in sigmas:
        out.append(ndi.gaussian_filter(img, s))
        out.append(ndi.gaussian_laplace(img, s))
        out.append(ndi.gaussian_gradient_magnitude(img, s))
        out.append(ndi.gaussian_filter(img, s) - ndi.gaussian_filter(img, 0.66 * s))
        out.extend(structure_tensor_eigenvalues(structure_tensor(img, sigma=s, order="rc")))
        out.extend(hessian_matrix_eigvals(hessian_matrix(img, sigma=s, order="rc", use_gaussian_derivatives=True)))
    return np.stack(out).astype(np.float32)


def fastfilters2_filters(image: np.ndarray, sigmas=SIGMAS) -> np.ndarray:
    """fastfilters2's 7 features per scale: gaussian, gradient magnitude, LoG, Hessian (2), structure tensor (2)."""
    import fastfilters2

    img = np.ascontiguousarray(image, dtype=np.float32)
    return np.concatenate([fastfilters2.compute_filters(img, float(s)) for s in sigmas])


def difference_to_fastfilters2(ours, names: list[str], theirs: np.ndarray) -> float:
    """Largest |ours - fastfilters2| over every filter and sigma, in units of the filter's range."""
    index = {name: i for i, name in enumerate(names)}
    groups = (("gaussian",), ("gradient_magnitude",), ("log",), ("hessian_ev0", "hessian_ev1"),
              ("structure_tensor_ev0", "structure_tensor_ev1"))
    worst, k = 0.0, 0
    for s in SIGMAS:
        for group in groups:
            mine = np.stack([ours[index[f"ch0_{g}_s{s!r}"]] for g in group])
            ref = theirs[k:k + len(group)]
            worst = max(worst, float(np.abs(mine - ref).max() / np.ptp(ref)))
            k += len(group)
    return worst


@dataclass
class Row:
    size: int
    ours_1: float  # s, best wall time at 1 thread
    ours_2: float  # s, at 2 threads
    ff2: float | None  # s, fastfilters2 (28 channels)
    ours_1_cpu: float  # s, thread CPU time at 1 thread
    ff2_cpu: float | None
    difference: float | None  # largest difference to fastfilters2, in units of the filter's range
    plain: float | None = None  # s, scipy / scikit-image bank (middle size only)
    numpy_1: float | None = None  # s, the numpy backend at 1 thread (None where it is the default)


def _timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - t0, time.thread_time() - c0


def measure(size: int, repeats: int, with_plain: bool = False) -> Row:
    from data import scene

    image = scene(size, seed=0).image.astype(np.float32)
    one = vfm_features.get_extractor("filters", n_threads=1)
    two = vfm_features.get_extractor("filters", n_threads=2)
    plain_backend = vfm_features.get_extractor("filters", n_threads=1, backend="numpy")
    has_ff2 = importlib.util.find_spec("fastfilters2") is not None
    emb = one.embed(image)  # warm up: kernels, block matrices, thread pool
    difference = None
    if has_ff2:
        difference = difference_to_fastfilters2(emb.data, emb.meta["feature_names"], fastfilters2_filters(image))
    best = {k: (float("inf"), float("inf")) for k in ("one", "two", "ff2", "numpy")}
    for _ in range(repeats):  # interleaved, so that load from other programs hits all alike
        runs = {"one": lambda: one.embed(image), "two": lambda: two.embed(image)}
        if one.backend != "numpy":
            runs["numpy"] = lambda: plain_backend.embed(image)
        if has_ff2:
            runs["ff2"] = lambda: fastfilters2_filters(image)
        for key, fn in runs.items():
            wall, cpu = _timed(fn)
            best[key] = (min(best[key][0], wall), min(best[key][1], cpu))
    plain = _timed(lambda: plain_filters(image))[0] if with_plain else None
    return Row(size, best["one"][0], best["two"][0], best["ff2"][0] if has_ff2 else None,
               best["one"][1], best["ff2"][1] if has_ff2 else None, difference, plain,
               best["numpy"][0] if one.backend != "numpy" else None)


def run(*, size: int = 1024, repeats: int = 3, log=print) -> list[Row]:
    """Rows for ``size // 2``, ``size`` and ``2 * size`` (512, 1024, 2048 by default)."""
    if importlib.util.find_spec("fastfilters2") is None:
        log("  fastfilters2 is not installed: pip install fastfilters2 (the 'bench' extra)")
    return [measure(s, repeats, with_plain=(s == size)) for s in (size // 2, size, 2 * size)]


def table(rows: list[Row], size: int | None = None) -> str:
    def f(x, fmt="{:.3f}"):
        return "-" if x is None else fmt.format(x)

    backend = vfm_features.get_extractor("filters").backend
    lines = [f"32 channels (sigmas {list(SIGMAS)}), backend {backend}; fastfilters2: 28 channels (no DoG); "
             "best wall times in s",
             f"{'image':>10} {'ours 1 thr':>10} {'ours 2 thr':>10} {'ff2':>8} {'ff2/ours 1 thr':>14} "
             f"{'ours 2/1 thr':>12} {'CPU ff2/ours':>12} {'max diff/range':>14} {'numpy 1 thr':>11}"]
    for r in rows:
        ratio = None if r.ff2 is None else r.ff2 / r.ours_1
        cpu_ratio = None if r.ff2_cpu is None else r.ff2_cpu / r.ours_1_cpu
        lines.append(f"{str(r.size) + 'x' + str(r.size):>10} {r.ours_1:>10.3f} {r.ours_2:>10.3f} {f(r.ff2):>8} "
                     f"{f(ratio, '{:.2f}x'):>14} {r.ours_2 / r.ours_1:>11.2f}x {f(cpu_ratio, '{:.2f}x'):>12} "
                     f"{f(r.difference, '{:.1e}'):>14} {f(r.numpy_1):>11}")
    for r in rows:
        if r.plain is not None:
            lines.append(f"napari-style scipy/scikit-image bank at {r.size}x{r.size}: {r.plain:.3f} s "
                         f"({r.plain / r.ours_1:.1f}x our 1-thread time)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start")
    if importlib.util.find_spec("fastfilters2") is None:
        print("fastfilters2 is not installed: pip install fastfilters2 (the 'bench' extra)")
    middle = args.sizes[len(args.sizes) // 2]
    rows = [measure(s, args.repeats, with_plain=(s == middle)) for s in args.sizes]
    print(table(rows))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
