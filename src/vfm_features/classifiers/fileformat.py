"""Saving and loading trained classifiers safely.

A ``.vfmc`` file is a zip archive with ``metadata.json`` (format version,
library version, classifier class and parameters, extractor signature, classes,
feature count) and ``forest.skops`` (the forest in skops' format, which loads
without executing pickled code). Loading rebuilds the classifier from the
parameters and refuses a forest holding types outside a short allow-list.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vfm_features._version import __version__
from vfm_features.errors import ExtractorMismatchError, InputError
from vfm_features.io import atomic_path

FORMAT = "vfm-features-classifier"
FORMAT_VERSION = 1
_TRUSTED_PREFIXES = ("sklearn.", "numpy.")


def _params(clf) -> dict[str, Any]:
    """The constructor parameters as JSON; an extractor instance is saved as its name and options."""
    params = clf.get_params(deep=False)
    params.pop("cache", None)
    if not isinstance(params.get("extractor"), str):
        instance = params["extractor"]
        params["extractor"] = instance.name
        params["extractor_options"] = dict(instance.options)
    for key, value in (params.get("extractor_options") or {}).items():
        try:
            json.dumps(value, default=_json_default)
        except TypeError:
            raise InputError(
                f"The extractor option {key}={value!r} cannot be saved; build the extractor from its "
                "registered name with plain options (numbers, strings, lists) to save the classifier.") from None
    return json.loads(json.dumps(params, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"Cannot save parameter value {value!r}")


def save_classifier(clf, path: str | os.PathLike) -> Path:
    """Write a fitted :class:`PixelClassifier` or :class:`ObjectClassifier` to ``path`` atomically."""
    import skops.io as sio

    from vfm_features.validation import check_is_fitted

    check_is_fitted(clf, "forest_")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "classifier": type(clf).__name__,
        "params": _params(clf),
        "signature": clf.signature_,
        "classes": clf.classes_.tolist(),
        "n_features_in": int(clf.n_features_in_),
        "feature_names": list(getattr(clf, "feature_names_", []) or []),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("metadata.json", json.dumps(meta, indent=2, sort_keys=True))
            zf.writestr("forest.skops", sio.dumps(clf.forest_))
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a saved classifier, without loading the forest."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such classifier file: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("metadata.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a vfm-features classifier file ({exc}).") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not a vfm-features classifier file (format {meta.get('format')!r}).")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(
            f"{path} was written by vfm-features {meta.get('library_version')} in format "
            f"{meta['format_version']}; this version reads format {FORMAT_VERSION}. Upgrade vfm-features.")
    return meta


def load_classifier(path: str | os.PathLike, *, extractor: Any = None, cache: Any = None):
    """Load a classifier saved with ``save``.

    ``extractor`` may pass an already built extractor instance (for example one
    holding loaded weights); it must have the signature the classifier was
    trained with, otherwise :class:`ExtractorMismatchError` is raised.
    """
    import skops.io as sio

    from vfm_features.classifiers.object import ObjectClassifier
    from vfm_features.classifiers.pixel import PixelClassifier

    meta = read_metadata(path)
    classes = {"PixelClassifier": PixelClassifier, "ObjectClassifier": ObjectClassifier}
    if meta["classifier"] not in classes:
        raise InputError(f"{path} holds an unknown classifier type {meta['classifier']!r}.")
    with zipfile.ZipFile(path) as zf:
        blob = zf.read("forest.skops")
    untrusted = sio.get_untrusted_types(data=blob)
    foreign = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if foreign:
        raise InputError(f"{path} contains types outside scikit-learn and numpy ({foreign}); refusing to load it.")
    forest = sio.loads(blob, trusted=untrusted)
    params = dict(meta["params"])
    for key in ("working_shape", "stats"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    clf = classes[meta["classifier"]](**params, cache=cache)
    clf.forest_ = forest
    clf.classes_ = np.asarray(meta["classes"])
    clf.n_features_in_ = meta["n_features_in"]
    clf.signature_ = meta["signature"]
    if meta.get("feature_names"):
        clf.feature_names_ = meta["feature_names"]
    if extractor is not None:
        if isinstance(extractor, str):
            from vfm_features.registry import get_extractor

            extractor = get_extractor(extractor, **(params.get("extractor_options") or {}))
        if isinstance(clf, PixelClassifier):
            clf.extractor_ = extractor
            sig = extractor.signature()
        else:
            clf._use_extractor(extractor)
            sig = clf.object_extractor_.signature()
        if sig != clf.signature_:
            raise ExtractorMismatchError(
                f"{path} was trained with features {clf.signature_}; the extractor given has {sig}. "
                "Use the extractor the classifier was trained with, or retrain it.")
    return clf
