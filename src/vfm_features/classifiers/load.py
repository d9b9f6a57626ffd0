"""Loading a ``.vfmc`` classifier file: rebuild from registered parts, check everything, widen no trust."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vfm_features.errors import ExtractorMismatchError, InputError, UnknownExtractorError
from vfm_features.features.reduce import ChannelPCA
from vfm_features.registry import default_registry

from .fileformat import MAX_BYTES, TRUST_OPTIONS, read_parts
from .object import ObjectClassifier
from .pixel import PixelClassifier

_CLASSES = {"PixelClassifier": PixelClassifier, "ObjectClassifier": ObjectClassifier}


def _missing_plugin(path: Any, what: str, block: dict[str, Any], exc: Exception) -> Exception:
    prov = block.get("provenance") or {}
    dist, version = prov.get("distribution"), prov.get("version")
    if dist and dist not in ("unregistered", "vfm-features"):
        return UnknownExtractorError(
            f"{path} was trained with the {what} {block['name']!r} from the plugin {dist} {version}, which is not "
            f"installed here. Install it (pip install '{dist}') and load the file again.")
    return exc


def _refuse_trust_options(path: Any, what: str, options: dict[str, Any], factory: Any) -> None:
    widening = (set(TRUST_OPTIONS) | set(getattr(factory, "TRUST_OPTIONS", ()))) & set(options)
    if widening:
        raise InputError(
            f"{path} sets the {what} option(s) {sorted(widening)}, which load files or code; a classifier file "
            "may not set them. If you trust this file's origin, pass those options yourself when loading "
            "(load_classifier(path, extractor_options={...}); on the command line --weights / --trust-checkpoint).")


def _check_intensity(path: Any, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    ok = (isinstance(value, dict) and set(value) == {"p1", "p99"}
          and all(isinstance(value[k], list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       for v in value[k]) for k in ("p1", "p99"))
          and len(value["p1"]) == len(value["p99"]))
    if not ok:
        raise InputError(f"{path} is not a valid vfm-features classifier file: its intensity record is malformed.")
    return {"p1": [float(v) for v in value["p1"]], "p99": [float(v) for v in value["p99"]]}


def _reduction(path: Any, meta: dict[str, Any], arrays: dict[str, Any]) -> ChannelPCA | None:
    """The file's channel reduction, checked against its ``reduce`` parameter (both or neither)."""
    block, k = meta["reduce"], meta["params"].get("reduce")
    if block is None and k is None:
        return None
    if block is None or k is None:
        raise InputError(f"{path}: its reduce parameter ({k!r}) and its channel reduction "
                         f"({'none' if block is None else 'present'}) disagree; the file was edited or damaged.")
    try:
        reduction = ChannelPCA.from_state(block["params"], arrays)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if reduction.n_components != k:
        raise InputError(f"{path}: its reduce parameter is {k!r} but its channel reduction keeps "
                         f"{reduction.n_components} components; the file was edited or damaged.")
    return reduction


def load_classifier(path: str | os.PathLike, *, extractor_options: dict | None = None, extractor: Any = None,
                    upsampler_options: dict | None = None, cache: Any = None, max_bytes: int = MAX_BYTES) -> Any:
    """Load a classifier saved with ``save`` and check that its features can be reproduced here.

    The file names the extractor, upsampler and head and their saved options; it
    never sets options that load files or code. Pass those yourself:
    ``extractor_options={"weights": "vit_b_lm.pt"}`` (and ``trust_checkpoint`` for
    a checkpoint you trust), or an already built ``extractor``. The signature -
    extractor, options, weights hash, plugin version, upsampler, channel reduction - is
    compared before anything is embedded; a difference raises :class:`ExtractorMismatchError`.
    ``upsampler_options`` gives the upsampler's trust options the same way
    (``{"weights": "anyup_paper.pth"}``).
    ``max_bytes`` bounds the memory the file's contents may take (default 1 GiB).
    """
    meta, parts = read_parts(path, max_bytes=max_bytes)
    arrays = parts["head"]
    reduction = _reduction(path, meta, parts["reduce"])
    registry = default_registry()
    kind = meta["head"]["kind"]
    cls = _CLASSES[meta["classifier"]]

    ext = meta["extractor"]
    try:
        spec = registry.resolve(ext["name"])
    except UnknownExtractorError as exc:
        raise _missing_plugin(path, "extractor", ext, exc) from None
    _refuse_trust_options(path, "extractor", ext.get("options", {}), spec.load_factory())
    options = {**ext.get("options", {}), **(extractor_options or {})}

    up = meta["upsampler"]
    up_options = None
    if up is not None:
        try:
            up_spec = registry.upsampler_spec(up["name"])
        except UnknownExtractorError as exc:
            raise _missing_plugin(path, "upsampler", up, exc) from None
        _refuse_trust_options(path, "upsampler", up.get("options", {}), up_spec.load_factory())
        up_options = {**up.get("options", {}), **(upsampler_options or {})}

    head_block = meta["head"]
    try:
        head_spec = registry.head_spec(head_block["name"], kind)
    except UnknownExtractorError as exc:
        raise _missing_plugin(path, f"{kind} head", head_block, exc) from None
    head = head_spec.load_factory().from_state(head_block["params"], arrays, n_features=meta["n_features_in"])
    if [int(c) for c in np.asarray(head.classes_).tolist()] != meta["classes"]:
        raise InputError(f"{path}: the classes in its metadata {meta['classes']} differ from those of its head "
                         f"{np.asarray(head.classes_).tolist()}; the file was edited or damaged. Refusing it.")
    if int(head.n_features_in_) != meta["n_features_in"]:
        raise InputError(f"{path}: its metadata says {meta['n_features_in']} features, its head {head.n_features_in_}.")

    params = dict(meta["params"])
    for key in ("working_shape", "stats"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    clf = cls(extractor=extractor if extractor is not None else ext["name"], extractor_options=options,
              upsampler=up["name"] if up is not None else "bilinear", upsampler_options=up_options,
              head=head_block["name"], head_options=head.get_params() if hasattr(head, "get_params") else None,
              cache=cache, **params)
    clf._check_params()
    clf.head_ = head
    clf.classes_ = np.asarray(head.classes_)
    clf.n_features_in_ = meta["n_features_in"]
    clf.signature_ = meta["signature"]
    if reduction is not None:
        clf.reduction_ = reduction
    if meta["feature_names"]:
        clf.feature_names_ = [str(n) for n in meta["feature_names"]]
    clf.intensity_range_ = _check_intensity(path, meta["intensity"])
    try:
        clf._check_signature()
    except ExtractorMismatchError as exc:
        raise ExtractorMismatchError(f"{path}: {exc}") from None
    return clf
