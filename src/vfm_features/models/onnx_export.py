"""Exporting a model extractor's image encoder to an ONNX folder, checked for parity before it is written.

:func:`export_onnx` traces ``extractor.forward(model, batch)`` at the extractor's
fixed input size with torch's TorchScript-based exporter (opset 17; it needs no
extra package, and a fixed input shape is what this format wants: the core
resizes and pads every image and tile to it), optionally quantises the weights
of its matrix products to int8 (onnxruntime's dynamic quantisation, per-channel
signed weights; convolutions stay float32), then
runs a sample image through both backends - the extractor's torch backend and
:class:`~vfm_features.models.onnx_backend.OnnxBackend` on the new folder, each
with its own preprocessing - and compares the outputs. A model whose cosine
similarity or largest difference misses the bound is not written. The folder
is assembled in a hidden temporary next to its target and renamed into place
when complete, so it appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vfm_features._version import __version__
from vfm_features.errors import InputError
from vfm_features.hashing import jsonable
from vfm_features.io import clean_stale_temporaries, replace_folder, temporary_name

from .onnx_folder import (
    DATA_FILE,
    FORMAT,
    FORMAT_VERSION,
    INPUT_NAME,
    META_FILE,
    MODEL_FILE,
    OUTPUT_NAME,
    file_entry,
    read_folder,
)

__all__ = ["DEFAULT_MIN_COSINE", "MAX_RELATIVE_DIFFERENCE", "export_onnx", "parity", "sample_image"]

OPSET = 17
#: smallest cosine similarity to the torch output a model must reach to be written (the user may change it)
DEFAULT_MIN_COSINE = {None: 0.99999, "int8": 0.99}
#: float32 models must also keep every value within this fraction of the largest torch value
MAX_RELATIVE_DIFFERENCE = 1e-3
_TWO_GB = 2_000_000_000
#: operators whose weights --int8 quantises: the matrix products that hold a transformer's weights. Convolutions
#: stay float32 (onnxruntime's ConvInteger is slower than its float convolution, and the quantiser cannot handle
#: convolutions whose weights the exporter computes, as in MobileSAM's TinyViT)
QUANTIZED_OPS = ["MatMul", "Gemm"]


def sample_image(size: int, seed: int = 0) -> np.ndarray:
    """A reproducible (Y, X, 3) test image in 0..1, not square, so that resizing and padding are exercised."""
    rng = np.random.default_rng(seed)
    h, w = max(8, (size * 3) // 4 + 5), size + 9
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = [0.5 + 0.4 * np.sin(2 * np.pi * (f * x + g * y)) for f, g in ((3, 1), (1, 4), (5, 2))]
    image = np.stack(base, axis=-1) + 0.1 * rng.standard_normal((h, w, 3))
    return np.clip(image, 0, 1).astype(np.float32)


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Largest absolute difference, the reference's largest value and the cosine similarity (in float64)."""
    a = np.asarray(reference, np.float64).ravel()
    b = np.asarray(candidate, np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"The exported model gives {b.size} values where torch gives {a.size}; it cannot be used.")
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    return {"max_abs": float(np.abs(a - b).max()), "reference_max_abs": float(np.abs(a).max()), "cosine": cosine}


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() or target.is_symlink():
        if not target.is_dir() or not (target / META_FILE).is_file():
            raise InputError(f"{target} exists and is not a folder written by 'vfm-features export-onnx'; "
                             "choose another output folder.")
        if not overwrite:
            raise InputError(f"{target} exists already; pass --overwrite (overwrite=True) to replace it, or choose "
                             "another output folder.")


def _traced(extractor: Any) -> Any:
    """A CPU torch module that runs ``extractor.forward`` on the extractor's own loaded network."""
    import copy

    import torch

    model = extractor.backend().load()
    if str(extractor.backend().device or "cpu") != "cpu":
        model = copy.deepcopy(model).to("cpu")

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: Any) -> Any:
            out = extractor.forward(self.net, x)
            self.output_shape = [int(v) for v in out.shape]  # seen while tracing: no extra forward pass
            return out

    return Forward().eval()


def _export_graph(module: Any, size: int, folder: Path, opset: int) -> list[int]:
    """Trace ``module`` at (1, 3, size, size) into ``folder/model.onnx`` (+ model.onnx.data past 2 GB)."""
    import onnx
    import torch

    scratch = folder / "_scratch"
    scratch.mkdir()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation notes about the exporter itself
        torch.onnx.export(module, (torch.zeros(1, 3, size, size),), str(scratch / MODEL_FILE), dynamo=False,
                          opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          do_constant_folding=True)
    written = list(scratch.iterdir())
    if len(written) == 1 and (scratch / MODEL_FILE).stat().st_size < _TWO_GB:
        os.replace(scratch / MODEL_FILE, folder / MODEL_FILE)
    else:  # the exporter wrote one file per large tensor: gather them into one data file
        model = onnx.load(str(scratch / MODEL_FILE), load_external_data=True)
        onnx.save_model(model, str(folder / MODEL_FILE), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=DATA_FILE, size_threshold=1024)
    shutil.rmtree(scratch)
    return module.output_shape


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization warns on the root logger (advice, types it leaves in float); keep it quiet."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.ERROR

    drop = _Drop()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def _quantize(folder: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = folder / ("fp32-" + MODEL_FILE)
    os.replace(folder / MODEL_FILE, fp32)
    external = (folder / DATA_FILE).exists()
    if external:
        os.replace(folder / DATA_FILE, folder / ("fp32-" + DATA_FILE))  # the graph names it: fix the reference
        import onnx

        model = onnx.load(str(fp32), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = "fp32-" + DATA_FILE
        onnx.save_model(model, str(fp32))
    with warnings.catch_warnings(), _quiet_root_logger():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(fp32), str(folder / MODEL_FILE), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=QUANTIZED_OPS, use_external_data_format=external)
    fp32.unlink()
    (folder / ("fp32-" + DATA_FILE)).unlink(missing_ok=True)


def _install(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished temporary folder onto ``target`` (an old export moved aside, then removed)."""
    _check_target(target, overwrite)
    replace_folder(tmp, target)


def export_onnx(extractor: Any, target: str | os.PathLike, *, int8: bool = False, opset: int = OPSET,
                min_cosine: float | None = None, overwrite: bool = False, n_threads: int | None = None,
                sample: np.ndarray | None = None) -> dict[str, Any]:
    """Export ``extractor``'s image encoder into the folder ``target``; returns the metadata written.

    ``int8`` quantises the weights of the matrix products (smaller, faster on CPUs,
    slightly different features: the parity figures say how much). ``min_cosine`` is the smallest
    cosine similarity to torch's output on ``sample`` (default: 0.99999, or 0.99
    with ``int8``); float32 exports must also stay within 1e-3 of the largest
    torch value. A model that misses either bound raises :class:`InputError` and
    nothing is written.
    """
    from .base import ModelExtractor
    from .onnx_backend import OnnxBackend

    if not isinstance(extractor, ModelExtractor):
        raise InputError(f"{extractor.name} is not a neural-network extractor (a ModelExtractor); only those have "
                         "an image encoder to export.")
    if type(extractor).backend is not ModelExtractor.backend:
        raise InputError(f"{extractor.name} does not run through torch (it is an exported model already?); export "
                         "the torch extractor it came from instead.")
    if extractor.options.get("precision", "float32") != "float32":
        raise InputError(f"{extractor.name} runs in {extractor.options['precision']}; export it with "
                         "precision='float32' (the exported model computes in float32, or int8 with --int8).")
    contract = extractor.input_contract()
    if contract.size is None:
        raise InputError(f"{extractor.name} has no fixed input size (input_size=None); an exported model needs one: "
                         "pass an input size, e.g. -O input_size=1024.")
    quantization = "int8" if int8 else None
    bound = DEFAULT_MIN_COSINE[quantization] if min_cosine is None else float(min_cosine)
    if not 0 < bound <= 1:
        raise InputError(f"min_cosine={min_cosine!r}; give a similarity in (0, 1], e.g. 0.999.")
    target = Path(target).expanduser()
    _check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(target.parent)  # folders a killed export left behind
    tmp = temporary_name(target)
    tmp.mkdir()
    try:
        module = _traced(extractor)
        output_shape = _export_graph(module, int(contract.size), tmp, opset)
        if int8:
            _quantize(tmp)
        image = sample_image(int(contract.size)) if sample is None else np.asarray(sample, np.float32)
        reference = extractor.backend().run([image], contract)[0]
        spec = extractor.spec
        meta: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "library_version": __version__,
            "extractor": extractor.name, "signature": jsonable(extractor.signature()),
            "options": jsonable(extractor.saved_options()),
            "spec": {"patch_size": int(spec.patch_size), "halo": int(spec.halo),
                     "global_context": bool(spec.global_context), "input_channels": spec.input_channels,
                     "description": spec.description, "license": spec.license},
            "contract": contract.as_dict(), "features_per_image": int(extractor.features_per_image),
            "input_shape": [1, 3, int(contract.size), int(contract.size)], "output_shape": output_shape,
            "opset": int(opset), "exporter": _exporter_name(), "quantization": quantization, "parity": {},
            "files": {name: file_entry(tmp / name) for name in (MODEL_FILE, DATA_FILE) if (tmp / name).exists()},
        }
        if len(output_shape) != 4 or output_shape[:2] != [1, meta["features_per_image"]]:
            raise InputError(f"{extractor.name}'s forward pass gives outputs of shape {output_shape}, not (1, "
                             f"{meta['features_per_image']}, rows, cols); it cannot be exported as it is.")
        _write_json(tmp / META_FILE, meta)
        candidate = OnnxBackend(read_folder(tmp), n_threads=n_threads, name=extractor.name).run([image], contract)[0]
        figures = parity(reference, candidate)
        figures.update(min_cosine=bound, sample=f"sample_image({int(contract.size)}): {list(image.shape)}")
        rel_ok = quantization is not None or figures["max_abs"] <= MAX_RELATIVE_DIFFERENCE * max(
            figures["reference_max_abs"], 1e-12)
        if figures["cosine"] < bound or not rel_ok:
            raise InputError(
                f"The ONNX export of {extractor.name} differs from torch on the sample image (cosine "
                f"{figures['cosine']:.6f}, required >= {bound}; largest difference {figures['max_abs']:.3g} "
                f"of {figures['reference_max_abs']:.3g}); nothing was written. "
                + ("Lower the bound with --min-cosine if you accept this int8 model, or export without --int8."
                   if quantization else "Report this as a bug of the exporter for this model."))
        meta["parity"] = figures
        _write_json(tmp / META_FILE, meta)
        _install(tmp, target, overwrite)
        from vfm_features.registry import default_registry

        default_registry().refresh()  # an export into the cache is listed as NAME@onnx from now on
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _exporter_name() -> str:
    import onnx
    import torch

    return f"torch.onnx.export(dynamo=False), torch {torch.__version__}, onnx {onnx.__version__}"


def _write_json(path: Path, data: dict) -> None:
    import json

    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
