"""An on-disk cache of embeddings in a zarr (v3) store, keyed by image content and extractor.

Layout of a cache directory::

    <path>/zarr.json                  root group, attrs {"vfm_features_cache": {"format": 2}}
    <path>/<key>/zarr.json            one entry per embedded plane: attrs hold the signature,
    <path>/<key>/data/...             the geometry and, written last, the completion marker;
                                      ``data`` is the (C, h, w) embedding, chunked in channel
                                      blocks and spatial tiles so it can be read tile by tile
    <path>/.tmp-<key>-<uuid>/         an entry being written (ignored, removed by ``clear()``)

``<key>`` is a 128-bit BLAKE2b hash (hex) of the plane's content, shape and dtype,
the extractor's :meth:`~vfm_features.FeatureExtractor.signature` (name, options,
weights hash, plugin and its version), the tiling in effect, the stored dtype and
the library version; it depends on nothing that is installed or not. A cache
written by an older format is reported once when opened (its entries cannot be
reused; :meth:`EmbeddingCache.clear` removes them) and then upgraded.
An entry is written under a temporary name and renamed into place, so a reader
never sees half an entry. On a hit the stored signature, shape and a checksum of
the data are checked; an entry that fails any check is reported with a
:class:`CacheWarning` and recomputed, never used.

zarr is an optional dependency: ``pip install 'vfm-features[cache]'``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from vfm_features._version import __version__
from vfm_features.errors import InputError
from vfm_features.hashing import HASH_NAME, content_hash, jsonable as _jsonable
from vfm_features.geometry import Embedding, EmbeddingGeometry
from vfm_features.preprocess import check_volume_stack, to_planes
from vfm_features.features.tiling import tiling_for

FeatureExtractor = Any  # any object with the extractor interface (name, signature, embed_plane)
FORMAT = 2  # 2: keys and checksums are BLAKE2b whatever is installed; signatures carry plugin provenance
_ROOT_ATTR = "vfm_features_cache"
_ENTRY_ATTR = "vfm_features"
_COMPLETE_ATTR = "vfm_features_complete"
_KEY = re.compile(r"^[0-9a-f]{32}$")
_TMP, _TRASH = ".tmp-", ".trash-"
_FLOAT16_MAX = float(np.finfo(np.float16).max)
DTYPES = ("float16", "float32")


class CacheWarning(UserWarning):
    """A cache entry was stale or damaged and has been recomputed (or could not be stored)."""


def _zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:
        raise ImportError(
            "EmbeddingCache needs the optional dependency zarr (version 3 or later), which is not installed. "
            "Install it with: pip install 'vfm-features[cache]'") from exc
    if int(zarr.__version__.split(".")[0]) < 3:
        raise ImportError(
            f"EmbeddingCache needs zarr 3 or later; zarr {zarr.__version__} is installed. "
            "Upgrade it with: pip install -U 'vfm-features[cache]'")
    return zarr


def hash_array(array: np.ndarray) -> str:
    """``"blake2b-128:<hex>"`` digest of an array's bytes (C order), with its shape and dtype."""
    return f"{HASH_NAME}:{content_hash(np.ascontiguousarray(array))}"


def _as_plane(plane: Any) -> np.ndarray:
    arr = np.asarray(plane)
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim != 3:
        raise InputError(f"A plane is (Y, X) or (Y, X, C); got shape {arr.shape}. Use embed() for other layouts.")
    return arr


class EmbeddingCache:
    """Embeddings stored on disk, computed on a miss and read back on a hit.

    Parameters
    ----------
    path
        A directory (created if missing) on a local file system; it must be new,
        empty, or an existing embedding cache.
    dtype
        ``"float16"`` (default: half the disk space, relative error below 5e-4,
        values beyond +-65504 fall back to float32 with a warning) or ``"float32"``
        (exact). Embeddings returned on a miss are rounded the same way as those
        read on a hit, so results never depend on the state of the cache.
    compressors
        zarr 3 codecs for the data (``"auto"``: zarr's default, Zstandard; ``None``: none).
    chunks
        Chunk shape (channels, rows, columns); clipped to the data shape.

    Use :meth:`embed` (an image, like ``extractor.embed``), :meth:`embed_stack`
    (one entry per plane) or :meth:`embed_plane` (a (Y, X, C) plane).
    """

    def __init__(self, path: str | os.PathLike, *, dtype: str = "float16", compressors: Any = "auto",
                 chunks: Sequence[int] = (64, 256, 256)) -> None:
        if str(np.dtype(dtype)) not in DTYPES:
            raise InputError(f"dtype={dtype!r} is not supported; use one of {DTYPES}.")
        if len(chunks) != 3 or min(int(c) for c in chunks) < 1:
            raise InputError(f"chunks must be three positive ints (channels, rows, columns); got {chunks!r}.")
        self.path = Path(path)
        self.dtype = str(np.dtype(dtype))
        self.compressors = compressors
        self.chunks = tuple(int(c) for c in chunks)
        self._zarr = _zarr()
        self._open_root()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r}, dtype={self.dtype!r})"

    # -- keys ------------------------------------------------------------------------------
    def signature(self, extractor: FeatureExtractor, plane: Any) -> dict[str, Any]:
        """Everything that determines the embedding of ``plane``; hashed into :meth:`key`."""
        plane = _as_plane(plane)
        tiling = tiling_for(extractor)
        sig = {
            "format": FORMAT,
            "library": __version__,
            "image": {"hash": hash_array(plane), "shape": list(plane.shape), "dtype": str(plane.dtype)},
            "extractor": extractor.signature(),
            "tiling": tiling.as_dict() if tiling is not None else None,
            "dtype": self.dtype,
        }
        return json.loads(json.dumps(_jsonable(sig)))  # the form it takes in the store

    def volume_signature(self, extractor: FeatureExtractor, volume: np.ndarray, z: int) -> dict[str, Any]:
        """What determines slice ``z`` of a volumetric extractor's embedding of a (Z, Y, X, C) ``volume``.

        The whole volume's hash and the slice index: a slice's 3D features depend on
        its neighbours, so neither a 2D entry of the same plane nor the same plane in
        another volume is reused.
        """
        sig = {
            "format": FORMAT,
            "library": __version__,
            "volume": {"hash": hash_array(volume), "shape": list(volume.shape), "dtype": str(volume.dtype)},
            "slice": int(z),
            "extractor": extractor.signature(),
            "dtype": self.dtype,
        }
        return json.loads(json.dumps(_jsonable(sig)))

    def key(self, extractor: FeatureExtractor, plane: Any) -> str:
        """The cache key (32 hex digits) of a (Y, X) or (Y, X, C) ``plane`` under ``extractor``."""
        return self._key(self.signature(extractor, plane))

    @staticmethod
    def _key(signature: dict[str, Any]) -> str:
        return content_hash(signature)

    # -- embedding -------------------------------------------------------------------------
    def embed(self, extractor: FeatureExtractor, image: Any, *, axes: str | None = None) -> Embedding:
        """Like ``extractor.embed(image, axes=axes)``, read from the cache when possible."""
        planes, stack_shape = to_planes(image, axes)
        if stack_shape:
            raise InputError(
                f"embed() takes one 2D image; got a stack of {int(np.prod(stack_shape))} planes. "
                "Use embed_stack() to embed slice by slice.")
        return self.embed_plane(extractor, planes[0])

    def embed_stack(self, extractor: FeatureExtractor, image: Any, *, axes: str) -> list[Embedding]:
        """Like ``extractor.embed_stack``: one cache entry per plane."""
        planes, stack = to_planes(image, axes)
        if getattr(extractor, "volumetric", False):
            check_volume_stack(axes, stack, extractor.name)
            return self.embed_volume(extractor, planes)
        return [self.embed_plane(extractor, p) for p in planes]

    def embed_volume(self, extractor: FeatureExtractor, planes: Sequence[np.ndarray]) -> list[Embedding]:
        """A volumetric extractor's embeddings of the (Y, X, C) slices of one volume: one entry per slice,
        keyed by the whole volume and the slice index; a miss on any slice recomputes the volume."""
        volume = np.stack([_as_plane(p) for p in planes])
        signatures = [self.volume_signature(extractor, volume, z) for z in range(len(volume))]
        found = [self._read(self._key(sig), sig) for sig in signatures]
        if all(emb is not None for emb, _ in found):
            return [emb for emb, _ in found]
        computed = extractor.embed_volume(list(volume))
        if len(computed) != len(volume):
            raise InputError(f"Extractor {extractor.name!r} returned {len(computed)} embeddings for a volume of "
                             f"{len(volume)} slices.")
        return [emb if emb is not None else self._write(self._key(sig), sig, new, replace=existed)
                for (emb, existed), sig, new in zip(found, signatures, computed)]

    def embed_plane(self, extractor: FeatureExtractor, plane: Any, *,
                    progress: Callable[[int, int], Any] | None = None) -> Embedding:
        """Embed a (Y, X, C) plane, or read its embedding if this cache holds a valid one."""
        plane = _as_plane(plane)
        if getattr(extractor, "volumetric", False):
            extractor._refuse_planes()
        signature = self.signature(extractor, plane)
        key = self._key(signature)
        emb, found = self._read(key, signature)
        if emb is not None:
            return emb
        emb = extractor.embed_plane(plane, progress=progress)
        return self._write(key, signature, emb, replace=found)

    # -- inspection ------------------------------------------------------------------------
    def keys(self) -> Iterator[str]:
        """Keys of the complete entries (stale ones included: they are checked on use)."""
        if not self.path.is_dir():
            return
        for child in sorted(self.path.iterdir()):
            if _KEY.match(child.name) and child.is_dir() and self._is_complete(child):
                yield child.name

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(_KEY.match(key)) and self._is_complete(self.path / key)

    def open_array(self, key: str) -> Any:
        """The stored (C, h, w) data of a complete entry as a read-only zarr array, for lazy reads.

        Only the completion marker and the shape are checked (a full checksum needs
        every chunk); a missing chunk reads as NaN.
        """
        if key not in self:
            raise KeyError(f"No complete entry {key!r} in {self}.")
        group = self._zarr.open_group(str(self.path / key), mode="r")
        info = group.attrs[_ENTRY_ATTR]
        arr = group["data"]
        if tuple(arr.shape) != tuple(info["shape"]):
            raise InputError(f"Entry {key} is damaged: data {arr.shape}, expected {tuple(info['shape'])}.")
        return arr

    def clear(self) -> None:
        """Remove every entry (and leftovers of interrupted writes); the cache stays usable."""
        if not self.path.is_dir():
            return
        for child in self.path.iterdir():
            if child.is_dir() and (_KEY.match(child.name) or child.name.startswith((_TMP, _TRASH))):
                shutil.rmtree(child, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------
    def _open_root(self) -> None:
        zarr = self._zarr
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"EmbeddingCache path {str(self.path)!r} is a file; give a directory.")
        try:
            if self.path.is_dir() and any(self.path.iterdir()):
                try:
                    attrs = zarr.open_group(str(self.path), mode="r").attrs.asdict()
                except PermissionError:
                    raise
                except Exception:  # noqa: BLE001 - not a zarr group at all
                    attrs = {}
                if _ROOT_ATTR not in attrs:
                    raise InputError(
                        f"{str(self.path)!r} is not empty and not an embedding cache; "
                        "give a new or empty directory (clear() deletes entries there).")
                fmt = attrs[_ROOT_ATTR].get("format")
                if not isinstance(fmt, int) or fmt > FORMAT:
                    raise InputError(
                        f"{str(self.path)!r} holds an embedding cache of format {fmt!r}, newer than this version "
                        f"reads ({FORMAT}). Upgrade vfm-features or use another directory.")
                if fmt < FORMAT:
                    old = sum(1 for c in self.path.iterdir() if _KEY.match(c.name))
                    warnings.warn(
                        f"Embedding cache {str(self.path)!r} was written by vfm-features "
                        f"{attrs[_ROOT_ATTR].get('library', '?')} in format {fmt}, whose keys are computed "
                        f"differently: its {old} entries cannot be reused and are recomputed as needed. "
                        "EmbeddingCache.clear() deletes them. (This warning is shown once.)", CacheWarning,
                        stacklevel=3)
                    root = zarr.open_group(str(self.path), mode="a")
                    root.attrs[_ROOT_ATTR] = {"format": FORMAT, "library": __version__, "upgraded_from": fmt}
                return
            root = zarr.open_group(str(self.path), mode="a")
            root.attrs[_ROOT_ATTR] = {"format": FORMAT, "library": __version__}
        except PermissionError as exc:
            raise InputError(f"Cannot open the embedding cache {str(self.path)!r}: permission denied "
                             f"({exc.filename or self.path}). Choose a folder you can write to.") from None

    def _is_complete(self, entry: Path) -> bool:
        try:
            return _COMPLETE_ATTR in json.loads((entry / "zarr.json").read_text()).get("attributes", {})
        except (OSError, ValueError):
            return False

    def _invalid(self, key: str, reason: str) -> None:
        warnings.warn(f"Embedding cache entry {key} in {str(self.path)!r} {reason}; recomputing it.",
                      CacheWarning, stacklevel=4)

    def _read(self, key: str, signature: dict[str, Any]) -> tuple[Embedding | None, bool]:
        """(embedding, entry existed). A stale or damaged entry warns and gives (None, True)."""
        entry = self.path / key
        if not entry.is_dir():
            return None, False
        try:
            group = self._zarr.open_group(str(entry), mode="r")
            attrs = group.attrs.asdict()
        except Exception as exc:  # noqa: BLE001 - any damage to the metadata
            self._invalid(key, f"has unreadable metadata ({type(exc).__name__}: {exc})")
            return None, True
        complete, info = attrs.get(_COMPLETE_ATTR), attrs.get(_ENTRY_ATTR)
        if not complete or not info:
            self._invalid(key, "is incomplete (no completion marker: an interrupted write?)")
            return None, True
        if info.get("signature") != signature:
            old = info.get("signature") or {}
            diff = sorted(k for k in set(old) | set(signature) if old.get(k) != signature.get(k))
            self._invalid(key, f"is stale: its signature differs in {', '.join(diff) or 'its layout'}")
            return None, True
        try:
            arr = group["data"]
            if tuple(arr.shape) != tuple(info["shape"]):
                raise ValueError(f"data has shape {tuple(arr.shape)}, expected {tuple(info['shape'])}")
            data = np.asarray(arr[...])
            if hash_array(data) != complete.get("checksum"):
                raise ValueError("data does not match its checksum (a chunk is missing or damaged)")
        except Exception as exc:  # noqa: BLE001 - any damage to the data
            self._invalid(key, f"is damaged: {exc}")
            return None, True
        return self._embedding(data, info, key), True

    @staticmethod
    def _embedding(data: np.ndarray, info: dict[str, Any], key: str) -> Embedding:
        geom = info["geometry"]
        meta = dict(info.get("meta") or {})
        meta["cache_key"] = key
        return Embedding(data.astype(np.float32, copy=False),
                         EmbeddingGeometry(tuple(geom["image_shape"]), tuple(geom["step"]), tuple(geom["origin"])),
                         extractor=info.get("extractor", ""), meta=meta)

    def _write(self, key: str, signature: dict[str, Any], emb: Embedding, *, replace: bool) -> Embedding:
        data = np.asarray(emb.data)
        dtype = self.dtype
        if dtype == "float16":
            finite = data[np.isfinite(data)]
            if finite.size and float(np.abs(finite).max()) > _FLOAT16_MAX:
                warnings.warn(
                    f"Embedding of {emb.extractor or 'the extractor'} has values beyond the float16 range "
                    f"(+-{_FLOAT16_MAX:g}); cache entry {key} is stored as float32.", CacheWarning, stacklevel=4)
                dtype = "float32"
        stored = np.ascontiguousarray(data, dtype=dtype)
        geom = emb.geometry
        info = {
            "signature": signature,
            "extractor": emb.extractor,
            "shape": list(stored.shape),
            "dtype": dtype,
            "geometry": {"image_shape": [int(s) for s in geom.image_shape], "step": [float(s) for s in geom.step],
                         "origin": [float(s) for s in geom.origin]},
            "meta": _jsonable(emb.meta),
        }
        info = json.loads(json.dumps(info))
        tmp = self.path / f"{_TMP}{key}-{uuid.uuid4().hex}"
        try:
            group = self._zarr.open_group(str(tmp), mode="w")
            group.attrs[_ENTRY_ATTR] = info
            chunks = tuple(max(1, min(c, s)) for c, s in zip(self.chunks, stored.shape))
            arr = group.create_array("data", shape=stored.shape, chunks=chunks, dtype=dtype,
                                     compressors=self.compressors, fill_value=float("nan"))
            arr[...] = stored
            group.attrs[_COMPLETE_ATTR] = {"checksum": hash_array(stored)}  # the marker, last
            self._publish(tmp, key, replace=replace)
        except OSError as exc:
            warnings.warn(f"Could not store embedding cache entry {key} in {str(self.path)!r} "
                          f"({type(exc).__name__}: {exc}); continuing without it.", CacheWarning, stacklevel=4)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self._embedding(stored, info, key)

    def _publish(self, tmp: Path, key: str, *, replace: bool) -> None:
        """Rename a finished entry into place; the rename is what makes it visible (atomic)."""
        final = self.path / key
        if replace and final.exists():
            trash = self.path / f"{_TRASH}{key}-{uuid.uuid4().hex}"
            try:
                os.rename(final, trash)
            except FileNotFoundError:  # someone else removed it meanwhile
                pass
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            # Another process published the same key first; its entry is as good as ours.


def session_cache(cache: Any = None, *, prefix: str = "vfm-features-cache-") -> tuple[Any, Any]:
    """An embedding cache for an interactive session: ``(cache, temporary_directory)``.

    ``cache`` may be an :class:`EmbeddingCache`, a path (opened as one) or None:
    then a cache in a new temporary directory when zarr is installed (the caller
    keeps the returned ``TemporaryDirectory`` alive and cleans it up), else no
    cache (``(None, None)``).
    """
    if isinstance(cache, (str, os.PathLike)):
        return EmbeddingCache(cache), None
    if cache is not None:
        return cache, None
    try:
        _zarr()
    except ImportError:
        return None, None
    import tempfile

    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    return EmbeddingCache(Path(tmp.name) / "embeddings.zarr"), tmp
