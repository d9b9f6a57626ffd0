"""The label-efficiency protocol: budgets, seeded k-fold splits and nested training draws.

Splits are made over *units* so that a test fold shares nothing with training:

* ``images`` - with at least ``n_folds`` images, whole images go to one fold;
* ``blocks`` - pixel task with fewer images: square blocks of ``block`` x ``block``
  pixels go to one fold (neighbouring pixels are nearly identical, so splitting
  single pixels would put near-copies of test pixels into training);
* ``objects`` - object task with fewer images: single objects, stratified by
  class so that every fold holds about the same share of every class.

Every split is a function of ``(seed, repeat)`` only, and the training draw of
a fold of ``(seed, repeat, fold)`` only: every extractor, head and budget sees the
same folds, and a smaller budget's draw is a subset of a larger one's (the draw
ranks the training samples once and keeps the first ones per class).

Budgets end where the data does: every budget at or above the smallest training
pool of any fold would draw every training sample, so all of them run once, as
``None`` ("all"; :func:`effective_budgets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vfm_features.errors import InputError
from vfm_features.features.sampling import sample_balanced
from vfm_features.validation import check_budget

PIXEL_BUDGETS = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
OBJECT_BUDGETS = (25, 50, 100, 200, 500, 1_000, 2_000, 5_000, None)  # None = all labelled objects


@dataclass(frozen=True)
class Protocol:
    """How a dataset is split and how many times (the seed protocol: 5 folds x 5 repeats)."""

    n_folds: int = 5
    n_repeats: int = 5
    seed: int = 0
    block: int = 32  # side in pixels of the blocks that pixel folds are made of (fewer images than folds)

    def __post_init__(self) -> None:
        if self.n_folds < 2:
            raise InputError(f"n_folds must be at least 2; got {self.n_folds}.")
        if self.n_repeats < 1:
            raise InputError(f"n_repeats must be at least 1; got {self.n_repeats}.")
        if self.block < 1:
            raise InputError(f"block must be a positive number of pixels; got {self.block}.")

    def split_mode(self, task: str, n_images: int) -> str:
        """'images' with at least ``n_folds`` images, else 'blocks' (pixels) or 'objects'."""
        if n_images >= self.n_folds:
            return "images"
        return "blocks" if task == "pixels" else "objects"

    def rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *keys])


def group_folds(groups: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index per sample: the distinct ``groups`` are shuffled and dealt round robin."""
    groups = np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) < n_folds:
        raise InputError(f"Only {len(uniq)} split unit(s) for {n_folds} folds; use fewer folds "
                         "(--folds) or, for pixels in few images, smaller blocks (--block).")
    fold_of_group = np.empty(len(uniq), np.int64)
    fold_of_group[rng.permutation(len(uniq))] = np.arange(len(uniq)) % n_folds
    return fold_of_group[inverse.ravel()]


def stratified_folds(y: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index per sample, dealing every class round robin from a random fold onwards."""
    y = np.asarray(y)
    if len(y) < n_folds:
        raise InputError(f"Only {len(y)} labelled object(s) for {n_folds} folds; use fewer folds (--folds).")
    folds = np.empty(len(y), np.int64)
    start = 0
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(len(idx))]
        folds[idx] = (start + np.arange(len(idx))) % n_folds
        start = (start + len(idx)) % n_folds
    return folds


def block_groups(image_index: np.ndarray, coords: np.ndarray, block: int) -> np.ndarray:
    """A group id per pixel: the ``block`` x ``block`` tile of its image that it lies in."""
    coords = np.asarray(coords, dtype=np.int64)
    by, bx = coords[:, 0] // block, coords[:, 1] // block
    # unique ids without knowing image sizes: (image, by, bx) packed into one integer
    return (np.asarray(image_index, np.int64) << 42) | (by << 21) | bx


def assign_folds(protocol: Protocol, mode: str, repeat: int, *, image_index: np.ndarray,
                 y: np.ndarray, coords: np.ndarray | None = None) -> np.ndarray:
    """Fold index of every sample for ``repeat`` under ``mode`` ('images', 'blocks' or 'objects')."""
    rng = protocol.rng(repeat)
    if mode == "images":
        return group_folds(image_index, protocol.n_folds, rng)
    if mode == "blocks":
        if coords is None:
            raise InputError("Block folds need the pixel coordinates.")
        return group_folds(block_groups(image_index, coords, protocol.block), protocol.n_folds, rng)
    if mode == "objects":
        return stratified_folds(y, protocol.n_folds, rng)
    raise InputError(f"Unknown split mode {mode!r}; use 'images', 'blocks' or 'objects'.")


def training_draw(y_train: np.ndarray, budget: int | None, protocol: Protocol, repeat: int,
                  fold: int) -> np.ndarray:
    """Indices into ``y_train`` of at most ``budget`` samples, balanced over classes, nested in ``budget``."""
    seed = int(protocol.rng(repeat, fold, 1).integers(2**31))
    return np.sort(sample_balanced(y_train, budget, random_state=seed))


def check_budgets(budgets: Sequence[int | None], what: str) -> list[int | None]:
    """Positive whole numbers (None = all), sorted with None last, duplicates removed."""
    out: list[int | None] = []
    for b in budgets:
        b = check_budget(b, f"{what} budget")
        if b not in out:
            out.append(b)
    if not out:
        raise InputError(f"Give at least one {what} budget.")
    return sorted([b for b in out if b is not None]) + ([None] if None in out else [])


def effective_budgets(budgets: Sequence[int | None], pool: int) -> tuple[list[int | None], list[int]]:
    """The budgets to run when the smallest training pool holds ``pool`` samples, and those that were folded into "all".

    Budgets below ``pool`` run as given; every budget at or above it (and None)
    becomes one None run, last, since each of them would draw every sample.
    """
    budgets = check_budgets(budgets, "training")
    below = [b for b in budgets if b is not None and b < pool]
    clipped = [b for b in budgets if b is not None and b >= pool]
    return below + ([None] if clipped or None in budgets else []), clipped
