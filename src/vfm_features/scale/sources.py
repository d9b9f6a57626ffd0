"""Large images, opened lazily: TIFF (through tifffile's zarr view), OME-Zarr, .npy (memory-mapped).

A :class:`LazyImage` reads only the rows and columns a block asks for; its
:attr:`LazyImage.spec` is a small picklable description, so a Dask worker
re-opens the file itself instead of receiving pixels.
"""

from __future__ import annotations

import glob
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vfm_features.errors import InputError

SUFFIXES = (".tif", ".tiff", ".npy", ".zarr")  # read lazily, block by block
IMAGE_SUFFIXES = SUFFIXES + (".png", ".jpg", ".jpeg")  # what a folder of inputs may hold


@dataclass(frozen=True)
class SourceSpec:
    """Where an image is and how to read it: enough to re-open it in another process."""

    path: str
    axes: str  # axes of the stored array, e.g. "YX", "YXC", "CYX", "TCZYX"
    dataset: str = ""  # OME-Zarr: the path of the full-resolution array inside the group
    scale: tuple[float, ...] = ()  # physical size of a pixel along each stored axis
    units: tuple[str, ...] = ()


@dataclass
class LazyImage:
    """A 2D image (with optional channels) read block by block; stored singleton T/Z axes are dropped."""

    spec: SourceSpec
    array: Any = field(repr=False)
    handle: Any = field(default=None, repr=False)  # what to close (tifffile's zarr store)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    @property
    def name(self) -> str:
        name = Path(self.spec.path).name
        for suffix in (".ome.zarr", ".zarr", ".tiff", ".tif", ".npy"):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return name

    @property
    def shape(self) -> tuple[int, int]:
        """(Y, X) of the image."""
        axes = self.spec.axes
        return int(self.array.shape[axes.index("Y")]), int(self.array.shape[axes.index("X")])

    @property
    def n_channels(self) -> int:
        return int(self.array.shape[self.spec.axes.index("C")]) if "C" in self.spec.axes else 1

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def pixel_size(self) -> tuple[tuple[float, float], tuple[str, str]]:
        """Physical (y, x) pixel size and units (1.0 and '' when unknown)."""
        axes = self.spec.axes
        if len(self.spec.scale) != len(axes):
            return (1.0, 1.0), ("", "")
        iy, ix = axes.index("Y"), axes.index("X")
        units = self.spec.units if len(self.spec.units) == len(axes) else ("",) * len(axes)
        return (self.spec.scale[iy], self.spec.scale[ix]), (units[iy], units[ix])

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        """The (rows, cols) block as a (y, x, C) array in the stored dtype."""
        axes = self.spec.axes
        index = []
        for ax in axes:
            index.append(rows if ax == "Y" else cols if ax == "X" else slice(None) if ax == "C" else 0)
        block = np.asarray(self.array[tuple(index)])
        kept = [ax for ax in axes if ax in "YXC"]
        order = [kept.index(ax) for ax in "YXC" if ax in kept]
        block = np.transpose(block, order)
        return block if "C" in kept else block[..., None]


def _axes_for(shape: tuple[int, ...], axes: str | None, path: str) -> str:
    if axes is not None:
        axes = axes.upper()
        if len(axes) != len(shape) or not {"Y", "X"} <= set(axes) or set(axes) - set("TCZYX"):
            raise InputError(f"axes={axes!r} do not fit the image {path} of shape {shape}.")
        return axes
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3 and shape[-1] <= 4:
        return "YXC"
    if len(shape) == 3 and shape[0] <= 4:
        return "CYX"
    raise InputError(f"{path} has shape {shape}; give its axes (e.g. --axes CYX or axes='ZYX').")


def _check_singletons(shape: tuple[int, ...], axes: str, path: str) -> None:
    for n, ax in zip(shape, axes):
        if ax in "TZ" and n != 1:
            raise InputError(f"{path} has {n} planes along {ax}; blockwise prediction takes 2D images (one "
                             "plane): split the stack or predict it in memory.")


def open_image(path: str | os.PathLike, *, axes: str | None = None) -> LazyImage:
    """Open a TIFF, OME-Zarr or .npy image lazily."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"No such image: {p}")
    name = p.name.lower()
    if name.endswith(".zarr"):
        return _open_zarr(p, axes)
    if name.endswith((".tif", ".tiff")):
        import tifffile
        import zarr

        try:
            with tifffile.TiffFile(p) as tif:
                series_axes = tif.series[0].axes
            store = tifffile.imread(p, aszarr=True)
            array = zarr.open(store, mode="r")
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"Cannot read {p} as a TIFF image ({exc}).") from None
        guessed = series_axes.replace("S", "C").replace("Q", "Z").replace("I", "Z")
        use = axes or (guessed if len(guessed) == array.ndim and {"Y", "X"} <= set(guessed) else None)
        use = _axes_for(tuple(array.shape), use, str(p))
        _check_singletons(tuple(array.shape), use, str(p))
        return LazyImage(SourceSpec(str(p), use), array, store)
    if name.endswith(".npy"):
        try:
            array = np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"Cannot read {p} as a numeric .npy array ({exc}).") from None
        use = _axes_for(tuple(array.shape), axes, str(p))
        _check_singletons(tuple(array.shape), use, str(p))
        return LazyImage(SourceSpec(str(p), use), array)
    raise InputError(f"Cannot read {p.name}: blockwise prediction reads {', '.join(SUFFIXES)}.")


def _open_zarr(p: Path, axes: str | None) -> LazyImage:
    import zarr

    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for a damaged store
        raise InputError(f"Cannot open {p} as a zarr store ({type(exc).__name__}: {exc}).") from None
    if isinstance(node, zarr.Array):
        use = _axes_for(tuple(node.shape), axes, str(p))
        _check_singletons(tuple(node.shape), use, str(p))
        return LazyImage(SourceSpec(str(p), use), node)
    attrs = node.attrs.asdict()
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests under "ome"; 0.4 has "multiscales" at the top
    multiscales = ome.get("multiscales")
    if not multiscales:
        raise InputError(f"{p} is a zarr group without OME-Zarr 'multiscales' metadata; pass the array itself.")
    ms = multiscales[0]
    dataset = ms["datasets"][0]
    stored = [a["name"].upper() if isinstance(a, dict) else str(a).upper() for a in ms.get("axes", [])]
    units = tuple(str(a.get("unit", "")) if isinstance(a, dict) else "" for a in ms.get("axes", []))
    scale: tuple[float, ...] = ()
    for t in dataset.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = tuple(float(v) for v in t["scale"])
    array = node[dataset["path"]]
    use = _axes_for(tuple(array.shape), axes or ("".join(stored) if stored else None), str(p))
    _check_singletons(tuple(array.shape), use, str(p))
    return LazyImage(SourceSpec(str(p), use, dataset["path"], scale, units), array)


_OPENED = threading.local()  # per thread: file handles are not shared between threads


def reopen(spec: SourceSpec) -> LazyImage:
    """The image a :class:`SourceSpec` describes, opened once per thread of a worker and kept open."""
    cache = getattr(_OPENED, "images", None)
    if cache is None:
        cache = _OPENED.images = {}
    if spec not in cache:
        if len(cache) >= 8:  # a long run over many images: close the oldest
            oldest = next(iter(cache))
            cache.pop(oldest).close()
        cache[spec] = open_image(spec.path, axes=spec.axes)
    return cache[spec]


def expand_inputs(items: list[str | os.PathLike]) -> list[Path]:
    """Files from paths, folders (their images, sorted) and glob patterns; duplicates removed."""
    out: list[Path] = []
    for item in items:
        text = str(item)
        if any(ch in text for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(text))
            if not matches:
                raise InputError(f"The pattern {text!r} matches no file.")
            out += matches
        elif Path(text).is_dir() and not text.lower().endswith(".zarr"):
            found = sorted(f for f in Path(text).iterdir() if f.name.lower().endswith(IMAGE_SUFFIXES)
                           and not f.name.startswith("."))
            if not found:
                raise InputError(f"The folder {text} holds no image ({', '.join(IMAGE_SUFFIXES)}).")
            out += found
        else:
            out.append(Path(text))
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]
