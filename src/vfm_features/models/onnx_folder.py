"""An exported ONNX model folder: its layout, its metadata and the checks run before anything is loaded.

A folder written by ``vfm-features export-onnx`` holds::

    model.onnx        the image encoder: input "images" (1, 3, S, S) float32, normalised and
                      padded by the core; output "features" (1, C, h, w)
    model.onnx.data   only for models over 2 GB: the weights (ONNX external data)
    vfm-onnx.json     metadata (UTF-8 JSON, at most 1 MiB): library version, source extractor,
                      its signature and saved options, input contract, output channels, opset,
                      quantisation, parity figures, file sizes and sha256 checksums

An exported folder is a file people exchange: reading it never runs code and
never widens trust. :func:`read_folder` parses and checks the JSON (no ONNX
library needed, so listing stays cheap); :func:`check_graph` checks the graph
before onnxruntime sees it: only operators of the standard ONNX domains and
onnxruntime's built-in ``com.microsoft`` domain (never custom operator
libraries), no local functions, external data only in ``model.onnx.data``, the
input size the metadata promises, and sizes within bounds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from vfm_features._version import __version__
from vfm_features.errors import InputError, WeightsError
from vfm_features.hashing import content_hash

from .contract import InputContract

FORMAT = "vfm-features-onnx"
FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
META_FILE = "vfm-onnx.json"
INPUT_NAME = "images"
OUTPUT_NAME = "features"
MAX_METADATA_BYTES = 1 << 20
MAX_MODEL_BYTES = 8 << 30  # ViT-H in float32 is 2.5 GB
#: operator domains an exported graph may use: standard ONNX, ONNX-ML, onnxruntime's built-in contrib operators
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
QUANTIZATIONS = ("int8",)
_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "format": str, "format_version": int, "library_version": str, "extractor": str, "signature": dict,
    "options": dict, "spec": dict, "contract": dict, "features_per_image": int, "input_shape": list,
    "output_shape": list, "opset": int, "exporter": str, "quantization": (str, type(None)), "parity": dict,
    "files": dict,
}
_SPEC_KEYS = {"patch_size": int, "halo": int, "global_context": bool, "input_channels": str,
              "description": str, "license": str}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad(folder: Path, what: str) -> InputError:
    return InputError(f"{folder} is not a valid exported model folder: {what}. Export it again with "
                      "'vfm-features export-onnx'.")


def contract_from_dict(data: Any, folder: Path) -> InputContract:
    """An :class:`InputContract` from its ``as_dict()`` form, every field type-checked."""
    keys = {"size", "resize", "stride", "mean", "std", "value_range", "multiple"}
    if not isinstance(data, dict) or set(data) != keys:
        raise _bad(folder, f"its input contract must have exactly the keys {sorted(keys)}")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for k in ("mean", "std") for v in (data[k] if isinstance(data[k], list) else [None]))
    ok = (_is_int(data["size"]) and data["size"] > 0 and data["resize"] in ("longest", "stretch")
          and _is_int(data["stride"]) and _is_int(data["multiple"]) and numbers
          and isinstance(data["value_range"], (int, float)) and not isinstance(data["value_range"], bool)
          and math.isfinite(data["value_range"]) and data["value_range"] > 0)
    if not ok:
        raise _bad(folder, "its input contract holds values of the wrong type (a fixed size is needed)")
    return InputContract(size=data["size"], resize=data["resize"], stride=data["stride"],
                         mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
                         value_range=float(data["value_range"]), multiple=data["multiple"])


@dataclass(frozen=True)
class OnnxFolder:
    """A checked exported folder: its path and metadata (see the module docstring)."""

    path: Path
    meta: dict

    @property
    def extractor(self) -> str:
        """The name of the extractor that was exported (``sam:vit_b``)."""
        return self.meta["extractor"]

    @property
    def contract(self) -> InputContract:
        return contract_from_dict(self.meta["contract"], self.path)

    @property
    def features_per_image(self) -> int:
        return self.meta["features_per_image"]

    @property
    def quantization(self) -> str | None:
        return self.meta["quantization"]

    @property
    def spec_fields(self) -> dict[str, Any]:
        return dict(self.meta["spec"])

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def has_external_data(self) -> bool:
        return DATA_FILE in self.meta["files"]

    def identity(self) -> str:
        """What the features depend on: the files' checksums, the contract, the channels and the source.

        Used as the ONNX extractor's ``weights_hash``; the files are checked
        against these checksums before a session is created (:func:`verify_files`).
        """
        m = self.meta
        return "onnx:" + content_hash({k: m[k] for k in ("files", "contract", "features_per_image", "signature",
                                                          "quantization", "input_shape")})


def peek(path: str | os.PathLike) -> dict | None:
    """The metadata of a folder if it is vfm-features ONNX metadata naming an extractor, else None (for listing).

    Only the format and the extractor name are checked; :func:`read_folder`
    checks everything before the folder is used.
    """
    meta_path = Path(path) / META_FILE
    try:
        if meta_path.stat().st_size > MAX_METADATA_BYTES:
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(meta, dict) and meta.get("format") == FORMAT and isinstance(meta.get("extractor"), str)
          and ":" in meta["extractor"] and meta.get("quantization") in (None, *QUANTIZATIONS))
    return meta if ok else None


def read_folder(path: str | os.PathLike) -> OnnxFolder:
    """Read and check an exported folder's metadata (JSON only: cheap, no ONNX library imported)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is a file"
        raise InputError(f"{folder} {what}; give the folder that 'vfm-features export-onnx' wrote (it holds "
                         f"{MODEL_FILE} and {META_FILE}).")
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise InputError(f"{folder} has no {META_FILE}, so how to prepare images for its model is unknown; "
                         "export the model with 'vfm-features export-onnx', which writes it.")
    size = meta_path.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise _bad(folder, f"{META_FILE} has {size} bytes, more than the {MAX_METADATA_BYTES} allowed")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(folder, f"{META_FILE} is not UTF-8 JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(folder, f"{META_FILE} is not vfm-features ONNX metadata")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _bad(folder, f"its metadata has format version {meta.get('format_version')!r}; this vfm-features "
                           f"reads version {FORMAT_VERSION}")
    for key, kind in _SCHEMA.items():
        if key not in meta or not isinstance(meta[key], kind) or (kind is int and isinstance(meta[key], bool)):
            raise _bad(folder, f"its metadata lacks {key!r} or holds a value of the wrong type there")
    if meta["library_version"] != __version__:
        raise InputError(f"{folder} was exported with vfm-features {meta['library_version']}, and this is "
                         f"vfm-features {__version__}; the preprocessing may differ between versions. Export the "
                         "model again with this version ('vfm-features export-onnx').")
    _check_meta(folder, meta)
    return OnnxFolder(folder, meta)


def _check_meta(folder: Path, meta: dict) -> None:
    contract = contract_from_dict(meta["contract"], folder)
    if meta["features_per_image"] < 1:
        raise _bad(folder, "features_per_image must be positive")
    shape = meta["input_shape"]
    if shape != [1, 3, contract.size, contract.size]:
        raise _bad(folder, f"its input shape {shape} is not [1, 3, size, size] for the contract size {contract.size}")
    out = meta["output_shape"]
    if (len(out) != 4 or not all(_is_int(v) and v > 0 for v in out)
            or out[:2] != [1, meta["features_per_image"]]):
        raise _bad(folder, f"its output shape {out} is not [1, features_per_image, rows, cols]")
    if meta["quantization"] is not None and meta["quantization"] not in QUANTIZATIONS:
        raise _bad(folder, f"quantization {meta['quantization']!r} is unknown")
    if not isinstance(meta["extractor"], str) or ":" not in meta["extractor"]:
        raise _bad(folder, f"the extractor name {meta['extractor']!r} is not 'family:variant'")
    for key, kind in _SPEC_KEYS.items():
        value = meta["spec"].get(key)
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
            raise _bad(folder, f"its spec field {key!r} is missing or of the wrong type")
    files = meta["files"]
    if MODEL_FILE not in files or not set(files) <= {MODEL_FILE, DATA_FILE}:
        raise _bad(folder, f"its file list must name {MODEL_FILE} (and {DATA_FILE} for large models) only")
    for name, entry in files.items():
        if (not isinstance(entry, dict) or set(entry) != {"bytes", "sha256"} or not _is_int(entry["bytes"])
                or not 0 < entry["bytes"] <= MAX_MODEL_BYTES or not isinstance(entry["sha256"], str)
                or len(entry["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in entry["sha256"])):
            raise _bad(folder, f"its entry for {name} must give bytes (at most {MAX_MODEL_BYTES}) and a sha256")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def read_model(folder: OnnxFolder) -> bytes:
    """model.onnx's bytes (a bounded read; checked against the metadata by :func:`verify_files`)."""
    path = folder.model_path
    if not path.is_file():
        raise WeightsError(f"{folder.path} lacks {MODEL_FILE}; copy the whole folder, or export the model again.")
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise WeightsError(f"{path} has {size} bytes, more than the {MAX_MODEL_BYTES} an exported model may have.")
    return path.read_bytes()


def verify_files(folder: OnnxFolder, model_bytes: bytes) -> None:
    """Check every file's size and sha256 against the metadata (model.onnx from the bytes read already)."""
    for name, entry in folder.meta["files"].items():
        path = folder.path / name
        if name == MODEL_FILE:
            digest = hashlib.sha256(model_bytes).hexdigest()
        else:
            if not path.is_file() or path.stat().st_size != entry["bytes"]:
                raise WeightsError(f"{path} is missing or has another size than its metadata says; copy the whole "
                                   "folder, or export the model again.")
            digest = file_sha256(path)
        if digest != entry["sha256"]:
            raise WeightsError(f"{path} does not match the sha256 in {META_FILE}: the file is damaged or was "
                               "replaced. Export the model again.")


def _nodes(graph: Any) -> Iterator[Any]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and len(attr.g.node):
                yield from _nodes(attr.g)
            for sub in attr.graphs:
                yield from _nodes(sub)


def check_graph(folder: OnnxFolder, model: Any) -> None:
    """Check a loaded ``onnx.ModelProto`` (without external data) against the folder's metadata and the rules above."""
    from onnx import TensorProto

    where = folder.model_path
    domains = {op.domain for op in model.opset_import} | {n.domain for n in _nodes(model.graph)}
    foreign = sorted(d for d in domains if d not in ALLOWED_DOMAINS)
    if foreign:
        raise InputError(f"{where} uses operators from the domain(s) {foreign}; vfm-features runs only standard "
                         "ONNX operators and onnxruntime's built-in ones (never custom operator libraries). "
                         "Export the model with 'vfm-features export-onnx'.")
    if len(model.functions):
        raise InputError(f"{where} defines local functions, which 'vfm-features export-onnx' never writes; export "
                         "the model again.")
    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location")
            if location != DATA_FILE or not folder.has_external_data:
                raise InputError(f"{where} reads weights from {location!r}; an exported model may read only "
                                 f"{DATA_FILE} in its own folder. Export the model again.")
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(model.graph.output) != 1:
        raise InputError(f"{where} must have one input {INPUT_NAME!r} and one output; export the model again.")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    expected = folder.meta["input_shape"]
    if dims != expected:
        raise InputError(f"{where} takes inputs of shape {dims}, but its metadata ({META_FILE}) says {expected}: "
                         "the ONNX file is not the one exported with this metadata. Export the model again for "
                         "the input size you want ('vfm-features export-onnx NAME -O input_size=...').")


#: sub-folder of the per-user cache where exported folders are found by the onnx plugin
CACHE_SUBDIR = "onnx"


def registered_name(extractor: str, quantization: str | None) -> str:
    """The registry name of an export found in the cache: ``sam:vit_b@onnx``, ``sam:vit_b@onnx-int8``."""
    return f"{extractor}@onnx" + (f"-{quantization}" if quantization else "")


def default_folder(extractor: str, quantization: str | None) -> Path:
    """Where ``vfm-features export-onnx NAME`` writes without ``-o``: ``<cache>/onnx/<family>-<variant>[-int8]``."""
    from .weights import cache_root

    return cache_root() / CACHE_SUBDIR / (extractor.replace(":", "-") + (f"-{quantization}" if quantization else ""))
