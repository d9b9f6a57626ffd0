"""A fitted random forest as plain numeric arrays, and back: the forest's file format.

A forest's prediction needs, per tree node, the two child indices, the split
feature and threshold, and the class distribution of the leaves. Those arrays are
all a classifier file stores for a forest (as ``.npy`` members read with
``allow_pickle=False``), so loading one cannot run code: there is no general
deserialiser on this path, only numbers that :func:`forest_from_arrays` checks
before it rebuilds the scikit-learn trees:

* every internal node's children have higher indices than the node itself and
  lie inside its tree, and every node but the root has exactly one parent (so
  each tree is a tree and every walk down it ends);
* split features lie in ``[0, n_features)`` and thresholds are finite;
* leaf values are finite, non-negative, one column per class.

scikit-learn's tree walk has no bounds checks of its own, so these checks are
what keeps a crafted file from reading outside its arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm_features.errors import InputError

TREE_LEAF = -1
TREE_UNDEFINED = -2
MAX_TREES = 100_000
ARRAYS = ("node_counts", "children_left", "children_right", "feature", "threshold", "missing_go_to_left",
          "value", "classes")


def forest_to_arrays(forest: Any) -> dict[str, np.ndarray]:
    """The arrays that describe a fitted single-output scikit-learn forest classifier."""
    trees = [e.tree_ for e in forest.estimators_]
    if getattr(forest, "n_outputs_", 1) != 1:
        raise InputError("Only single-output forests can be saved.")
    nodes = [t.__getstate__()["nodes"] for t in trees]
    values = [t.value[:, 0, :] for t in trees]
    return {
        "node_counts": np.array([t.node_count for t in trees], np.int64),
        "children_left": np.concatenate([n["left_child"] for n in nodes]).astype(np.int64),
        "children_right": np.concatenate([n["right_child"] for n in nodes]).astype(np.int64),
        "feature": np.concatenate([n["feature"] for n in nodes]).astype(np.int64),
        "threshold": np.concatenate([n["threshold"] for n in nodes]).astype(np.float64),
        "missing_go_to_left": np.concatenate([n["missing_go_to_left"] if "missing_go_to_left" in n.dtype.names
                                              else np.zeros(len(n), np.uint8) for n in nodes]).astype(np.uint8),
        "value": np.concatenate(values).astype(np.float64),
        "classes": np.asarray(forest.classes_),
    }


def _bad(what: str) -> InputError:
    return InputError(f"The forest in this file is damaged or crafted: {what}; refusing to load it.")


def check_forest_arrays(arrays: dict[str, np.ndarray], n_features: int) -> list[tuple[int, int, int]]:
    """Validate forest arrays; returns (start, stop, depth) of each tree's nodes. Raises InputError."""
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise _bad(f"arrays {missing} are missing")
    counts = arrays["node_counts"]
    if counts.ndim != 1 or counts.dtype.kind not in "iu" or not 1 <= len(counts) <= MAX_TREES:
        raise _bad("node_counts is not a list of at most 100000 tree sizes")
    if counts.min() < 1:
        raise _bad("a tree has no nodes")
    total = int(counts.sum())
    for key in ("children_left", "children_right", "feature", "threshold", "missing_go_to_left"):
        if arrays[key].shape != (total,):
            raise _bad(f"{key} has shape {arrays[key].shape}, expected ({total},)")
    for key in ("children_left", "children_right", "feature"):
        if arrays[key].dtype.kind not in "iu":
            raise _bad(f"{key} is not an integer array")
    classes, value = arrays["classes"], arrays["value"]
    if classes.ndim != 1 or len(classes) < 2 or classes.dtype.kind not in "iuf":
        raise _bad("classes must list at least two class ids")
    if value.shape != (total, len(classes)) or value.dtype.kind != "f":
        raise _bad(f"value has shape {value.shape}, expected ({total}, {len(classes)})")
    if not np.isfinite(value).all() or value.min() < 0:
        raise _bad("leaf values are not finite and non-negative")
    if not isinstance(n_features, int) or n_features < 1:
        raise _bad(f"n_features={n_features!r}")
    left, right = arrays["children_left"].astype(np.int64), arrays["children_right"].astype(np.int64)
    feature, threshold = arrays["feature"].astype(np.int64), arrays["threshold"]
    trees = []
    start = 0
    for n in counts.tolist():
        stop = start + n
        lo, ro, fe, th = left[start:stop], right[start:stop], feature[start:stop], threshold[start:stop]
        leaf = lo == TREE_LEAF
        idx = np.arange(n)
        if not np.array_equal(leaf, ro == TREE_LEAF):
            raise _bad("a node has one child")
        inner = ~leaf
        if np.any((lo[inner] <= idx[inner]) | (lo[inner] >= n) | (ro[inner] <= idx[inner]) | (ro[inner] >= n)):
            raise _bad("a child index points outside its tree or backwards")
        parents = np.bincount(np.concatenate([lo[inner], ro[inner]]), minlength=n)
        if parents[0] != 0 or np.any(parents[1:] != 1):
            raise _bad("the nodes do not form a tree")
        if np.any((fe[inner] < 0) | (fe[inner] >= n_features)) or np.any(fe[leaf] != TREE_UNDEFINED):
            raise _bad(f"a split feature lies outside [0, {n_features})")
        if not np.isfinite(th[inner]).all():
            raise _bad("a split threshold is not finite")
        parent = np.full(n, -1, np.int64)
        parent[lo[inner]] = idx[inner]
        parent[ro[inner]] = idx[inner]
        depth, up = 0, parent[leaf]  # walk all leaves up at once; ends because parents have lower indices
        while np.any(up >= 0):
            depth += 1
            up = np.where(up >= 0, parent[np.maximum(up, 0)], -1)
        trees.append((start, stop, depth))
        start = stop
    return trees


def forest_from_arrays(arrays: dict[str, np.ndarray], n_features: int, params: dict[str, Any]) -> Any:
    """A scikit-learn ``RandomForestClassifier`` rebuilt from checked arrays (see :func:`check_forest_arrays`)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier
    from sklearn.tree._tree import NODE_DTYPE, Tree

    trees = check_forest_arrays(arrays, n_features)
    classes = arrays["classes"]
    K = len(classes)
    forest = RandomForestClassifier(**params)
    estimators = []
    for start, stop, depth in trees:
        n = stop - start
        nodes = np.zeros(n, dtype=NODE_DTYPE)
        nodes["left_child"] = arrays["children_left"][start:stop]
        nodes["right_child"] = arrays["children_right"][start:stop]
        nodes["feature"] = arrays["feature"][start:stop]
        nodes["threshold"] = arrays["threshold"][start:stop]
        if "missing_go_to_left" in NODE_DTYPE.names:
            nodes["missing_go_to_left"] = arrays["missing_go_to_left"][start:stop]
        tree = Tree(n_features, np.array([K], dtype=np.intp), 1)
        tree.__setstate__({"max_depth": depth, "node_count": n, "nodes": nodes,
                           "values": np.ascontiguousarray(arrays["value"][start:stop, None, :], dtype=np.float64)})
        est = DecisionTreeClassifier(max_depth=params.get("max_depth"), max_features=params.get("max_features"),
                                     min_samples_leaf=params.get("min_samples_leaf", 1))
        est.tree_ = tree
        est.n_features_in_ = n_features
        est.n_outputs_ = 1
        est.classes_ = np.arange(K, dtype=np.float64)
        est.n_classes_ = K
        est.max_features_ = n_features
        estimators.append(est)
    forest.estimators_ = estimators
    forest.estimator_ = DecisionTreeClassifier()
    forest.classes_ = classes.copy()
    forest.n_classes_ = K
    forest.n_outputs_ = 1
    forest.n_features_in_ = n_features
    return forest
