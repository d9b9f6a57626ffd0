"""The tree-ensemble head shared by the pixel and object classifiers, and its fast predictor.

Default forest
    A scikit-learn random forest of 64 trees, at most 10 levels deep, balanced class
    weights, sqrt(F) candidate features per split, fitted on all cores. It is the
    seed's reference forest (200 trees of depth 10) with fewer trees: on the
    benchmark data (``benchmarks/``, ``docs/performance.md``) its macro-F1 is within
    0.01 of the reference while a retrain costs about a third and a prediction
    about a third (a sixth together with the fast predictor). Extremely randomised
    trees fit faster but lost up to 0.01 macro-F1 on 256-channel embeddings.
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
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from vfm_features.threads import n_threads

N_ESTIMATORS = 64
MAX_DEPTH = 10
BLOCK_BYTES = 1 << 21  # rows per block: about 2 MiB of features, so a block stays in cache


def make_forest(*, n_estimators: int = N_ESTIMATORS, max_depth: int | None = MAX_DEPTH,
                min_samples_leaf: int = 1, max_features: str | float | int | None = "sqrt",
                n_jobs: int | None = -1, random_state=None) -> RandomForestClassifier:
    """The library's forest: a random forest with balanced class weights on all cores by default.

    Balanced weights make rare classes count as much as common ones.
    """
    return RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, min_samples_leaf=min_samples_leaf,
        max_features=max_features, class_weight="balanced", n_jobs=n_jobs, random_state=random_state)


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


def blocked_predict_proba(forest, X: np.ndarray, *, n_jobs: int | None = None,
                          block_rows: int | None = None) -> np.ndarray:
    """``forest.predict_proba(X)`` (float64), computed block by block in threads; same values."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != forest.n_features_in_:
        raise ValueError(f"X has shape {X.shape}; the forest expects (n, {forest.n_features_in_}) features.")
    n_classes = int(forest.n_classes_)
    trees = [(e.tree_, e.tree_.value[:, 0, :n_classes]) for e in forest.estimators_]
    out = np.zeros((X.shape[0], n_classes), np.float64)
    rows = block_rows or max(64, BLOCK_BYTES // max(1, 4 * X.shape[1]))

    def run(start: int, stop: int) -> None:
        for s in range(start, stop, rows):
            xb = X[s:min(stop, s + rows)]
            acc = out[s:s + len(xb)]
            for tree, value in trees:
                acc += value[tree.apply(xb)]

    threads = min(n_threads(n_jobs if n_jobs is not None else forest.n_jobs), -(-X.shape[0] // rows))
    if threads <= 1:
        run(0, X.shape[0])
    else:
        # contiguous slabs of whole blocks, one per thread
        n_blocks = -(-X.shape[0] // rows)
        edges = [min(X.shape[0], rows * (n_blocks * i // threads)) for i in range(threads + 1)]
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, edges[:-1], edges[1:]))
    out /= len(trees)
    return out


def predict_proba_float32(forest, X: np.ndarray, *, n_jobs: int | None = None) -> np.ndarray:
    """Class probabilities (n, K) as float32, through the fast path when ``forest`` supports it.

    ``n_jobs`` (threads; default: the forest's own ``n_jobs``) applies to the fast path.
    """
    if supports_fast_path(forest):
        proba = blocked_predict_proba(forest, X, n_jobs=n_jobs)
    else:
        proba = forest.predict_proba(np.asarray(X, dtype=np.float32))
    return np.asarray(proba).astype(np.float32, copy=False)
