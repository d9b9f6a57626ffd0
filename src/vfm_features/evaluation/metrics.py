"""Scores: macro-averaged F1 over classes, per pixel or per object."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, *, ignore: int | None = 0) -> float:
    """Macro F1 over the classes present in ``y_true`` (pixels equal to ``ignore`` are skipped).

    Averaging over the classes present (not over all classes ever seen) keeps a
    fold that lacks a class from scoring that class as 0.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in size.")
    if ignore is not None:
        keep = y_true != ignore
        y_true, y_pred = y_true[keep], y_pred[keep]
    if y_true.size == 0:
        return float("nan")
    labels = np.unique(y_true)
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
