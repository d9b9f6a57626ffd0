"""OME-Zarr outputs of a blockwise run: chunk-aligned block writes, block markers, a completion record last.

Layout of ``<name>.ome.zarr`` (a zarr v3 group)::

    classes/            OME-Zarr image (y, x), uint16 class ids, one chunk per block core
    probabilities/      OME-Zarr image (c, y, x), float32, optional
    .vfm-blocks/<i>     one empty file per finished block (written after its data)
    .vfm-blocks/p<i>.npz  object runs: each block's partial sums (written atomically)

The root attribute ``vfm_features`` records the run (signature, plan, shapes)
and ``complete``: set last, after every block. A rerun with the same record
skips the blocks whose marker exists: a crash or a killed worker costs only the
blocks in flight. Each block writes only its own chunks and then its marker, so
a half-written chunk is never marked done and is written again on the rerun.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vfm_features.errors import InputError
from vfm_features.hashing import canonical_json
from vfm_features.io import atomic_path, write_text

ATTR = "vfm_features"
MARKERS = ".vfm-blocks"


@dataclass(frozen=True)
class StoreSpec:
    """Where a run's outputs are; picklable, so workers re-open the store themselves."""

    path: str
    probabilities: bool


def _ngff(group: Any, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str, axes: list[dict],
          scale: list[float]) -> None:
    from ome_zarr.writer import write_multiscales_metadata

    image = group.create_group(name)
    image.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    write_multiscales_metadata(image, datasets=[{"path": "0", "coordinateTransformations":
                                                 [{"type": "scale", "scale": scale}]}], axes=axes, name=name)


def create_store(path: str | Path, *, record: dict[str, Any], image_shape: tuple[int, int],
                 block_shape: tuple[int, int], n_classes: int, probabilities: bool,
                 pixel_size: tuple[float, float] = (1.0, 1.0), units: tuple[str, str] = ("", ""),
                 overwrite: bool = False) -> tuple[StoreSpec, bool]:
    """Create the output store, or resume it; returns (spec, resumed).

    An existing store is resumed when it holds an unfinished run with the same
    record; a finished one, or another run, is refused unless ``overwrite``
    (which replaces only a store this library wrote: one with the ``vfm_features`` attribute).
    """
    import zarr

    path = Path(path)
    record = json.loads(canonical_json(record))
    if path.exists():
        old = _record(path)
        if old is None:
            raise InputError(f"{path} exists and is not an output of vfm-features; choose another output.")
        same = old.get("run") == record
        if same and not old.get("complete"):
            return StoreSpec(str(path), probabilities), True
        if not overwrite:
            state = "a finished run" if old.get("complete") else "another run (other classifier, image or plan)"
            raise InputError(f"{path} holds {state}; pass --overwrite (overwrite=True) to replace it.")
        shutil.rmtree(path)  # ours (it carries the vfm_features attribute)
    space = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    for ax, unit in zip(space, units):
        if unit:
            ax["unit"] = unit
    root = zarr.open_group(str(path), mode="w")
    _ngff(root, "classes", tuple(image_shape), tuple(block_shape), "uint16", space, list(pixel_size))
    if probabilities:
        _ngff(root, "probabilities", (n_classes,) + tuple(image_shape), (1,) + tuple(block_shape), "float32",
              [{"name": "c", "type": "channel"}] + space, [1.0] + list(pixel_size))
    root.attrs[ATTR] = {"run": record, "complete": False}
    (path / MARKERS).mkdir()
    return StoreSpec(str(path), probabilities), False


def _record(path: Path) -> dict | None:
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    value = meta.get("attributes", {}).get(ATTR)
    return value if isinstance(value, dict) else None


def is_done(spec: StoreSpec, name: str | int) -> bool:
    return (Path(spec.path) / MARKERS / str(name)).exists()


def mark_done(spec: StoreSpec, name: str | int) -> None:
    write_text(Path(spec.path) / MARKERS / str(name), "")


def write_block(spec: StoreSpec, core: tuple[slice, slice], classes: np.ndarray,
                proba: np.ndarray | None = None) -> None:
    """Write one block's core (its own chunks only)."""
    import zarr

    root = zarr.open_group(spec.path, mode="r+")
    root["classes/0"][core] = classes.astype(np.uint16)
    if spec.probabilities and proba is not None:
        root["probabilities/0"][(slice(None),) + core] = proba.astype(np.float32)


def save_partial(spec: StoreSpec, index: int, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(Path(spec.path) / MARKERS / f"p{index}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_partial(spec: StoreSpec, index: int) -> dict[str, np.ndarray]:
    with np.load(Path(spec.path) / MARKERS / f"p{index}.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def finish(spec: StoreSpec, extra: dict[str, Any] | None = None) -> None:
    """Record the run as complete: the last thing written."""
    import zarr

    root = zarr.open_group(spec.path, mode="r+")
    value = dict(root.attrs[ATTR])
    value.update(extra or {}, complete=True)
    root.attrs[ATTR] = value


def read_classes(path: str | Path) -> np.ndarray:
    """The class map of a finished output store (whole, in memory: for tests and small images)."""
    import zarr

    record = _record(Path(path))
    if not record or not record.get("complete"):
        raise InputError(f"{path} is not a finished vfm-features output (its run is incomplete or it is not ours).")
    return np.asarray(zarr.open_group(str(path), mode="r")["classes/0"][...])
