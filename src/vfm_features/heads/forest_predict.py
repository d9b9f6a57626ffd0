"""The tree-ensemble head shared by the pixel and object classifiers, and its fast predictor.

Default forest
    A scikit-learn random forest of 64 trees, at most 10 levels deep, balanced class
    weights, sqrt(F) candidate features per split, fitted with the library's thread
    budget; the pixel head fits each tree on at most 4096 of the labels (a bootstrap of
    that size, ``MAX_SAMPLES``), so a retrain stops growing with the number of labels.
    On the benchmark data (``benchmarks/bench_forest.py``, ``docs/performance.md``: the
    synthetic scenes and a real histology image with sparse strokes) its macro-F1 is
    within 0.01 of the reference forest (200 trees of depth 10), and with a working
    grid at half the view's resolution the retrain + predict loop is about 10x faster
    than the reference on all cores. Fewer trees would be as fast but lost up to 0.02
    macro-F1 at 100 labels; extremely randomised trees lost up to 0.02 on filter
    features.
    ``make_forest`` returns a plain scikit-learn estimator; classifier files store
    it as its node arrays (:mod:`vfm_features.heads.forest_arrays`).

Fast predictor
    :func:`predict_proba_float32` walks the fitted trees block by block: a block of
    rows small enough to stay in the CPU cache goes through every tree before the
    next block is read, and blocks run in threads (tree traversal releases the GIL).
    It calls each tree's own ``tree_.apply`` and adds the same leaf values in the
    same order as ``predict_proba`` with ``n_jobs=1``, so the probabilities are
    bit-for-bit scikit-learn's; there is nothing to build, cache or save. Any other
    estimator (or a multi-output forest) goes through its own ``predict_proba``.

Reading and predicting together
    :func:`predict_proba_grid` asks a reader for the features of a few rows of a
    grid at a time (a few MiB) and sends them through every tree at once, in
    threads, so a view's full feature map (1 GiB for 1024 x 1024 x 256) is never
    written to memory and read back. Threads take chunks from a shared queue, so
    a thread that another program slows down simply takes fewer of them. The
    thread count follows the library's policy (:mod:`vfm_features.threads`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from vfm_features.threads import n_threads, native_threads

N_ESTIMATORS = 64
MAX_DEPTH = 10
MAX_SAMPLES = 4096  # labelled samples each tree of the pixel forest is fitted on, at most (None: all)
BLOCK_BYTES = 1 << 21  # rows per block: about 2 MiB of features, so a block stays in cache
READ_BYTES = 1 << 23  # features read at once by predict_proba_grid (a few blocks)


def make_forest(*, n_estimators: int = N_ESTIMATORS, max_depth: int | None = MAX_DEPTH,
                min_samples_leaf: int = 1, max_features: str | float | int | None = "sqrt",
                max_samples: int | None = None, n_jobs: int | None = -1, random_state=None) -> RandomForestClassifier:
    """The library's forest: a random forest with balanced class weights on all cores by default.

    Balanced weights make rare classes count as much as common ones.
    """
    return RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, min_samples_leaf=min_samples_leaf,
        max_features=max_features, max_samples=max_samples, class_weight="balanced", n_jobs=n_jobs,
        random_state=random_state)


def reference_forest(*, n_estimators: int = 200, max_depth: int | None = 10, n_jobs: int | None = None,
                     random_state=None) -> RandomForestClassifier:
    """The seed's reference: a random forest of 200 trees of depth 10 (for comparisons and benchmarks)."""
    return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, class_weight="balanced",
                                  n_jobs=n_jobs, random_state=random_state)


def supports_fast_path(forest) -> bool:
    """True for fitted single-output scikit-learn forest classifiers (random forest, extra trees)."""
    return (isinstance(forest, (RandomForestClassifier, ExtraTreesClassifier)) and hasattr(forest, "estimators_")
            and getattr(forest, "n_outputs_", 1) == 1
            and all(hasattr(e, "tree_") for e in forest.estimators_))


def _trees(forest) -> list:
    n_classes = int(forest.n_classes_)
    return [(e.tree_, e.tree_.value[:, 0, :n_classes]) for e in forest.estimators_]


def _accumulate(trees: list, X: np.ndarray, acc: np.ndarray, rows: int) -> None:
    """``acc += sum of leaf values`` for ``X``, block by block (every tree sees a block before the next is read)."""
    for s in range(0, X.shape[0], rows):
        xb = X[s:s + rows]
        a = acc[s:s + len(xb)]
        for tree, value in trees:
            a += value[tree.apply(xb)]


def _run_chunks(work: Callable[[int, int], None], n: int, chunk: int, threads: int) -> None:
    """``work(start, stop)`` over ``range(n)`` in chunks, by ``threads`` threads taking chunks as they finish."""
    starts = list(range(0, n, chunk))
    threads = min(threads, len(starts))
    if threads <= 1:
        for s in starts:
            work(s, min(n, s + chunk))
        return
    with native_threads(1), ThreadPoolExecutor(threads) as pool:  # one level of threads
        list(pool.map(lambda s: work(s, min(n, s + chunk)), starts))


def blocked_predict_proba(forest, X: np.ndarray, *, n_jobs: int | None = None,
                          block_rows: int | None = None) -> np.ndarray:
    """``forest.predict_proba(X)`` (float64), computed block by block in threads; same values."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != forest.n_features_in_:
        raise ValueError(f"X has shape {X.shape}; the forest expects (n, {forest.n_features_in_}) features.")
    trees = _trees(forest)
    out = np.zeros((X.shape[0], int(forest.n_classes_)), np.float64)
    rows = block_rows or max(64, BLOCK_BYTES // max(1, 4 * X.shape[1]))
    threads = n_threads(n_jobs if n_jobs is not None else forest.n_jobs)

    def work(start: int, stop: int) -> None:
        _accumulate(trees, X[start:stop], out[start:stop], rows)

    _run_chunks(work, X.shape[0], 4 * rows, threads)
    out /= len(trees)
    return out


def predict_proba_grid(forest, read: Callable[[int, int], np.ndarray], n_rows: int, n_cols: int, *,
                       n_jobs: int | None = None) -> np.ndarray:
    """(K, n_rows, n_cols) float32 probabilities of a grid; ``read(start, stop)`` gives its features (F, rows, n_cols).

    Same values as ``predict_proba_float32`` on the whole feature map (bit for
    bit); the map is read a few rows at a time and never held whole. The result
    is pixel-major memory seen as (K, rows, cols).
    """
    F, K = int(forest.n_features_in_), int(forest.n_classes_)
    trees = _trees(forest)
    out = np.empty((n_rows, n_cols, K), np.float32)
    block = max(64, BLOCK_BYTES // (4 * F))
    chunk = max(1, READ_BYTES // (4 * F * max(1, n_cols)))

    def work(start: int, stop: int) -> None:
        feats = read(start, stop)
        if feats.shape != (F, stop - start, n_cols):
            raise ValueError(f"The reader gave features of shape {feats.shape}; the forest expects "
                             f"({F}, {stop - start}, {n_cols}).")
        X = np.ascontiguousarray(np.moveaxis(feats, 0, -1).reshape(-1, F), dtype=np.float32)
        acc = np.zeros((X.shape[0], K), np.float64)
        _accumulate(trees, X, acc, block)
        acc /= len(trees)
        out[start:stop] = acc.reshape(stop - start, n_cols, K)

    _run_chunks(work, n_rows, chunk, n_threads(n_jobs if n_jobs is not None else forest.n_jobs))
    return np.moveaxis(out, -1, 0)


def predict_proba_float32(forest, X: np.ndarray, *, n_jobs: int | None = None) -> np.ndarray:
    """Class probabilities (n, K) as float32, through the fast path when ``forest`` supports it.

    ``n_jobs`` (threads; default: the forest's own ``n_jobs``) applies to the fast path.
    """
    if supports_fast_path(forest):
        proba = blocked_predict_proba(forest, X, n_jobs=n_jobs)
    else:
        proba = forest.predict_proba(np.asarray(X, dtype=np.float32))
    return np.asarray(proba).astype(np.float32, copy=False)
