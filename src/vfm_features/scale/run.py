"""Blockwise prediction of large images with a trained classifier, on Dask, resumable.

:func:`predict_pixels` writes a class map (and optionally probabilities) to an
OME-Zarr store block by block; :func:`predict_objects` classifies the objects of
an instance mask from per-object partial sums (feature sum, sum of squares,
min, max and pixel count per object and block), merged over all the blocks an
object touches, so objects cut by block borders get exactly their features.
Both skip blocks a previous run finished (see :mod:`vfm_features.scale.store`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vfm_features.classifiers.blocks import (aligned_halo, block_alignment, default_halo, predict_block,
                                             refuse_volumetric)
from vfm_features.errors import InputError
from vfm_features.features.partials import ObjectSums, finish_statistics
from vfm_features.features.source import embed_plane
from vfm_features.heads.base import ObjectSamples
from vfm_features.io import atomic_path
from vfm_features.validation import check_is_fitted

from . import store as S
from .plan import Block, plan_grid, read_block
from .schedulers import run_tasks
from .sources import LazyImage, open_image, reopen


@dataclass
class RunReport:
    """What a blockwise run did."""

    output: Path
    n_blocks: int
    computed: int  # blocks computed in this run (the others were done by an earlier one)
    seconds: float
    table: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def megapixels_per_second(self) -> float:
        return self.extra.get("megapixels", 0.0) / self.seconds if self.seconds else float("nan")


def _image(source: Any, axes: str | None) -> LazyImage:
    return source if isinstance(source, LazyImage) else open_image(source, axes=axes)


def _prepare(classifier: Any, kind: str) -> None:
    check_is_fitted(classifier, "head_")
    if classifier._kind != kind:
        raise InputError(f"This is a{'n object' if classifier._kind == 'object' else ' pixel'} classifier; use "
                         f"predict_{'objects' if classifier._kind == 'object' else 'pixels'}.")
    classifier._check_signature()  # builds the parts once, before any worker sees the classifier
    refuse_volumetric(classifier._components()[0])


def _record(classifier: Any, image: LazyImage, blocks: list[Block], block_shape: Any, halo: int,
            what: str) -> dict[str, Any]:
    return {"what": what, "signature": classifier.signature_, "classes": np.asarray(classifier.classes_).tolist(),
            "image": {"path": image.spec.path, "shape": list(image.shape), "dtype": str(image.dtype)},
            "block_shape": list(np.broadcast_to(block_shape, 2).tolist()), "halo": int(halo),
            "n_blocks": len(blocks)}


# -- pixels ----------------------------------------------------------------------------------------------------
def pixel_task(shared: tuple[Any, Any, Any], block: Block) -> int:
    classifier, source, out = shared
    data = read_block(reopen(source), block)
    proba = predict_block(classifier, data, block.region, axes="YXC")
    classes = np.asarray(classifier.classes_)[np.argmax(proba, axis=0)]
    S.write_block(out, block.core_slices, classes, proba if out.probabilities else None)
    S.mark_done(out, block.index)
    return block.index


def predict_pixels(classifier: Any, source: Any, output: str | Path, *, block_shape: Any = 1024,
                   halo: int | None = None, probabilities: bool = False, scheduler: Any = "threads",
                   num_workers: int | None = None, overwrite: bool = False, axes: str | None = None,
                   progress: Any = False, log: Callable[[str], Any] | None = None) -> RunReport:
    """Class map (and ``probabilities``) of a large image, written block by block to ``output`` (OME-Zarr)."""
    t0 = time.perf_counter()
    _prepare(classifier, "pixel")
    image = _image(source, axes)
    try:
        return _predict_pixels(classifier, image, output, block_shape, halo, probabilities, scheduler, num_workers,
                               overwrite, progress, log, t0)
    finally:
        if image is not source:
            image.close()


def _check_alignment(classifier: Any, block_shape: Any) -> None:
    """Refuse blocks whose origins would fall off the head's alignment (their results would depend on the cut)."""
    step = block_alignment(classifier)
    shape = tuple(int(s) for s in np.broadcast_to(block_shape, 2))
    if any(s % step for s in shape):
        raise InputError(f"block_shape={shape} does not suit this classifier's head, which reads a neighbourhood "
                         f"anchored on a {step}-pixel grid; use multiples of {step} pixels (e.g. 1024).")


def _predict_pixels(classifier, image, output, block_shape, halo, probabilities, scheduler, num_workers, overwrite,
                    progress, log, t0) -> RunReport:
    halo = default_halo(classifier) if halo is None else aligned_halo(classifier, halo)
    _check_alignment(classifier, block_shape)
    blocks = plan_grid(image.shape, block_shape, halo, pad=classifier.extractor_.spec.input_size is not None)
    record = _record(classifier, image, blocks, block_shape, halo, "pixels")
    size, units = image.pixel_size()
    out, _ = S.create_store(output, record=record, image_shape=image.shape,
                            block_shape=tuple(np.broadcast_to(block_shape, 2).tolist()),
                            n_classes=len(classifier.classes_), probabilities=probabilities, pixel_size=size,
                            units=units, overwrite=overwrite)
    todo = [b for b in blocks if not S.is_done(out, b.index)]
    run_tasks(pixel_task, (classifier, image.spec, out), todo, scheduler=scheduler, num_workers=num_workers,
              progress=progress, desc=f"{image.name}: blocks", log=log)
    S.finish(out)
    mp = image.shape[0] * image.shape[1] / 1e6
    return RunReport(Path(output), len(blocks), len(todo), time.perf_counter() - t0, extra={"megapixels": mp})


# -- objects ------------------------------------------------------------------------------------------------------
def _block_partials(classifier: Any, data: np.ndarray, block: Block, mask_core: np.ndarray) -> dict[str, np.ndarray]:
    """Per-object sums over the block's core: ids, pixel count, sum, sum of squares, min, max of each feature."""
    extractor, upsampler = classifier.extractor_, classifier.upsampler_
    if not (mask_core > 0).any():
        return {"ids": np.zeros(0, np.int64)}
    emb = embed_plane(extractor, data, classifier.cache)
    feats = upsampler.dense(emb, data, data.shape[:2], block.region)  # (C, core rows, core cols)
    sel = mask_core > 0
    lab = mask_core[sel].astype(np.int64)
    vals = feats[:, sel].T  # (n pixels, C)
    return ObjectSums.from_pixels(lab, vals, tuple(classifier.stats)).to_arrays()


def partial_task(shared: tuple[Any, Any, Any, Any], block: Block) -> int:
    classifier, source, mask_source, out = shared
    data = read_block(reopen(source), block)
    mask_core = reopen(mask_source).read(*block.core_slices)[..., 0]
    S.save_partial(out, block.index, _block_partials(classifier, data, block, mask_core))
    S.mark_done(out, f"partial-{block.index}")
    return block.index


def merge_partials(parts: list[dict[str, np.ndarray]], stats: tuple[str, ...], include_area: bool
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-object features from the blocks' partial sums, merged in block order: (ids, values, names)."""
    parts = [p for p in parts if len(p["ids"])]
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), []
    sums = ObjectSums.merge([ObjectSums.from_arrays(p) for p in parts], stats, int(parts[0]["n_features"][0]))
    values, names = finish_statistics(sums.count.astype(np.float64), sums.s1, sums.s2, sums.mn, sums.mx, stats,
                                      include_area)
    return sums.ids, values, names


def paint_task(shared: tuple[Any, Any, Any], block: Block) -> int:
    lut_ids, lut_classes, mask_source, out = shared
    mask_core = reopen(mask_source).read(*block.core_slices)[..., 0].astype(np.int64)
    pos = np.searchsorted(lut_ids, mask_core)
    pos = np.minimum(pos, max(len(lut_ids) - 1, 0))
    found = (mask_core > 0) & (lut_ids[pos] == mask_core) if len(lut_ids) else np.zeros(mask_core.shape, bool)
    classes = np.where(found, lut_classes[pos] if len(lut_ids) else 0, 0)
    S.write_block(out, block.core_slices, classes)
    S.mark_done(out, f"paint-{block.index}")
    return block.index


def predict_objects(classifier: Any, source: Any, mask: Any, output: str | Path, *, table: str | Path | None = None,
                    block_shape: Any = 1024, halo: int | None = None, scheduler: Any = "threads",
                    num_workers: int | None = None, overwrite: bool = False, axes: str | None = None,
                    progress: Any = False, log: Callable[[str], Any] | None = None) -> RunReport:
    """Classes of every object of a large instance mask; class image to ``output`` (OME-Zarr), table to ``table`` (CSV)."""
    t0 = time.perf_counter()
    _prepare(classifier, "object")
    if getattr(classifier.extractor_, "kind", "pixel") == "object":
        raise InputError(f"{classifier.extractor_.name} computes whole-object features (shape, perimeter), which "
                         "cannot be merged from blocks; use a pixel extractor (mean embedding + area per object) "
                         "for blockwise object classification, or predict this image in memory.")
    image, masks = _image(source, axes), _image(mask, None)
    try:
        return _predict_objects(classifier, image, masks, output, table, block_shape, halo, scheduler, num_workers,
                                overwrite, progress, log, t0)
    finally:
        for opened, given in ((image, source), (masks, mask)):
            if opened is not given:
                opened.close()


def _predict_objects(classifier, image, masks, output, table, block_shape, halo, scheduler, num_workers, overwrite,
                     progress, log, t0) -> RunReport:
    if masks.shape != image.shape or masks.n_channels != 1:
        raise InputError(f"The instance mask has shape {masks.shape} x {masks.n_channels} channel(s); the image is "
                         f"{image.shape}: give one single-channel mask of the image's size.")
    halo = default_halo(classifier) if halo is None else int(halo)
    blocks = plan_grid(image.shape, block_shape, halo, pad=classifier.extractor_.spec.input_size is not None)
    record = _record(classifier, image, blocks, block_shape, halo, "objects")
    record["mask"] = masks.spec.path
    size, units = image.pixel_size()
    out, _ = S.create_store(output, record=record, image_shape=image.shape,
                            block_shape=tuple(np.broadcast_to(block_shape, 2).tolist()),
                            n_classes=len(classifier.classes_), probabilities=False, pixel_size=size, units=units,
                            overwrite=overwrite)
    todo = [b for b in blocks if not S.is_done(out, f"partial-{b.index}")]
    run_tasks(partial_task, (classifier, image.spec, masks.spec, out), todo, scheduler=scheduler,
              num_workers=num_workers, progress=progress, desc=f"{image.name}: object sums", log=log)
    stats = tuple(classifier.stats)
    ids, values, names = merge_partials([S.load_partial(out, b.index) for b in blocks], stats,
                                        classifier.include_area)
    if len(ids):
        proba = classifier.head_.predict_proba(ObjectSamples(np.zeros(len(ids), np.int64), ids, rows=values,
                                                             names=names))
        classes = np.asarray(classifier.classes_)[np.argmax(proba, axis=1)]
    else:
        proba, classes = np.zeros((0, len(classifier.classes_)), np.float32), np.zeros(0, np.int64)
    todo_paint = [b for b in blocks if not S.is_done(out, f"paint-{b.index}")]
    run_tasks(paint_task, (ids, classes, masks.spec, out), todo_paint, scheduler=scheduler,
              num_workers=num_workers, progress=progress, desc=f"{image.name}: class image", log=log)
    table_path = Path(table) if table is not None else Path(output).with_suffix("").with_suffix(".csv")
    write_table(table_path, ids, classes, proba, np.asarray(classifier.classes_), values, names)
    S.finish(out, {"n_objects": int(len(ids))})
    mp = image.shape[0] * image.shape[1] / 1e6
    return RunReport(Path(output), len(blocks), len(todo), time.perf_counter() - t0, table=table_path,
                     extra={"megapixels": mp, "n_objects": int(len(ids)),
                            "features": (ids, values, names), "probabilities": proba})


def write_table(path: Path, ids: np.ndarray, classes: np.ndarray, proba: np.ndarray, class_ids: np.ndarray,
                values: np.ndarray, names: list[str]) -> Path:
    """One row per object: id, class, p_<class>..., area (CSV; Parquet too when the name ends in .parquet)."""
    import csv

    area = values[:, names.index("area")] if "area" in names else None
    header = ["id", "class"] + [f"p_{int(c)}" for c in class_ids] + (["area"] if area is not None else [])
    rows = [[int(i), int(c)] + [f"{p:.6g}" for p in pr] + ([int(area[k])] if area is not None else [])
            for k, (i, c, pr) in enumerate(zip(ids, classes, proba))]
    if path.suffix.lower() == ".parquet":
        import pandas as pd

        with atomic_path(path) as tmp:
            pd.DataFrame(rows, columns=header).to_parquet(tmp)
        return path
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
    return path
