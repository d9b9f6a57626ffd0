"""LabKit's labelling: named labels, each a set of pixels, with colours; read and written as LabKit's JSON.

LabKit (Fiji) saves a labelling as ``<image>.labeling`` beside the image (its
``LabelingSerializer``), a JSON object::

    {"interval": {"min": [0, 0], "max": [W-1, H-1], "n": 2},
     "pixelSizes": [{"size": 1.0, "unit": "pixel"}, {"size": 1.0, "unit": "pixel"}],
     "labels": {"background": [[x, y], ...], "foreground": [[x, y], ...]},
     "colors": {"background": "#0000FF", "foreground": "#FF0000"}}

Coordinates are imglib2's: x (column) first, then y (row), then z; absolute, inside the
interval. Here a :class:`Labeling` keeps them as numpy indices (row-major: ``(y, x)`` or
``(z, y, x)``) relative to the interval's minimum. A pixel may carry several labels.

A labelling file comes from someone else: it is parsed strictly (known keys only, whole
numbers only, every pixel inside the interval, no repeated label names), its size is bounded
before it is read (``max_bytes``), and nothing in it is ever evaluated.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import vfm_features as vf

from vfm_labkit._files import atomic_write_bytes, read_bounded

MAX_BYTES = 128 << 20  # default bound on a .labeling file (a dense 2048 x 2048 labelling is about 50 MB)
MAX_PIXELS = 1 << 30  # bound on the interval (the label image this makes)
MAX_NAME = 1000
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_KEYS = {"interval", "labels", "pixelSizes", "colors"}
# LabKit's first colours for new labels, then a fixed palette
PALETTE = ("#0000FF", "#FF0000", "#00FF00", "#FFFF00", "#FF00FF", "#00FFFF", "#FF8000", "#8000FF", "#008080",
           "#808000", "#800000", "#000080")


def _bad(path: Any, why: str) -> vf.InputError:
    where = f"{path} is not a valid LabKit labelling" if path is not None else "Not a valid LabKit labelling"
    return vf.InputError(f"{where}: {why}.")


@dataclass
class Labeling:
    """Named labels over an image grid.

    ``shape`` is the grid in numpy order, ``(Y, X)`` or ``(Z, Y, X)``; ``pixels[name]`` an
    ``(n, ndim)`` int64 array of numpy indices; ``colors[name]`` ``"#RRGGBB"``; ``origin``
    the interval's minimum in LabKit's (x, y[, z]) order; ``pixel_sizes`` LabKit's
    ``(size, unit)`` per axis, in its order. Label order is the order of ``pixels``.
    """

    shape: tuple[int, ...]
    pixels: dict[str, np.ndarray]
    colors: dict[str, str] = field(default_factory=dict)
    origin: tuple[int, ...] | None = None
    pixel_sizes: list[tuple[float, str]] | None = None

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        if len(self.shape) not in (2, 3) or min(self.shape) < 1:
            raise vf.InputError(f"A labelling is 2D or 3D with positive sizes; got shape {self.shape}.")
        if int(np.prod(self.shape, dtype=np.int64)) > MAX_PIXELS:
            raise vf.InputError(f"A labelling of shape {self.shape} is larger than {MAX_PIXELS} pixels.")
        pixels = {}
        for name, pts in self.pixels.items():
            _check_name(name)
            pts = np.asarray(pts, dtype=np.int64).reshape(-1, len(self.shape))
            if len(pts) and (pts.min() < 0 or (pts >= np.array(self.shape)).any()):
                raise vf.InputError(f"Label {name!r} has pixels outside the grid {self.shape}.")
            pixels[name] = pts
        self.pixels = pixels
        for i, name in enumerate(self.pixels):
            self.colors.setdefault(name, PALETTE[i % len(PALETTE)])
        unknown = sorted(set(self.colors) - set(self.pixels))
        if unknown:
            raise vf.InputError(f"Colours are given for {unknown}, which are not labels of this labelling.")
        if self.origin is None:
            self.origin = (0,) * len(self.shape)
        if self.pixel_sizes is None:
            self.pixel_sizes = [(1.0, "pixel")] * len(self.shape)

    @property
    def names(self) -> list[str]:
        """Label names, in LabKit's order."""
        return list(self.pixels)

    def counts(self) -> dict[str, int]:
        """Number of labelled pixels of each label (0 for a label without strokes)."""
        return {name: len(np.unique(pts, axis=0)) if len(pts) else 0 for name, pts in self.pixels.items()}

    def to_label_image(self, names: Sequence[str] | None = None) -> np.ndarray:
        """Label ids: 0 = unlabelled, ``k`` = ``names[k-1]`` (default: this labelling's order).

        Where a pixel has several labels, the one earliest in ``names`` wins (LabKit's rule
        for training); labels not in ``names`` are left out.
        """
        names = self.names if names is None else list(names)
        dtype = np.uint8 if len(names) < 256 else np.uint16 if len(names) < 65536 else np.uint32
        image = np.zeros(self.shape, dtype)
        for k in range(len(names), 0, -1):  # the earliest name paints last, so it wins
            pts = self.pixels.get(names[k - 1])
            if pts is not None and len(pts):
                image[tuple(pts.T)] = k
        return image

    @classmethod
    def from_label_image(cls, label_image: Any, names: Sequence[str], colors: dict[str, str] | None = None,
                         **kwargs: Any) -> "Labeling":
        """A labelling from label ids (0 = unlabelled, ``k`` = ``names[k-1]``); every name becomes a label."""
        image = np.asarray(label_image)
        if image.dtype.kind not in "ui":
            raise vf.InputError(f"A label image holds whole numbers; got dtype {image.dtype}.")
        if image.size and (image.min() < 0 or image.max() > len(names)):
            raise vf.InputError(f"Label ids run from 0 to {len(names)} for {len(names)} names; got "
                                f"{image.min()}..{image.max()}.")
        if len(set(names)) != len(names):
            raise vf.InputError(f"Label names must be distinct; got {list(names)}.")
        flat = image.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(len(names) + 2))
        pixels = {}
        for k, name in enumerate(names, start=1):
            idx = order[bounds[k]:bounds[k + 1]]
            pixels[name] = np.stack(np.unravel_index(idx, image.shape), 1).astype(np.int64)
        colors = {n: c for n, c in (colors or {}).items() if n in pixels}
        return cls(image.shape, pixels, colors, **kwargs)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise vf.InputError(f"Label names are non-empty text of at most {MAX_NAME} characters; got {name!r:.60}.")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise _bad(None, f"the key(s) {dup[:5]} appear more than once in one object")
    return dict(pairs)


def _reject_constant(token: str) -> Any:
    raise _bad(None, f"it holds {token}, which is not a number LabKit writes")


def _int_list(value: Any, what: str, path: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _bad(path, f"{what} is not a list of whole numbers")
    return value


def parse_labeling(data: dict[str, Any], path: Any = None) -> Labeling:
    """A :class:`Labeling` from LabKit's JSON object (already parsed), checked strictly."""
    if not isinstance(data, dict):
        raise _bad(path, "the top level is not a JSON object")
    unknown = sorted(set(data) - _KEYS)
    missing = sorted({"interval", "labels"} - set(data))
    if unknown or missing:
        problems = ([f"it lacks {missing}"] if missing else []) + ([f"it has unknown keys {unknown}"] if unknown else [])
        raise _bad(path, " and ".join(problems))
    interval = data["interval"]
    if not isinstance(interval, dict) or set(interval) - {"min", "max", "n"} or not {"min", "max"} <= set(interval):
        raise _bad(path, "its interval is not {'min': [...], 'max': [...], 'n': N}")
    lo = _int_list(interval["min"], "the interval's min", path)
    hi = _int_list(interval["max"], "the interval's max", path)
    n = interval.get("n", len(lo))
    if not isinstance(n, int) or isinstance(n, bool) or not (len(lo) == len(hi) == n) or n not in (2, 3):
        raise _bad(path, f"its interval has {len(lo)}/{len(hi)} coordinates and n={n!r}; 2D and 3D labellings "
                         "(x, y[, z]) are read")
    size = [b - a + 1 for a, b in zip(lo, hi)]
    if min(size) < 1:
        raise _bad(path, f"its interval max {hi} is below its min {lo}")
    if int(np.prod(size, dtype=np.int64)) > MAX_PIXELS:
        raise _bad(path, f"its interval {size} holds more than {MAX_PIXELS} pixels")
    labels = data["labels"]
    if not isinstance(labels, dict):
        raise _bad(path, "its labels are not a JSON object of name -> list of pixels")
    pixels: dict[str, np.ndarray] = {}
    for name, points in labels.items():
        _check_name(name)
        if not isinstance(points, list):
            raise _bad(path, f"label {name!r} is not a list of pixels")
        try:
            arr = np.asarray(points) if points else np.zeros((0, n), np.int64)
        except ValueError:  # ragged lists
            arr = np.zeros(0, object)
        if arr.dtype.kind in "iu" and arr.size and set(map(type, itertools.chain.from_iterable(points))) != {int}:
            arr = np.zeros(0, object)  # true/false, which numpy would have taken for 1/0
        if arr.dtype.kind not in "iu" or arr.ndim != 2 or arr.shape[1] != n:
            raise _bad(path, f"label {name!r} is not a list of [x, y{', z' if n == 3 else ''}] whole-number pixels")
        arr = arr.astype(np.int64) - np.array(lo, np.int64)
        outside = (arr < 0).any(1) | (arr >= np.array(size)).any(1)
        if outside.any():
            first = (arr[outside][0] + np.array(lo)).tolist()
            raise _bad(path, f"label {name!r} has {int(outside.sum())} pixel(s) outside the interval {lo}..{hi}, "
                             f"e.g. {first}; the labelling belongs to another image or was edited")
        pixels[name] = arr[:, ::-1].copy()  # (x, y[, z]) -> numpy (y, x) / (z, y, x)
    colors = data.get("colors", {})
    if not isinstance(colors, dict) or not all(isinstance(c, str) and _COLOR.match(c) for c in colors.values()):
        raise _bad(path, "its colors are not a JSON object of name -> '#RRGGBB'")
    unknown_colors = sorted(set(colors) - set(pixels))
    if unknown_colors:
        raise _bad(path, f"it gives colours for {unknown_colors[:5]}, which are not among its labels")
    sizes = data.get("pixelSizes")
    pixel_sizes = None
    if sizes is not None:
        ok = isinstance(sizes, list) and len(sizes) == n and all(
            isinstance(s, dict) and set(s) <= {"size", "unit"} and isinstance(s.get("size", 1.0), (int, float))
            and not isinstance(s.get("size"), bool) and isinstance(s.get("unit", ""), str) for s in sizes)
        if not ok:
            raise _bad(path, f"its pixelSizes are not {n} objects {{'size': number, 'unit': text}}")
        pixel_sizes = [(float(s.get("size", 1.0)), str(s.get("unit", "pixel"))) for s in sizes]
    return Labeling(tuple(size[::-1]), pixels, {k: v.upper() for k, v in colors.items()}, tuple(lo), pixel_sizes)


def read_labeling(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> Labeling:
    """Read LabKit's ``.labeling`` (JSON) file; its size is checked before it is read."""
    path = Path(path)
    text = read_bounded(path, max_bytes, what="LabKit labelling")
    try:
        data = json.loads(text.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise _bad(path, "it is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _bad(path, f"it is not JSON ({exc.msg} at line {exc.lineno})") from None
    except vf.InputError as exc:  # raised by the JSON hooks, which do not know the path
        message = str(exc).replace("Not a valid LabKit labelling", f"{path} is not a valid LabKit labelling")
        raise vf.InputError(message) from None
    return parse_labeling(data, path)


def labeling_json(labeling: Labeling) -> dict[str, Any]:
    """LabKit's JSON object for ``labeling`` (pixels in LabKit's order: x fastest, then y, then z)."""
    n = len(labeling.shape)
    lo = np.array(labeling.origin, np.int64)
    labels = {}
    for name, pts in labeling.pixels.items():
        pts = np.unique(pts, axis=0) if len(pts) else pts  # sorted row-major: z, then y, then x
        labels[name] = (pts[:, ::-1] + lo).tolist()
    return {"interval": {"min": lo.tolist(), "max": (lo + np.array(labeling.shape[::-1]) - 1).tolist(), "n": n},
            "pixelSizes": [{"size": float(s), "unit": u} for s, u in labeling.pixel_sizes],
            "labels": labels,
            "colors": {name: labeling.colors[name] for name in labeling.pixels}}


def write_labeling(labeling: Labeling, path: str | os.PathLike) -> Path:
    """Write ``labeling`` as LabKit's ``.labeling`` JSON (atomically); LabKit opens ``<image>.labeling``."""
    path = Path(path)
    if path.suffix.lower() not in (".labeling", ".json"):
        raise vf.InputError(f"LabKit reads labellings named *.labeling (or *.json); got {path.name!r}.")
    atomic_write_bytes(path, json.dumps(labeling_json(labeling), separators=(",", ":")).encode("utf-8"))
    return path
