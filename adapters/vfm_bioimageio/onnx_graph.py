"""Export a pipeline module to ONNX with free batch and spatial axes, and check it against the library.

torch's dynamo exporter (``torch.export`` in strict mode, then ``torch.onnx.export``;
needs the ``onnxscript`` package) keeps symbolic sizes where the TorchScript
exporter would freeze them: extractors compute their token grid from
``len(batch)``, which strict tracing keeps symbolic. The graph is then run by
onnxruntime on the test image, and its output must match the library's
prediction (:func:`check_parity`), or nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

import vfm_features as vf


__all__ = ["MISMATCH_PPM", "OPSET", "TOLERANCE", "check_parity", "export_graph", "run_graph"]

OPSET = 18
#: largest difference between the graph's output and the library's that counts as agreement
TOLERANCE = 1e-4
#: most elements per million allowed to differ by more than TOLERANCE: a feature that lies within float rounding
#: of a split threshold can send one tree the other way (a step of 1 / n_trees in the probabilities). Measured with
#: tiny DINOv3 models on the synthetic data: 3-15 per million, no class changed; one pixel of a 64 x 64 test image
#: with three classes is already 160-240 per million, hence this budget (declared in every package's rdf).
MISMATCH_PPM = 1000
_MAX_SIDE = 1 << 15


def export_graph(module: Any, inputs: dict[str, np.ndarray], outputs: Sequence[str], path: Path) -> None:
    """Write ``module`` as a self-contained ONNX file.

    ``inputs``: example arrays by name, in the order of ``module.forward``'s
    arguments, each with the batch axis first and the spatial axes (y, x >= 2)
    last; those axes stay free in the graph (shared by all inputs).
    """
    import torch

    try:
        import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)
    except ImportError:
        raise vf.InputError("Packaging needs the onnxscript package (torch's ONNX exporter): "
                         "pip install 'vfm-features[bioimageio]'.") from None
    batch = torch.export.Dim("batch", min=1, max=1024)
    y, x = (torch.export.Dim(a, min=2, max=_MAX_SIDE) for a in ("y", "x"))
    examples, shapes = [], {}
    for name, array in inputs.items():
        # sizes 0 and 1 are specialised by torch.export: trace a batch of two different images
        array = np.ascontiguousarray(array[:1])
        examples.append(torch.from_numpy(np.concatenate([array, np.ascontiguousarray(array[..., ::-1, :])])))
        shapes[name] = {0: batch, array.ndim - 2: y, array.ndim - 1: x}
    with torch.no_grad():
        try:
            program = torch.export.export(module, tuple(examples), dynamic_shapes=shapes, strict=True)
        except Exception as exc:  # torch's export errors have many types; all mean "not traceable"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise vf.InputError(f"The classifier's pipeline could not be traced with free batch and image sizes "
                             f"({first}); it cannot be packaged.") from None
        onnx_program = torch.onnx.export(program, opset_version=OPSET, input_names=list(inputs),
                                         output_names=list(outputs), verbose=False)
    onnx_program.save(str(path))


def run_graph(path: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The graph's outputs for ``inputs`` (arrays by name), run by onnxruntime on one CPU thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return session.run(None, {k: np.ascontiguousarray(v) for k, v in inputs.items()})


def check_parity(expected: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """How far the graph's output is from the library's: largest difference and mismatches per million.

    An element mismatches when it differs by more than :data:`TOLERANCE` (for a
    class image: when it differs). More than :data:`MISMATCH_PPM` per million
    raises InputError: the package is not written.
    """
    if expected.shape != got.shape:
        raise vf.InputError(f"The exported graph gives shape {got.shape} where the library gives {expected.shape}; "
                         "the package would not predict like the classifier, so it is not written.")
    diff = np.abs(expected.astype(np.float64) - got.astype(np.float64))
    largest = float(diff.max()) if diff.size else 0.0
    ppm = 1e6 * float(np.count_nonzero(~(diff <= TOLERANCE))) / max(diff.size, 1)
    if ppm > MISMATCH_PPM:
        raise vf.InputError(f"The exported graph differs from the library's prediction by more than {TOLERANCE} at "
                         f"{ppm:.0f} per million elements (largest difference {largest:.3g}; at most {MISMATCH_PPM} "
                         "allowed); the package is not written.")
    return {"max_difference": largest, "mismatched_per_million": ppm}
