"""vfm-features plugin: exported ONNX models as extractors, and the random forest run by onnxruntime.

Extractors:

- ``onnx:folder`` with ``path=DIR``: any folder written by ``vfm-features export-onnx``;
- ``family:variant@onnx`` (``@onnx-int8``): every export found in the per-user cache,
  ``<cache>/onnx/`` (where ``export-onnx`` writes without ``-o``), with its path filled in.

Heads: ``rf-onnx`` (pixel and object): the default forest, converted with skl2onnx
and predicted by onnxruntime.

Listing reads the small JSON metadata of each cached export; it imports neither
onnxruntime nor torch. Needs ``pip install 'vfm-features[onnx]'`` to run.
"""

from __future__ import annotations

import os

from vfm_features import ExtractorSpec, HeadSpec, hookimpl

__all__ = ["FOLDER_SPEC", "HEAD_SPECS", "cached_specs", "vfm_features_extractors", "vfm_features_heads"]

FACTORY = "vfm_features_onnx._extractor:OnnxExtractor"
_REQUIRES = ("onnxruntime", "onnx")
_INSTALL = "vfm-features[onnx]"

FOLDER_SPEC = ExtractorSpec(
    "onnx:folder", factory=FACTORY, requires=_REQUIRES, install=_INSTALL, default=True,
    description="a folder written by 'vfm-features export-onnx' (option path=DIR), run by onnxruntime")

HEAD_SPECS = (
    HeadSpec("rf-onnx", factory="vfm_features.heads.onnx_forest:OnnxForestPixelHead", kind="pixel",
             requires=("onnxruntime", "skl2onnx"), install=_INSTALL,
             description="the rf forest (64 trees of depth 10, at most 4096 labels per tree), predicted by "
                         "onnxruntime after skl2onnx conversion"),
    HeadSpec("rf-onnx", factory="vfm_features.heads.onnx_forest:OnnxForestObjectHead", kind="object",
             requires=("onnxruntime", "skl2onnx"), install=_INSTALL,
             description="the rf object forest (200 trees), predicted by onnxruntime after skl2onnx conversion"),
)


def cached_specs() -> list[ExtractorSpec]:
    """One spec per export in ``<cache>/onnx/`` whose metadata names an extractor (checked again when built).

    Only the metadata's format and extractor name are read here: a folder from
    another library version is listed, and building it says to export it again.
    A folder without readable metadata is left out. When two folders claim one
    name, the first in name order is kept.
    """
    from vfm_features.models.onnx_folder import CACHE_SUBDIR, peek, registered_name
    from vfm_features.models.weights import cache_root

    root = cache_root() / CACHE_SUBDIR
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    specs: dict[str, ExtractorSpec] = {}
    for folder in folders:
        meta = peek(folder)
        if meta is None:
            continue
        name = registered_name(meta["extractor"], meta.get("quantization"))
        if name not in specs:
            try:
                specs[name] = _spec(name, folder, meta)
            except (TypeError, ValueError, AttributeError):  # a malformed field: read_folder would refuse it
                continue
    return list(specs.values())


def _spec(name: str, folder, meta: dict) -> ExtractorSpec:
    fields = meta.get("spec") or {}
    size = (meta.get("contract") or {}).get("size")
    return ExtractorSpec(
        name, factory=FACTORY, requires=_REQUIRES, install=_INSTALL, options={"path": os.fspath(folder)},
        input_size=size if isinstance(size, int) else None, patch_size=int(fields.get("patch_size") or 1),
        halo=int(fields.get("halo") or 0), global_context=bool(fields.get("global_context", False)),
        input_channels=str(fields.get("input_channels", "any")), license=str(fields.get("license", "")),
        description=f"{fields.get('description') or meta['extractor']} "
                    f"(ONNX {meta.get('quantization') or 'float32'}, {folder.name})")


@hookimpl
def vfm_features_extractors():
    return [FOLDER_SPEC, *cached_specs()]


@hookimpl
def vfm_features_heads():
    return list(HEAD_SPECS)
