"""One trained and scored head of an evaluation: a row of its CSV."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalRow:
    """One trained and scored head: a row of the evaluation CSV."""

    task: str
    extractor: str
    head: str
    budget: int | None  # None = all labels
    n_train: int
    n_test: int
    repeat: int
    fold: int
    split: str  # images, blocks or objects
    n_features: int
    n_classes_test: int
    macro_f1: float
    train_s: float
    predict_s: float
    upsampler: str = "-"  # how a pixel extractor's embedding was read ('-' for object extractors)
