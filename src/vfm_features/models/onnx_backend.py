"""Running an exported image encoder with onnxruntime: the same ``run`` as the torch backend, without torch.

The model input is prepared in numpy exactly as :mod:`.torch_backend` prepares
it in torch: images in 0..1 are scaled to the contract's value range, resized
with :func:`~vfm_features.models.numpy_resize.resize_bilinear_aa` (torch's
antialiased bilinear interpolation, reproduced to within 2 float32 ulps),
normalised with mean/std in float32 and zero-padded at the bottom and right.
The resize stays outside the graph: onnxruntime's antialiased ``Resize``
differs from torch's by up to 0.06 (on 0..1 images) when shrinking, and a graph
with one fixed input size serves every image and tile size.

Session options, chosen by measurement (``benchmarks/bench_onnx.py --arena``,
docs/onnx.md): the CPU memory arena is off - on a SAM ViT-B encoder at 1024 x 1024
it made no call faster beyond the noise of a shared machine but kept 2.7 GB more
memory (+2723 MiB peak vs +33 MiB; the issue also saw slow second calls with it) -;
all graph optimisations on, one inter-op thread and ``n_threads`` intra-op threads
(default: every usable core).
Nothing here imports torch.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from vfm_features.errors import InputError, PluginValidationError, WeightsError
from vfm_features.threads import thread_budget

from .contract import InputContract, InputLayout
from .numpy_resize import resize_bilinear_aa
from .onnx_folder import INPUT_NAME, OnnxFolder, check_graph, read_model, verify_files

__all__ = ["OnnxBackend", "model_input", "session_options"]


def model_input(image: np.ndarray, layout: InputLayout, contract: InputContract) -> np.ndarray:
    """(Y, X, 3) in 0..1 -> (1, 3, *padded) float32: scaled, resized, normalised, zero-padded (as the torch backend)."""
    view = np.ascontiguousarray(image, dtype=np.float32)
    if contract.value_range != 1:
        view = view * np.float32(contract.value_range)
    if layout.resized != tuple(view.shape[:2]):
        view = resize_bilinear_aa(view, layout.resized)
    mean = np.asarray(contract.mean, np.float32)
    std = np.asarray(contract.std, np.float32)
    x = np.zeros((1, 3) + tuple(layout.padded), np.float32)
    h, w = layout.resized
    x[0, :, :h, :w] = ((view - mean) / std).transpose(2, 0, 1)
    return x


def session_options(n_threads: int | None = None) -> Any:
    """onnxruntime SessionOptions as measured best on CPUs (see the module docstring)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(n_threads or thread_budget())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 3  # errors only: shape-inference notes are not the user's business
    return opts


def _session_error(folder: OnnxFolder, exc: Exception) -> WeightsError:
    import onnxruntime as ort

    text = " ".join(str(exc).split())
    detail = text if len(text) <= 300 else text[:300] + " …"
    runtime = f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())})"
    if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text or "not a registered" in text:
        fix = ("export it again without --int8, or run it with an onnxruntime that has these operators"
               if folder.quantization else "export it again, or install a newer onnxruntime")
        kind = f"{folder.quantization} " if folder.quantization else ""
        return WeightsError(f"{folder.model_path}: this {kind}model uses operators that {runtime} cannot run "
                            f"({detail}); {fix}.")
    return WeightsError(f"{folder.model_path}: {runtime} cannot load this model ({detail}). Export it again.")


class OnnxBackend:
    """An exported folder's model in an onnxruntime session, created on first use (thread-safe)."""

    def __init__(self, folder: OnnxFolder, *, n_threads: int | None = None, name: str = "") -> None:
        self.folder = folder
        self.n_threads = n_threads
        self.name = name or folder.extractor
        self._lock = threading.Lock()
        self._session: Any = None

    def load(self) -> Any:
        with self._lock:
            if self._session is None:
                self._session = self._create()
            return self._session

    def _create(self) -> Any:
        import onnx
        import onnxruntime as ort

        data = read_model(self.folder)
        try:
            model = onnx.load_from_string(data)
        except Exception as exc:  # noqa: BLE001 - a damaged protobuf fails in several ways
            raise WeightsError(f"{self.folder.model_path} cannot be read as an ONNX model ({exc}). "
                               "Export it again.") from None
        check_graph(self.folder, model)
        del model
        verify_files(self.folder, data)
        source = str(self.folder.model_path) if self.folder.has_external_data else data
        try:
            return ort.InferenceSession(source, sess_options=session_options(self.n_threads),
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise _session_error(self.folder, exc) from None

    def run(self, images: Sequence[np.ndarray], contract: InputContract) -> list[np.ndarray]:
        """(Y, X, 3) images in 0..1 -> their (C, rows, cols) output grids, cropped to the image's cells."""
        if contract != self.folder.contract:
            raise InputError(f"{self.name}: the exported model was made for the input contract "
                             f"{self.folder.contract}, not {contract}.")
        session = self.load()
        out = []
        for image in images:  # the exported graph takes one image: batches run one by one
            layout = contract.layout(image.shape[:2])
            grid = session.run(None, {INPUT_NAME: model_input(image, layout, contract)})[0]
            if list(grid.shape) != self.folder.meta["output_shape"]:
                raise WeightsError(f"{self.folder.model_path} gave an output of shape {list(grid.shape)}, but its "
                                   f"metadata says {self.folder.meta['output_shape']}. Export the model again.")
            grid, (rows, cols) = grid[0], layout.cells
            if grid.shape[-2] < rows or grid.shape[-1] < cols:
                raise PluginValidationError(
                    f"{self.name}: the exported model gave a {grid.shape[-2]} x {grid.shape[-1]} grid for a "
                    f"{layout.padded} input, but its contract promises at least {layout.cells}.")
            out.append(np.ascontiguousarray(grid[:, :rows, :cols], dtype=np.float32))
        return out
