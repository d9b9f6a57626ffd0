"""The feature half of a classifier as torch code: image (b, c, y, x) -> upsampled features (b, F, y, x).

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
6. the ``bilinear`` upsampler (cell centres, clamped at the borders) to every pixel.

:func:`check_features_exportable` raises one InputError naming the part that
cannot be written this way and why.
"""

from __future__ import annotations

import copy
from typing import Any

import vfm_features as vf


__all__ = ["NORMALIZATIONS", "check_features_exportable", "feature_module", "refuse"]

NORMALIZATIONS = ("auto", "minmax", "none", "dtype")


def refuse(part: str, why: str) -> vf.InputError:
    """The error for a classifier part that has no graph form."""
    return vf.InputError(f"Cannot package this classifier as a bioimage.io model: {part} {why}")


def check_features_exportable(classifier: Any) -> tuple[Any, Any]:
    """(extractor, contract) of a fitted classifier whose features fit one graph; InputError otherwise."""

    extractor, upsampler = classifier.extractor_, getattr(classifier, "upsampler_", None)
    if not isinstance(extractor, vf.ModelExtractor):
        raise refuse(f"the extractor {extractor.name}", "is not a neural-network model extractor (filter banks, "
                     "regionprops and plugins without an input contract run numpy/scipy code that has no ONNX "
                     "form here).")
    if type(upsampler) is not type(vf.get_upsampler("bilinear")):
        name = getattr(upsampler, "name", type(upsampler).__name__)
        raise refuse(f"the upsampler {name}", "cannot be exported: only 'bilinear' is written as a graph.")
    options = extractor.options
    contract = extractor.input_contract()
    checks = [
        (contract.resize != "stretch" or contract.size is None, f"its input contract (resize={contract.resize!r}, "
         f"size={contract.size})", "has a model input size that depends on the image; only a fixed 'stretch' size "
         "(e.g. dinov3 or sam2 with a fixed input_size) is exported so far"),
        (options.get("channels") == "per_channel", "channels='per_channel'", "embeds each channel separately"),
        (options.get("normalization") not in NORMALIZATIONS, f"normalization={options.get('normalization')!r}",
         f"has no graph form here (percentiles); use one of {NORMALIZATIONS}"),
        (options.get("precision") != "float32", f"precision={options.get('precision')!r}", "is not float32"),
        ("tile_shape" in options, "tile_shape", "tiles the plane; package an untiled classifier"),
    ]
    for bad, part, why in checks:
        if bad:
            raise refuse(f"the extractor {extractor.name}: {part}", why + ".")
    return extractor, contract


def _tent(out_like: Any, in_like: Any, antialias: bool) -> Any:
    """(n_out, n_in) interpolation weights; the sizes are read from 1-D tensors so an export keeps them free.

    ``antialias``: torch's ``interpolate(bilinear, antialias=True, align_corners=False)``
    (a triangle filter widened by the shrink factor, rows normalised); otherwise
    bilinear reading of cell centres clamped at the borders (the ``bilinear`` upsampler).
    """
    import torch

    out_pos = torch.cumsum(torch.ones_like(out_like), 0) - 1  # 0 .. n_out - 1
    in_pos = torch.cumsum(torch.ones_like(in_like), 0) - 1
    n_out, n_in = out_pos[-1:] + 1, in_pos[-1:] + 1
    scale = n_in / n_out
    if antialias:
        support = torch.clamp(scale, min=1.0)
        centre = (out_pos + 0.5) * scale
        w = torch.relu(1 - torch.abs(in_pos[None, :] + 0.5 - centre[:, None]) / support)
        return w / w.sum(dim=1, keepdim=True)
    pos = torch.minimum(torch.clamp((out_pos + 0.5) * scale - 0.5, min=0.0), n_in - 1)
    return torch.relu(1 - torch.abs(pos[:, None] - in_pos[None, :]))


def feature_module(classifier: Any) -> Any:
    """A torch module: (b, c, y, x) float32 image -> (b, F, y, x) the classifier's upsampled features."""
    import torch

    extractor, contract = check_features_exportable(classifier)
    network = extractor.backend().load()
    if str(extractor.backend().device) != "cpu":  # export a CPU copy; the extractor keeps its own
        network = copy.deepcopy(network).to("cpu")
    reduction = getattr(classifier, "reduction_", None)
    options = extractor.options
    cells = contract.layout((contract.size, contract.size)).cells

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network
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
                span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
                x = torch.where(hi > lo, (x - lo) / span, torch.zeros_like(x))
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
            return _tent(rows, emb[0, 0, :, 0], False) @ emb @ _tent(cols, emb[0, 0, 0, :], False).T

    return Features().eval()
