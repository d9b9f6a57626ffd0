"""Drawing a training budget from sparse labels, balanced across classes.

Inverse class-frequency weighting is done by the draw itself: every class gets an
equal share of the budget, and what a small class cannot use goes to the others
("water filling"). A budget larger than the labels available uses them all.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vfm_features.errors import InputError
from vfm_features.validation import check_budget


def class_quotas(counts: np.ndarray, budget: int) -> np.ndarray:
    """Split ``budget`` over classes with ``counts`` available as evenly as possible."""
    counts = np.asarray(counts, dtype=np.int64)
    quotas = np.zeros_like(counts)
    remaining = int(budget)
    open_ = counts > 0
    while remaining > 0 and open_.any():
        share = remaining // int(open_.sum())
        if share == 0:
            # fewer left than open classes: one more each for the smallest classes first
            for i in np.argsort(counts - quotas):
                if remaining == 0:
                    break
                if open_[i]:
                    quotas[i] += 1
                    remaining -= 1
                    open_[i] = quotas[i] < counts[i]
            break
        take = np.where(open_, np.minimum(share, counts - quotas), 0)
        quotas += take
        remaining -= int(take.sum())
        open_ = quotas < counts
    return quotas


def sample_balanced(y: np.ndarray, budget: int | None, *, random_state=None) -> np.ndarray:
    """Indices into ``y`` (class per sample) drawn to ``budget`` with equal shares per class."""
    budget = check_budget(budget)
    y = np.asarray(y)
    if budget is None or budget >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(random_state)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    if budget < len(classes):
        raise InputError(
            f"budget={budget} is smaller than the {len(classes)} labelled classes; every class needs at least "
            f"one sample: use a budget of at least {len(classes)}.")
    quotas = class_quotas(counts, budget)
    # a random key per sample; within each class keep the ``quota`` smallest keys
    keys = rng.random(len(y))
    order = np.lexsort((keys, inverse))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(len(y)) - np.repeat(starts, counts)
    chosen = np.flatnonzero(rank < quotas[inverse])
    return chosen


def sample_pixels(labels: np.ndarray | Sequence[np.ndarray], budget: int | None = 10_000, *,
                  random_state=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw labelled pixels from one or several label images (0 = unlabelled).

    Returns ``(image_index, coords, classes)``: the image each pixel comes from,
    its (y, x) coordinates and its class; at most ``budget`` pixels in total,
    balanced over classes, deterministic for a given ``random_state``.
    """
    label_list = [labels] if isinstance(labels, np.ndarray) else list(labels)
    idx_parts, coord_parts, y_parts = [], [], []
    for i, lab in enumerate(label_list):
        lab = np.asarray(lab)
        yy, xx = np.nonzero(lab)
        idx_parts.append(np.full(len(yy), i, dtype=np.int64))
        coord_parts.append(np.stack([yy, xx], axis=1))
        y_parts.append(lab[yy, xx].astype(np.int64))
    image_index = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
    coords = np.concatenate(coord_parts) if coord_parts else np.zeros((0, 2), np.int64)
    y = np.concatenate(y_parts) if y_parts else np.zeros(0, np.int64)
    keep = sample_balanced(y, budget, random_state=random_state)
    return image_index[keep], coords[keep], y[keep]


def sample_objects(object_classes: dict[int, int], budget: int | None = None, *,
                   random_state=None) -> dict[int, int]:
    """Draw at most ``budget`` labelled objects (id -> class), balanced over classes."""
    ids = np.array(sorted(object_classes), dtype=np.int64)
    y = np.array([object_classes[i] for i in ids], dtype=np.int64)
    keep = sample_balanced(y, budget, random_state=random_state)
    return {int(ids[k]): int(y[k]) for k in np.sort(keep)}
