"""A fitted random forest as a torch module built from its checked node arrays (exportable to ONNX).

The forest's arrays (:func:`vfm_features.forest_to_arrays`,
checked by :func:`vfm_features.check_forest_arrays`) become
padded per-tree tables; every row walks all trees at once for as many steps as the
deepest tree has levels (a leaf points to itself, so walks that end early stay
put). The graph has only Gather, LessOrEqual and Where: no ``ai.onnx.ml`` operator,
no loop, any number of rows.

Agreement with scikit-learn: scikit-learn compares float32 features with float64
thresholds; each threshold here is the largest float32 not above it, which sends
every float32 value the same way. Leaf class distributions are normalised as
``DecisionTreeClassifier.predict_proba`` does and averaged in float32 (scikit-learn
sums in float64: the probabilities differ by about 1e-7).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import vfm_features as vf

TREE_LEAF = -1  # scikit-learn's marker of a leaf in children_left / children_right

__all__ = ["EXPORTABLE_HEADS", "check_forest_head", "float32_thresholds", "forest_module"]

EXPORTABLE_HEADS = ("rf", "rf-onnx")


def check_forest_head(classifier: Any) -> Any:
    """The fitted scikit-learn forest of ``classifier``'s head; InputError when it is unfitted or not a forest."""
    from sklearn.ensemble import RandomForestClassifier

    
    head = getattr(classifier, "head_", None)
    if head is None:
        raise vf.InputError("Cannot package this classifier as a bioimage.io model: the classifier is not fitted; "
                         "call fit() first.")
    forest = getattr(head, "forest_", None)
    if not isinstance(forest, RandomForestClassifier) or getattr(forest, "n_outputs_", 1) != 1:
        raise vf.InputError(f"Cannot package this classifier as a bioimage.io model: the head {type(head).__name__} "
                         f"cannot be exported: only the random-forest heads {EXPORTABLE_HEADS} are written as a "
                         "graph so far (the attentive probes deap/obap/hybrid read image patches and sampled cells "
                         "that have no exporter yet).")
    return forest


def float32_thresholds(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold (so ``x <= t32`` iff ``x <= t`` for float32 ``x``)."""
    t32 = threshold.astype(np.float32)
    above = t32.astype(np.float64) > threshold
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def _tables(forest: Any) -> tuple[dict[str, np.ndarray], int]:
    """Padded (trees, nodes) tables of a fitted forest and the depth of its deepest tree."""
    arrays = vf.forest_to_arrays(forest)
    trees = vf.check_forest_arrays(arrays, int(forest.n_features_in_))
    T, M = len(trees), max(stop - start for start, stop, _ in trees)
    K = arrays["value"].shape[1]
    left = np.zeros((T, M), np.int64)
    right = np.zeros((T, M), np.int64)
    feature = np.zeros((T, M), np.int64)
    threshold = np.zeros((T, M), np.float32)
    value = np.zeros((T, M, K), np.float32)
    for t, (start, stop, _) in enumerate(trees):
        n = stop - start
        lo, ro = arrays["children_left"][start:stop], arrays["children_right"][start:stop]
        leaf = lo == TREE_LEAF
        own = np.arange(n)
        left[t, :n] = np.where(leaf, own, lo)
        right[t, :n] = np.where(leaf, own, ro)
        feature[t, :n] = np.where(leaf, 0, arrays["feature"][start:stop])
        threshold[t, :n] = np.where(leaf, 0, float32_thresholds(arrays["threshold"][start:stop]))
        counts = arrays["value"][start:stop]
        total = counts.sum(axis=1, keepdims=True)
        value[t, :n] = (counts / np.where(total == 0, 1.0, total)).astype(np.float32)
    offset = (np.arange(T, dtype=np.int64) * M)[None, :]
    tables = {"left": left.ravel(), "right": right.ravel(), "feature": feature.ravel(),
              "threshold": threshold.ravel(), "value": value.reshape(T * M, K), "offset": offset}
    return tables, max(depth for _, _, depth in trees)


def forest_module(forest: Any) -> Any:
    """A torch module: (N, F) float32 rows -> (N, K) class probabilities of the fitted ``forest``."""
    import torch

    class _TreeEnsemble(torch.nn.Module):
        def __init__(self, tables: dict[str, np.ndarray], depth: int) -> None:
            super().__init__()
            for name, array in tables.items():
                self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array)))
            self.depth = int(depth)
            self.n_trees = int(tables["offset"].shape[1])

        def forward(self, rows: torch.Tensor) -> torch.Tensor:
            node = torch.zeros_like(rows[:, :1], dtype=torch.int64).expand(-1, self.n_trees) + self.offset
            for _ in range(self.depth):
                x = torch.gather(rows, 1, self.feature[node])
                local = torch.where(x <= self.threshold[node], self.left[node], self.right[node])
                node = local + self.offset
            return self.value[node].sum(dim=1) / float(self.n_trees)

    tables, depth = _tables(forest)
    return _TreeEnsemble(tables, depth).eval()
