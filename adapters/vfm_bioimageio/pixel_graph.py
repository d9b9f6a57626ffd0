"""A trained pixel classifier as one torch module: image (b, c, y, x) -> class probabilities (b, K, y, x).

What the library does to a plane, step by step, written with operations whose
sizes follow the input (so an ONNX export keeps the batch and spatial axes free):

1. the channel rule ('sum', 'rgb' or channel indices) and grey -> RGB;
2. intensity scaling to 0..1 ('auto'/'minmax' per image on float input, 'none',
   'dtype' = nothing for float input), clipped to 0..1;
3. the model input: times ``value_range``, resized to the contract's fixed
   ``size`` x ``size`` ('stretch') with torch's antialiased bilinear filter
   (written as two weight matrices built from the input size), mean/std;
4. the extractor's own ``forward`` on the network, cropped to the covering cells;
5. the channel reduction (``reduce=k``: a PCA, a linear map) if the classifier has one;
6. the ``bilinear`` upsampler (cell centres, clamped at the borders) to every pixel;
7. the random forest (:func:`~vfm_bioimageio.tree_ensemble.TreeEnsemble`) on every pixel.

:func:`check_exportable` says, for any classifier, why it cannot be written this
way (one error naming the part and the reason); :func:`pixel_module` builds the module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm_features.errors import InputError

from .tree_ensemble import TreeEnsemble

__all__ = ["check_exportable", "pixel_module", "EXPORTABLE_HEADS"]

EXPORTABLE_HEADS = ("rf", "rf-onnx")
_NORMALIZATIONS = ("auto", "minmax", "none", "dtype")


def _refuse(part: str, why: str) -> InputError:
    return InputError(f"Cannot package this classifier as a bioimage.io model: {part} {why}")


def check_exportable(classifier: Any) -> tuple[Any, Any]:
    """(extractor, contract) of a fitted PixelClassifier whose whole pipeline fits one graph; else InputError."""
    from sklearn.ensemble import RandomForestClassifier

    from vfm_features.classifiers.pixel import PixelClassifier
    from vfm_features.features.bilinear import BilinearUpsampler
    from vfm_features.models.base import ModelExtractor

    if not isinstance(classifier, PixelClassifier):
        raise _refuse(f"a {type(classifier).__name__}", "is not a PixelClassifier (object classifiers are not "
                      "packaged yet).")
    if getattr(classifier, "head_", None) is None:
        raise _refuse("the classifier", "is not fitted; call fit() first.")
    head = classifier.head_
    forest = getattr(head, "forest_", None)
    if not isinstance(forest, RandomForestClassifier) or getattr(forest, "n_outputs_", 1) != 1:
        raise _refuse(f"the head {type(head).__name__}",
                      f"cannot be exported: only the random-forest heads {EXPORTABLE_HEADS} are written as a graph "
                      "so far (the attentive probes deap/obap/hybrid read image patches and sampled cells that "
                      "have no exporter yet).")
    extractor, upsampler = classifier.extractor_, classifier.upsampler_
    if not isinstance(extractor, ModelExtractor):
        raise _refuse(f"the extractor {extractor.name}", "is not a neural-network model extractor (filter banks "
                      "and plugins without an input contract run numpy/scipy code that has no ONNX form here).")
    if type(upsampler) is not BilinearUpsampler:
        raise _refuse(f"the upsampler {upsampler.name}", "cannot be exported: only 'bilinear' is written as a graph.")
    if classifier.working_shape is not None:
        raise _refuse(f"working_shape={tuple(classifier.working_shape)}", "predicts on a coarser grid; package a "
                      "classifier with working_shape=None (set_params would forget the training, so retrain).")
    options = extractor.options
    contract = extractor.input_contract()
    checks = [
        (contract.resize != "stretch" or contract.size is None, f"its input contract (resize={contract.resize!r}, "
         f"size={contract.size})", "has a size that depends on the image; only a fixed 'stretch' size (e.g. "
         "dinov3 or sam2 with a fixed input_size) is exported so far"),
        (options.get("channels") == "per_channel", "channels='per_channel'", "embeds each channel separately"),
        (options.get("normalization") not in _NORMALIZATIONS, f"normalization={options.get('normalization')!r}",
         f"has no graph form here (percentiles); use one of {_NORMALIZATIONS}"),
        (options.get("precision") != "float32", f"precision={options.get('precision')!r}", "is not float32"),
        ("tile_shape" in options, "tile_shape", "tiles the plane; package an untiled classifier"),
    ]
    for bad, part, why in checks:
        if bad:
            raise _refuse(f"the extractor {extractor.name}: {part}", why + ".")
    return extractor, contract


def _tent(n_out_like: Any, n_in_like: Any, scale_antialias: bool) -> Any:
    """(n_out, n_in) interpolation weights; sizes come from 1-D tensors so an export keeps them free.

    ``scale_antialias``: torch's ``interpolate(bilinear, antialias=True, align_corners=False)``
    (a triangle filter stretched by the shrink factor, rows normalised); otherwise
    bilinear reading of cell centres clamped at the borders (the ``bilinear`` upsampler).
    """
    import torch

    out_pos = torch.cumsum(torch.ones_like(n_out_like), 0) - 1  # 0 .. n_out - 1
    in_pos = torch.cumsum(torch.ones_like(n_in_like), 0) - 1
    n_out, n_in = out_pos[-1:] + 1, in_pos[-1:] + 1
    scale = n_in / n_out
    if scale_antialias:
        support = torch.clamp(scale, min=1.0)
        centre = (out_pos + 0.5) * scale
        w = torch.relu(1 - torch.abs(in_pos[None, :] + 0.5 - centre[:, None]) / support)
        return w / w.sum(dim=1, keepdim=True)
    pos = torch.minimum(torch.clamp((out_pos + 0.5) * scale - 0.5, min=0.0), n_in - 1)
    return torch.relu(1 - torch.abs(pos[:, None] - in_pos[None, :]))


def pixel_module(classifier: Any) -> Any:
    """The torch module (eval mode, float32) that predicts like ``classifier.predict_proba`` for batches."""
    import torch

    extractor, contract = check_exportable(classifier)
    network = extractor.backend().load()
    if str(extractor.backend().device) != "cpu":
        network = network.to("cpu")
    reduction = getattr(classifier, "reduction_", None)
    forest = TreeEnsemble(classifier.head_.forest_)
    options = extractor.options
    cells = contract.layout((contract.size, contract.size)).cells
    n_channels = len((getattr(classifier, "intensity_range_", None) or {}).get("p1", [])) or None

    class PixelPipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network, self.forest = network, forest
            self.register_buffer("mean", torch.tensor(contract.mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(contract.std, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("grid", torch.zeros(int(contract.size)))
            if reduction is not None:
                self.register_buffer("pca_mean", torch.from_numpy(reduction.mean_).view(1, -1, 1, 1))
                self.register_buffer("pca", torch.from_numpy(reduction.components_))

        def rgb(self, x: torch.Tensor) -> torch.Tensor:
            channels = options.get("channels", "sum")
            if isinstance(channels, (list, tuple)):
                x = x[:, list(channels)]
            elif channels == "sum" or x.shape[1] != 3:
                x = x.sum(dim=1, keepdim=True)
            if x.shape[1] != 3:
                x = x.sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)
            return x

        def scaled(self, x: torch.Tensor) -> torch.Tensor:
            if options.get("normalization") in ("auto", "minmax"):
                flat = x.flatten(1)
                lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
                hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
                x = torch.where(hi > lo, (x - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi)),
                                torch.zeros_like(x))
            return torch.clamp(x, 0, 1)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            rows, cols = image[0, 0, :, 0], image[0, 0, 0, :]
            x = self.scaled(self.rgb(image))
            if contract.value_range != 1:
                x = x * float(contract.value_range)
            x = _tent(self.grid, rows, True) @ x @ _tent(self.grid, cols, True).T
            x = (x - self.mean) / self.std
            emb = extractor.forward(self.network, x)[:, :, :cells[0], :cells[1]]
            if reduction is not None:
                emb = torch.einsum("kc,bchw->bkhw", self.pca, emb - self.pca_mean)
            feats = _tent(rows, emb[0, 0, :, 0], False) @ emb @ _tent(cols, emb[0, 0, 0, :], False).T
            b, f = feats.shape[0], feats.shape[1]
            proba = self.forest(feats.permute(0, 2, 3, 1).reshape(-1, f))
            return proba.reshape(b, image.shape[2], image.shape[3], -1).permute(0, 3, 1, 2)

    module = PixelPipeline().eval()
    module.n_channels = n_channels
    return module
