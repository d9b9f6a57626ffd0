"""Which labels a probe trains and validates on: the seed's pixel budget, the validation split, object weights.

The classifiers already draw their training budget (``features.sampling``); the
probes' ``budget`` option applies the seed's rule on top of that, for users who
want the seed's protocol. Its natural home is ``features/sampling.py`` next to
``sample_balanced`` (see docs/probes.md); it lives here until the classifiers
offer it.
"""

from __future__ import annotations

import warnings

import numpy as np

from vfm_features.features.sampling import class_quotas, sample_balanced


class LabelBudgetWarning(UserWarning):
    """A probe's ``budget`` asks for more labels than there are; all of them are used."""


def seed_pixel_budget(image_index: np.ndarray, y: np.ndarray, budget: int | None, *,
                      random_state=None) -> np.ndarray:
    """Indices of the labelled pixels drawn by the seed's rule (sorted).

    A budget smaller than the number of images takes one pixel from each of
    ``budget`` random images; otherwise the budget is split over the images as
    evenly as their labels allow and drawn class-balanced within each image. A
    budget larger than the labels warns (:class:`LabelBudgetWarning`) and uses all.
    """
    image_index, y = np.asarray(image_index), np.asarray(y)
    n = len(y)
    if budget is None:
        return np.arange(n)
    if budget >= n:
        if budget > n:
            warnings.warn(f"The probe's budget {budget} is larger than the {n} labelled pixels it was given; it "
                          "uses all of them. Label more pixels or lower the budget.", LabelBudgetWarning,
                          stacklevel=3)
        return np.arange(n)
    rng = np.random.default_rng(random_state)
    images, inverse, counts = np.unique(image_index, return_inverse=True, return_counts=True)
    if budget < len(images):
        chosen = rng.choice(len(images), budget, replace=False)
        return np.sort([rng.choice(np.flatnonzero(inverse == i)) for i in chosen])
    keep = []
    for i, quota in enumerate(class_quotas(counts, budget)):
        members = np.flatnonzero(inverse == i)
        keep.append(members[sample_balanced(y[members], int(quota), random_state=rng.integers(2**31))])
    return np.sort(np.concatenate(keep))


def validation_split(groups: np.ndarray, y: np.ndarray, fraction: float, *,
                     random_state=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(train, validation) indices: whole ``groups`` (spatial blocks) held out, about ``fraction`` of the labels.

    Holding out whole blocks keeps validation pixels away from their training
    neighbours. Every class keeps at least one training label; when blocks cannot
    give that, single labels are held out per class instead. No validation (None)
    with ``fraction == 0``, fewer than 10 labels, or a class with a single label.
    """
    y = np.asarray(y)
    n = len(y)
    all_idx = np.arange(n)
    classes, counts = np.unique(y, return_counts=True)
    if fraction <= 0 or n < 10 or counts.min() < 2:
        return all_idx, None
    rng = np.random.default_rng(random_state)
    target = max(1, int(round(fraction * n)))
    unique_groups, inverse = np.unique(np.asarray(groups), return_inverse=True)
    for _ in range(8):
        order = rng.permutation(len(unique_groups))
        sizes = np.bincount(inverse, minlength=len(unique_groups))[order]
        take = order[: int(np.searchsorted(np.cumsum(sizes), target)) + 1]
        val = np.isin(inverse, take)
        if val.all() or len(np.unique(y[~val])) < len(classes) or len(np.unique(y[val])) < 2:
            continue
        return all_idx[~val], all_idx[val]
    val = np.zeros(n, bool)
    for c, count in zip(classes, counts):
        members = np.flatnonzero(y == c)
        k = min(count - 1, max(1, int(round(fraction * count))))
        val[rng.choice(members, k, replace=False)] = True
    return all_idx[~val], all_idx[val]


def inverse_frequency(y: np.ndarray) -> np.ndarray:
    """Sampling probabilities proportional to 1 / (labels of the sample's class): every class drawn equally often."""
    _, inverse, counts = np.unique(np.asarray(y), return_inverse=True, return_counts=True)
    p = 1.0 / counts[inverse]
    return p / p.sum()


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency loss weights (n_classes,) float32 with mean 1 over the classes present."""
    counts = np.bincount(np.asarray(y), minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    w *= (counts > 0).sum() / max(w.sum(), 1e-12)
    return w.astype(np.float32)
