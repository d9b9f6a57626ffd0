"""Reading images and writing results without leaving half-written files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from vfm_features.errors import InputError

IMAGE_SUFFIXES = (".tif", ".tiff", ".npy", ".png", ".jpg", ".jpeg")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF, NPY, PNG or JPEG file into a numpy array."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix in (".png", ".jpg", ".jpeg"):
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    raise InputError(f"Cannot read {path.name}: unknown file type {suffix!r}; use one of {IMAGE_SUFFIXES}.")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_image(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as TIFF, NPY or PNG (chosen by suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".tif", ".tiff", ".npy", ".png"):
        raise InputError(f"Cannot write {path.name}: use a .tif, .npy or .png file name.")
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        elif suffix == ".png":
            import imageio.v3 as iio

            iio.imwrite(tmp, array, extension=".png")
        else:
            import tifffile

            tifffile.imwrite(tmp, array, photometric="minisblack")
    return path
