"""The filter bank on one image: vfm-features' ``filters`` extractor against peer implementations.

Peers: fastfilters2 (ilastik's SIMD filters; 7 features per scale, no DoG) when it
is installed, and a plain scipy / scikit-image implementation of the same eight
features per scale written the way napari plugins usually compute them (one
library call per feature, nothing shared between features).
"""

from __future__ import annotations

import importlib.util
import time

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
    import fastfilters2

    img = np.ascontiguousarray(image, dtype=np.float32)
    return np.concatenate([fastfilters2.compute_filters(img, float(s)) for s in sigmas])


def _best_of(fn, repeats: int) -> tuple[np.ndarray, float]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def run(*, size: int = 1024, repeats: int = 3, log=print) -> list[tuple[str, int, float]]:
    from data import scene

    image = scene(size, seed=0).image
    ours = vfm_features.get_extractor("filters")
    rows = []
    out, t = _best_of(lambda: ours.embed(image).data, repeats)
    rows.append(("vfm-features filters (threads: all cores)", out.shape[0], t))
    single = vfm_features.get_extractor("filters", n_threads=1)
    out, t = _best_of(lambda: single.embed(image).data, repeats)
    rows.append(("vfm-features filters (1 thread)", out.shape[0], t))
    if importlib.util.find_spec("fastfilters2") is not None:
        out, t = _best_of(lambda: fastfilters2_filters(image), repeats)
        rows.append(("fastfilters2 (7 features per scale)", out.shape[0], t))
    else:
        log("  fastfilters2 is not installed: pip install fastfilters2")
    out, t = _best_of(lambda: plain_filters(image), repeats)
    rows.append(("plain scipy/scikit-image (napari-style)", out.shape[0], t))
    return rows


def table(rows, size: int) -> str:
    base = rows[0][2]
    lines = [f"{'implementation, ' + str(size) + 'x' + str(size) + ' image, sigmas ' + str(list(SIGMAS)):<58} "
             f"{'channels':>8} {'s':>7} {'ms/channel':>10} {'time / ours':>11}"]
    for name, channels, t in rows:
        lines.append(f"{name:<58} {channels:>8} {t:>7.3f} {1000 * t / channels:>10.1f} {t / base:>10.2f}x")
    return "\n".join(lines)
