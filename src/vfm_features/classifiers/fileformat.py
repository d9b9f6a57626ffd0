"""The ``.vfmc`` classifier file: JSON metadata and numeric arrays in a zip, read with bounded memory.

Layout (format 2)::

    metadata.json       what the classifier is: class, parameters, extractor name and
                        saved options, upsampler, head name and parameters, classes,
                        signatures, intensity range (UTF-8 JSON, at most 1 MiB)
    head/<name>.npy     the head's arrays (numbers only; read with allow_pickle=False)
    reduce/<name>.npy   the channel reduction's arrays, when the classifier has one
                        (``reduce=k``: PCA mean and components; metadata key ``reduce``)

A classifier file is something people e-mail and download, so reading one:

* never unpickles and never imports or calls anything the file names: the head
  is looked up among the *registered* heads by name, and rebuilds itself from
  numbers it checks (:meth:`Head.from_state`);
* never widens trust: options that load files or code (weights paths,
  ``trust_checkpoint``, configs) are refused if a file holds them; the user
  passes them when loading, and the signature (with the weights' hash) must match;
* is bounded in memory: member count, each member's size and the total are
  checked from the zip directory before anything is decompressed, and a member
  that inflates past its declared size is refused by the zip reader.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vfm_features._version import __version__
from vfm_features.errors import InputError
from vfm_features.io import atomic_path
from vfm_features.validation import check_is_fitted

FORMAT = "vfm-features-classifier"
FORMAT_VERSION = 2
MAX_BYTES = 1 << 30  # default bound on the uncompressed size of a file's members
MAX_METADATA_BYTES = 1 << 20
MAX_MEMBERS = 1024
_ARRAY_NAME = re.compile(r"^(head|reduce)/([A-Za-z0-9_.\-]{1,64})\.npy$")
_NUMERIC = "biuf"
CLASSIFIERS = ("PixelClassifier", "ObjectClassifier")
# top-level keys of metadata.json and their types
_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "format": str, "format_version": int, "library_version": str, "classifier": str, "params": dict,
    "extractor": dict, "upsampler": (dict, type(None)), "head": dict, "classes": list, "n_features_in": int,
    "feature_names": list, "intensity": (dict, type(None)), "signature": dict, "arrays": dict,
}
# keys a file may leave out (files written before them): key -> (types, value when absent)
_OPTIONAL: dict[str, tuple[tuple[type, ...], Any]] = {"reduce": ((dict, type(None)), None)}
# keys a classifier's params may hold in a file (components are stored separately; caches never)
SAVED_PARAMS = {"PixelClassifier": ("budget", "working_shape", "n_jobs", "random_state", "band_rows", "reduce"),
                "ObjectClassifier": ("stats", "include_area", "budget", "n_jobs", "random_state", "reduce")}
# option names that load files or code, whatever the extractor says
TRUST_OPTIONS = frozenset({"weights", "trust_checkpoint", "config", "weights_path", "checkpoint"})


def _plain(value: Any) -> Any:
    """JSON data to save: tuples as lists, numpy scalars as Python numbers; anything else is refused."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise InputError(f"The value {value!r} cannot be saved in a classifier file; build the parts from their "
                     "registered names with plain options (numbers, strings, lists).")


def _component(instance: Any, kind: str) -> dict[str, Any]:
    return {"name": instance.name, "options": _plain(instance.saved_options()),
            "provenance": _plain(instance.spec.provenance())}


def _head_name(clf: Any) -> str:
    if isinstance(clf.head, str):
        return clf.head
    from vfm_features.registry import default_registry

    for name, spec in default_registry().head_specs(clf._kind).items():
        if spec.load_factory() is type(clf.head_):
            return name
    raise InputError(f"The head {type(clf.head_).__name__} is not registered, so a file could not name it; "
                     "register it through a plugin (vfm_features_heads hook) to save classifiers that use it.")


def save_classifier(clf: Any, path: str | os.PathLike) -> Path:
    """Write a fitted :class:`PixelClassifier` or :class:`ObjectClassifier` to ``path`` atomically."""
    check_is_fitted(clf, "head_")
    path = Path(path)
    if path.suffix != ".vfmc":
        raise InputError(f"Classifier files end in .vfmc; got {path.name!r}.")
    params, arrays = clf.head_.get_state()
    for key, arr in arrays.items():
        if not _ARRAY_NAME.match(f"head/{key}.npy") or np.asarray(arr).dtype.kind not in _NUMERIC:
            raise InputError(f"Head array {key!r} cannot be saved: names are letters, digits, '_', '.', '-', and "
                             "arrays hold numbers only.")
    members = {f"head/{key}.npy": arr for key, arr in arrays.items()}
    reduction = getattr(clf, "reduction_", None)
    reduce_block = None
    if reduction is not None:
        red_params, red_arrays = reduction.get_state()
        members.update({f"reduce/{key}.npy": arr for key, arr in red_arrays.items()})
        reduce_block = {"params": _plain(red_params), "arrays": _declare(red_arrays)}
    kind = type(clf).__name__
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "classifier": kind,
        # reduce only when set: files without a reduction stay readable by earlier versions
        "params": _plain({k: getattr(clf, k) for k in SAVED_PARAMS[kind]
                          if not (k == "reduce" and getattr(clf, k, None) is None)}),
        "extractor": _component(clf.extractor_, "extractor"),
        "upsampler": _component(clf.upsampler_, "upsampler") if clf.upsampler_ is not None else None,
        "head": {"name": _head_name(clf), "kind": clf._kind, "params": _plain(params),
                 "provenance": _plain(_head_provenance(clf))},
        "classes": _plain(np.asarray(clf.classes_).tolist()),
        "n_features_in": int(clf.n_features_in_),
        "feature_names": _plain(list(getattr(clf, "feature_names_", []) or [])),
        "intensity": _plain(getattr(clf, "intensity_range_", None)),
        "signature": _plain(json.loads(json.dumps(clf.signature_))),
        "arrays": _declare(arrays),
    }
    if reduce_block is not None:
        meta["reduce"] = reduce_block
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("metadata.json", json.dumps(meta, indent=1, sort_keys=True))
            for name, arr in members.items():
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
                zf.writestr(name, buf.getvalue())
    return path


def _declare(arrays: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {"shape": list(np.shape(a)), "dtype": np.asarray(a).dtype.str} for k, a in arrays.items()}


def _head_provenance(clf: Any) -> dict[str, str]:
    from vfm_features.registry import default_registry

    try:
        return default_registry().head_spec(_head_name(clf), clf._kind).provenance()
    except Exception:  # noqa: BLE001 - an unregistered head fails in _head_name already
        return {}


# -- reading -------------------------------------------------------------------------------------------
def _not_ours(path: Path, why: str) -> InputError:
    return InputError(f"{path} is not a valid vfm-features classifier file: {why}.")


def _open(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise FileNotFoundError(f"No such classifier file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a .vfmc classifier file.")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise _not_ours(path, "it is not a zip archive") from None
    except PermissionError:
        raise InputError(f"Cannot read {path}: permission denied.") from None
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc}.") from None


def _check_directory(zf: zipfile.ZipFile, path: Path, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _not_ours(path, f"it has {len(infos)} members (at most {MAX_MEMBERS})")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        if name != "metadata.json" and not _ARRAY_NAME.match(name):
            raise _not_ours(path, f"it holds an unexpected member {name!r}")
        if name in members:
            raise _not_ours(path, f"the member {name!r} appears twice")
        limit = MAX_METADATA_BYTES if name == "metadata.json" else max_bytes
        if info.file_size > limit:
            raise InputError(f"{path}: member {name!r} declares {info.file_size} bytes, more than the "
                             f"{limit} allowed; refusing to read it (load_classifier(max_bytes=...) raises the bound "
                             "for a file you trust).")
        total += info.file_size
        members[name] = info
    if total > max_bytes:
        raise InputError(f"{path} declares {total} bytes in all, more than the {max_bytes} allowed; refusing to read "
                         "it (load_classifier(max_bytes=...) raises the bound for a file you trust).")
    if "metadata.json" not in members:
        raise _not_ours(path, "it has no metadata.json")
    return members


def _check_metadata(meta: Any, path: Path) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise _not_ours(path, "its metadata is not a JSON object")
    if meta.get("format") != FORMAT:
        raise _not_ours(path, f"its format is {meta.get('format')!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _not_ours(path, f"its format_version {version!r} is not a whole number")
    if version > FORMAT_VERSION:
        raise InputError(f"{path} was written by vfm-features {meta.get('library_version')!r} in format {version}; "
                         f"this version reads format {FORMAT_VERSION}. Upgrade vfm-features.")
    if version < FORMAT_VERSION:
        raise InputError(f"{path} is in format {version} (vfm-features {meta.get('library_version')!r}), which "
                         "stored the forest with skops; this version does not read it, for safety. Retrain the "
                         "classifier with this version (vfm-features train ...).")
    for key, (_, absent) in _OPTIONAL.items():
        meta.setdefault(key, absent)
    missing = sorted(set(_SCHEMA) - set(meta))
    unknown = sorted(set(meta) - set(_SCHEMA) - set(_OPTIONAL))
    if missing or unknown:
        raise _not_ours(path, f"its metadata {'lacks ' + str(missing) if missing else ''}"
                              f"{' and ' if missing and unknown else ''}{'has unknown keys ' + str(unknown) if unknown else ''}")
    for key, types in [*_SCHEMA.items(), *((k, t) for k, (t, _) in _OPTIONAL.items())]:
        if not isinstance(meta[key], types) or (types is int and isinstance(meta[key], bool)):
            raise _not_ours(path, f"metadata {key!r} has the wrong type ({type(meta[key]).__name__})")
    reduce_block = meta["reduce"]
    if reduce_block is not None and (set(reduce_block) != {"params", "arrays"}
                                     or not isinstance(reduce_block["params"], dict)
                                     or not isinstance(reduce_block["arrays"], dict)):
        raise _not_ours(path, "its reduce entry is not {params, arrays}")
    if meta["classifier"] not in CLASSIFIERS:
        raise _not_ours(path, f"it holds an unknown classifier type {meta['classifier']!r}")
    unknown_params = sorted(set(meta["params"]) - set(SAVED_PARAMS[meta["classifier"]]))
    if unknown_params:
        raise _not_ours(path, f"its parameters hold unknown keys {unknown_params}")
    for part in ("extractor", "upsampler", "head"):
        block = meta[part]
        if block is None:
            continue
        if not isinstance(block.get("name"), str) or not isinstance(block.get("options", {}), dict):
            raise _not_ours(path, f"its {part} entry has no name or no options")
    if meta["head"].get("kind") not in ("pixel", "object") or not isinstance(meta["head"].get("params"), dict):
        raise _not_ours(path, "its head entry has no kind or no params")
    if (meta["head"]["kind"] == "pixel") != (meta["classifier"] == "PixelClassifier"):
        raise _not_ours(path, "its head kind does not fit its classifier type")
    if meta["n_features_in"] < 1:
        raise _not_ours(path, f"n_features_in={meta['n_features_in']}")
    classes = meta["classes"]
    if len(classes) < 2 or not all(isinstance(c, int) and not isinstance(c, bool) for c in classes) \
            or len(set(classes)) != len(classes):
        raise _not_ours(path, "its classes are not at least two distinct whole numbers")
    return meta


def read_archive(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checked metadata and the head arrays of a classifier file (nothing is built or imported)."""
    meta, arrays = read_parts(path, max_bytes=max_bytes)
    return meta, arrays["head"]


def read_parts(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> tuple[dict[str, Any], dict[str, dict]]:
    """The checked metadata and the arrays of every part: ``{"head": {...}, "reduce": {...}}``."""
    path = Path(path)
    with _open(path) as zf:
        members = _check_directory(zf, path, max_bytes)
        try:
            meta = json.loads(zf.read("metadata.json").decode("utf-8"))
        except UnicodeDecodeError:
            raise _not_ours(path, "its metadata is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise _not_ours(path, f"its metadata is not JSON ({exc.msg} at line {exc.lineno})") from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _not_ours(path, f"its metadata cannot be read ({exc})") from None
        meta = _check_metadata(meta, path)
        declared = {"head": meta["arrays"], "reduce": meta["reduce"]["arrays"] if meta["reduce"] else {}}
        arrays: dict[str, dict[str, np.ndarray]] = {"head": {}, "reduce": {}}
        for name, info in members.items():
            m = _ARRAY_NAME.match(name)
            if not m:
                continue
            part, key = m.group(1), m.group(2)
            label = key if part == "head" else f"{part}/{key}"
            if key not in declared[part]:
                raise _not_ours(path, f"the array {label!r} is not declared in its metadata")
            try:
                arr = np.load(io.BytesIO(zf.read(info)), allow_pickle=False)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise _not_ours(path, f"the array {label!r} cannot be read ({exc})") from None
            spec = declared[part][key]
            if (not isinstance(arr, np.ndarray) or arr.dtype.kind not in _NUMERIC or not isinstance(spec, dict)
                    or list(arr.shape) != spec.get("shape") or arr.dtype.str != spec.get("dtype")):
                raise _not_ours(path, f"the array {label!r} is not the numeric array its metadata declares")
            arrays[part][key] = arr
        for part in ("head", "reduce"):
            missing = sorted(set(declared[part]) - set(arrays[part]))
            if missing:
                raise _not_ours(path, f"the arrays {missing if part == 'head' else [f'{part}/{k}' for k in missing]} "
                                      "are missing")
    return meta, arrays


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The checked metadata of a saved classifier, without building anything."""
    return read_archive(path)[0]
