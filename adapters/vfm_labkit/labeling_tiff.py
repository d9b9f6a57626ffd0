"""LabKit's second labelling format: an index TIFF plus a ``.labels`` JSON sidecar.

LabKit's ``LabelingSerializer`` saves ``name.tif`` holding, at each pixel, an index into
the label sets listed in ``name.tif.labels``::

    {"labelSets": [[], ["background"], ["foreground"], ["background", "foreground"]]}

(index 0 is the empty set: unlabelled; a set with several names marks a pixel with
several labels). A TIFF without a sidecar is read as LabKit reads it: each non-zero pixel
value is a label named after the value (``"1"``, ``"2"``...), ordered as numbers.
Both files are bounded in size before they are read, and the TIFF's declared pixel
count before it is decoded.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

import vfm_features as vf

from vfm_labkit._files import atomic_write_bytes, read_bounded
from vfm_labkit.labeling import MAX_BYTES, MAX_PIXELS, Labeling, read_labeling

MAX_SIDECAR_BYTES = 16 << 20


def _natural(name: str) -> list[Any]:
    """LabKit's NumberAwareStringComparator: digit runs compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def _read_tiff(path: Path, max_bytes: int) -> np.ndarray:
    import tifffile

    if path.stat().st_size > max_bytes:
        raise vf.InputError(f"{path} has {path.stat().st_size} bytes, more than the {max_bytes} allowed; pass "
                            "max_bytes=... to raise the bound for a file you trust.")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            if int(np.prod(shape, dtype=np.int64)) > MAX_PIXELS or int(np.prod(shape)) * dtype.itemsize > 4 * max_bytes:
                raise vf.InputError(f"{path} declares {shape} pixels of {dtype}, more than allowed for a labelling.")
            image = series.asarray()
    except vf.InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for damaged files
        raise vf.InputError(f"Cannot read {path} as a TIFF labelling ({type(exc).__name__}: {exc}).") from None
    while image.ndim > 3 and image.shape[0] == 1:  # singleton leading axes (time, channel) of an ImageJ TIFF
        image = image[0]
    if image.dtype.kind not in "ui":
        raise vf.InputError(f"{path} holds {image.dtype} values; a LabKit index image holds whole numbers.")
    if image.ndim not in (2, 3):
        raise vf.InputError(f"{path} has shape {image.shape}; 2D and 3D labellings are read.")
    if image.size and image.min() < 0:
        raise vf.InputError(f"{path} holds negative values; a LabKit index image holds indices from 0.")
    return image


def _read_sidecar(path: Path) -> list[list[str]]:
    text = read_bounded(path, MAX_SIDECAR_BYTES, what="LabKit .labels")
    try:
        data = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise vf.InputError(f"{path} is not a valid LabKit .labels file: it is not UTF-8 JSON.") from None
    sets = data.get("labelSets") if isinstance(data, dict) and set(data) == {"labelSets"} else None
    if not isinstance(sets, list) or not all(
            isinstance(s, list) and all(isinstance(n, str) and n for n in s) and len(set(s)) == len(s) for s in sets):
        raise vf.InputError(f"{path} is not a valid LabKit .labels file: expected {{'labelSets': [[names], ...]}}.")
    return sets


def read_labeling_tiff(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> Labeling:
    """Read LabKit's TIFF labelling (with its ``.labels`` sidecar when there is one)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such LabKit labelling file: {path}")
    index = _read_tiff(path, max_bytes)
    sidecar = Path(str(path) + ".labels")
    flat = index.ravel()
    present, inverse = np.unique(flat, return_inverse=True)
    if sidecar.exists():
        sets = _read_sidecar(sidecar)
        if len(present) and present[-1] >= len(sets):
            raise vf.InputError(f"{path} holds index {int(present[-1])} but {sidecar.name} lists only {len(sets)} "
                                "label sets; the two files do not belong together.")
        names = sorted({n for s in sets for n in s}, key=_natural)
        members = {int(v): sets[int(v)] for v in present}
    else:  # LabKit's Labeling.fromImg: a label per non-zero value
        names = [str(int(v)) for v in present if v != 0]
        members = {int(v): ([str(int(v))] if v != 0 else []) for v in present}
    pixels: dict[str, list[np.ndarray]] = {n: [] for n in names}
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(present) + 1))
    for i, value in enumerate(present):
        idx = order[bounds[i]:bounds[i + 1]]
        for name in members[int(value)]:
            pixels[name].append(idx)
    arrays = {n: np.stack(np.unravel_index(np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64), index.shape),
                          1).astype(np.int64) for n, p in pixels.items()}
    return Labeling(index.shape, arrays)


def write_labeling_tiff(labeling: Labeling, path: str | os.PathLike) -> Path:
    """Write ``labeling`` as LabKit's index TIFF plus ``<path>.labels`` (colours are not part of this format)."""
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise vf.InputError(f"LabKit's TIFF labellings end in .tif or .tiff; got {path.name!r}.")
    names = labeling.names
    # each pixel's set of labels as bits, then one index per distinct set (0 = no label)
    words = (len(names) + 62) // 63 or 1
    bits = np.zeros((words,) + labeling.shape, np.int64)
    for k, name in enumerate(names):
        pts = labeling.pixels[name]
        if len(pts):
            bits[(k // 63, *pts.T)] |= np.int64(1) << (k % 63)
    keys = bits.reshape(words, -1).T
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    empty = np.zeros(words, np.int64)
    sets: list[list[str]] = [[]]
    value_of = np.zeros(len(uniq), np.int64)
    for i, key in enumerate(uniq):
        if np.array_equal(key, empty):
            continue
        value_of[i] = len(sets)
        sets.append([n for k, n in enumerate(names) if key[k // 63] >> (k % 63) & 1])
    index = value_of[inverse.ravel()].reshape(labeling.shape)
    dtype = np.uint8 if len(sets) <= 256 else np.uint16 if len(sets) <= 65536 else np.uint32
    sidecar = Path(str(path) + ".labels")
    atomic_write_bytes(sidecar, json.dumps({"labelSets": sets}).encode("utf-8"))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.tif")
    try:
        tifffile.imwrite(tmp, index.astype(dtype))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def open_labeling(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> Labeling:
    """Read a labelling as LabKit does, by extension: ``.labeling``/``.json`` or ``.tif``/``.tiff``."""
    suffix = Path(path).suffix.lower()
    if suffix in (".labeling", ".json"):
        return read_labeling(path, max_bytes=max_bytes)
    if suffix in (".tif", ".tiff"):
        return read_labeling_tiff(path, max_bytes=max_bytes)
    raise vf.InputError(f"LabKit labellings end in .labeling, .json, .tif or .tiff; got {Path(path).name!r}.")
