"""Running a model extractor's network with torch: input batches by the contract, forward, crop.

One implementation for every model family: images in 0..1 are scaled to the
contract's value range, resized (bilinear, antialiased) to the model input,
normalised with mean/std and zero-padded; batches hold consecutive inputs of one
shape, ``batch_size`` at a time; outputs are cropped to the cells that cover the
image. An exported ONNX model will be a second backend with the same ``run``.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any, Sequence

import numpy as np

from .contract import InputContract, InputLayout
from vfm_features.threads import apply_torch_threads

from .device import autocast, resolve_device


class TorchBackend:
    """The network of one :class:`~vfm_features.ModelExtractor`, built on first use (thread-safe)."""

    def __init__(self, extractor: Any) -> None:
        self.extractor = extractor
        self._lock = threading.Lock()
        self._model: Any = None
        self._device: str | None = None
        self._cpu_model: Any = None  # after an MPS operation turned out to be missing

    @property
    def device(self) -> str | None:
        return self._device

    def load(self) -> Any:
        with self._lock:
            if self._model is None:
                device = resolve_device(self.extractor.options["device"])
                model = self.extractor.load_model(device)
                if hasattr(model, "eval"):
                    model = model.eval().requires_grad_(False).to(device)
                self._model, self._device = model, device
            return self._model

    def run(self, images: Sequence[np.ndarray], contract: InputContract) -> list[np.ndarray]:
        """(Y, X, 3) images in 0..1 -> their (C, rows, cols) output grids, cropped to the image's cells."""
        self.load()
        apply_torch_threads()  # the library's thread budget (VFM_FEATURES_THREADS / set_threads)
        layouts = [contract.layout(img.shape[:2]) for img in images]
        batch_size = self.extractor.batch_size
        out: list[np.ndarray] = []
        start = 0
        while start < len(images):
            stop = start + 1
            while (stop < len(images) and stop - start < batch_size
                   and layouts[stop].padded == layouts[start].padded):
                stop += 1
            out += self._run_batch(images[start:stop], layouts[start:stop], contract)
            start = stop
        return out

    def _run_batch(self, images: Sequence[np.ndarray], layouts: Sequence[InputLayout],
                   contract: InputContract) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            batch = torch.cat([self._model_input(img, lay, contract) for img, lay in zip(images, layouts)])
            with autocast(self._device, self.extractor.options["precision"]):
                grid = self._forward(batch)
            grid = grid.float().cpu().numpy()
        result = []
        for g, lay in zip(grid, layouts):
            self.extractor.check_output(g, lay)
            result.append(np.ascontiguousarray(g[:, :lay.cells[0], :lay.cells[1]]))
        return result

    def _model_input(self, image: np.ndarray, layout: InputLayout, contract: InputContract) -> Any:
        """(Y, X, 3) in 0..1 -> (1, 3, *padded): scaled, resized, normalised, zero-padded."""
        import torch
        import torch.nn.functional as F

        view = image if contract.value_range == 1 else image * np.float32(contract.value_range)
        t = torch.from_numpy(np.ascontiguousarray(view, dtype=np.float32)).to(self._device).permute(2, 0, 1)[None]
        if layout.resized != tuple(image.shape[:2]):
            t = F.interpolate(t, size=layout.resized, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(contract.mean, device=t.device).view(1, 3, 1, 1)
        std = torch.tensor(contract.std, device=t.device).view(1, 3, 1, 1)
        t = (t - mean) / std
        pad_y, pad_x = layout.padded[0] - layout.resized[0], layout.padded[1] - layout.resized[1]
        return F.pad(t, (0, pad_x, 0, pad_y)) if pad_y or pad_x else t

    def _forward(self, batch: Any) -> Any:
        """``extractor.forward`` on the device; where MPS lacks an operation, once on a CPU copy from then on."""
        if self._cpu_model is not None:
            return self.extractor.forward(self._cpu_model, batch.cpu())
        try:
            return self.extractor.forward(self._model, batch)
        except NotImplementedError as exc:
            if not str(self._device).startswith("mps"):
                raise
            warnings.warn(
                f"{self.extractor.name}: an operation is not implemented on MPS ({str(exc).splitlines()[0]}); "
                "running this extractor on the CPU from now on. Set PYTORCH_ENABLE_MPS_FALLBACK=1 before "
                "starting Python to fall back per operation instead.", RuntimeWarning, stacklevel=4)
            import copy

            with self._lock:
                if self._cpu_model is None:
                    self._cpu_model = copy.deepcopy(self._model).to("cpu")
            return self.extractor.forward(self._cpu_model, batch.cpu())
