"""VFM features as extra channels of the raw image, in an HDF5 file that ilastik opens as raw data.

ilastik's Pixel Classification has no feature plugin hook, but it classifies any number of
channels. So the features are written next to the image's own channels, read at every pixel
(bilinear upsampling of the embedding, band by band so memory stays bounded), into one
dataset whose ``axistags`` attribute is the JSON ilastik itself writes (vigra's
``AxisTags.toJSON``): ilastik then reads the axes as ``yxc`` (or ``zyxc``) instead of
guessing them from the shape. In ilastik, select a single Gaussian with the smallest sigma
(0.3): each channel then passes through almost unchanged (see docs/adapters-ilastik.md).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import vfm_features as vf

_AXES = ("YX", "YXC", "ZYX", "ZYXC")
_FLAGS = {"c": 1, "x": 2, "y": 2, "z": 2}  # vigra AxisType: Channels = 1, Space = 2


def axistags_json(axes: str) -> str:
    """ilastik's ``axistags`` attribute for ``axes`` (e.g. ``"yxc"``): vigra's AxisTags JSON."""
    return json.dumps({"axes": [{"key": k, "typeFlags": _FLAGS[k], "resolution": 0, "description": ""}
                                for k in axes.lower()]}, indent=2)


def _layout(image: np.ndarray, axes: str | None) -> str:
    if axes is None:  # ilastik's own default: a short last axis is channels
        axes = {2: "YX", 3: "YXC" if image.shape[-1] <= 4 else "ZYX", 4: "ZYXC"}.get(image.ndim)
    if axes is None or axes.upper() not in _AXES or len(axes) != image.ndim:
        raise vf.InputError(f"The image has shape {image.shape}; give axes as one of {_AXES} matching it.")
    return axes.upper()


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("Writing ilastik feature files needs h5py; install it with: "
                          "pip install 'vfm-features[ilastik]'") from exc
    return h5py


def write_ilastik_features(image: Any, path: str | os.PathLike, extractor: Any = "filters", *, axes: str | None = None,
                           extractor_options: dict | None = None, upsampler: str = "bilinear",
                           include_image: bool = True, dataset: str = "data", cache: Any = None,
                           band_rows: int = 128, overwrite: bool = False) -> Path:
    """Write ``image`` and its VFM features as the channels of one HDF5 dataset for ilastik.

    Parameters
    ----------
    image : array
        ``YX``, ``YXC``, ``ZYX`` or ``ZYXC`` (``axes``; by default guessed as ilastik does:
        a last axis of at most 4 is channels). Stacks are embedded slice by slice.
    path : path
        The ``.h5`` file to write (atomically; an existing file needs ``overwrite=True``).
    extractor : str or FeatureExtractor
        Any registered pixel extractor (``"filters"``, ``"sam:vit_b"``...), or an instance.
    include_image : bool
        Put the image's own channels first (float32), then the features.
    dataset : str
        Name of the dataset inside the file (ilastik asks which one when there are several).
    cache : EmbeddingCache, path or None
        Embedding cache, so that writing again (or training here) recomputes nothing.

    Returns the path written. The dataset has shape (Y, X, C) or (Z, Y, X, C), float32, with
    the attribute ``axistags`` (``yxc`` / ``zyxc``) and ``vfm_features`` (JSON: the
    extractor's signature, upsampler, number of image channels).
    """
    h5py = _h5py()
    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        raise vf.InputError(f"ilastik opens HDF5 files ending in .h5 or .hdf5; got {path.name!r}.")
    if path.exists() and not overwrite:
        raise vf.InputError(f"{path} exists; pass overwrite=True to replace it, or choose another name.")
    if not isinstance(band_rows, int) or band_rows < 1:
        raise vf.InputError(f"band_rows={band_rows!r}; give a positive number of rows, e.g. 128.")
    image = np.asarray(image)
    layout = _layout(image, axes)
    vol = image if "Z" in layout else image[None]
    vol = vol if layout.endswith("C") else vol[..., None]
    ext = vf.get_extractor(extractor, **(extractor_options or {})) if isinstance(extractor, str) else extractor
    if getattr(ext, "kind", "pixel") != "pixel":
        raise vf.InputError(f"{ext.name} computes object features; ilastik pixel features need a pixel extractor.")
    up = vf.get_upsampler(upsampler)
    cache = vf.EmbeddingCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
    Z, Y, X, C = vol.shape
    n_image = C if include_image else 0
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            dset = None
            for z in range(Z):
                plane = vol[z]
                emb = cache.embed(ext, plane, axes="YXC") if cache is not None else ext.embed(plane, axes="YXC")
                if dset is None:
                    n_total = n_image + up.n_features(emb)
                    shape = (Z, Y, X, n_total) if "Z" in layout else (Y, X, n_total)
                    chunks = ((1,) if "Z" in layout else ()) + (min(Y, 64), min(X, 64), min(n_total, 16))
                    dset = f.create_dataset(dataset, shape=shape, dtype="float32", chunks=chunks)
                target = (lambda sl: (z, *sl)) if "Z" in layout else (lambda sl: sl)
                if n_image:
                    dset[target((slice(None), slice(None), slice(0, n_image)))] = plane.astype(np.float32)
                for r0 in range(0, Y, band_rows):
                    rows = slice(r0, min(Y, r0 + band_rows))
                    band = up.dense(emb, plane, None, (rows, slice(None)))  # (C, rows, X)
                    dset[target((rows, slice(None), slice(n_image, None)))] = np.moveaxis(band, 0, -1)
            dset.attrs["axistags"] = axistags_json(("z" if "Z" in layout else "") + "yxc")
            dset.attrs["vfm_features"] = json.dumps(
                {"extractor": ext.signature(), "upsampler": up.signature(), "image_channels": n_image,
                 "library_version": vf.__version__}, default=str)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
