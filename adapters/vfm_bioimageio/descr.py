"""bioimage.io spec 0.5 pieces: axes, tensors and the ModelDescr of a package's files (no URL anywhere)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

__all__ = ["MIN_SIDE", "identifier", "image_input", "mask_input", "model_descr", "space_output"]

#: smallest image side a package accepts; sizes are MIN_SIDE + n (step 1), so bioimage.io never pads
MIN_SIDE = 16


def identifier(text: str, fallback: str) -> str:
    """``text`` as a bioimage.io identifier: letters, digits and '_', starting with a letter, <= 32 characters."""
    name = re.sub(r"[^0-9A-Za-z_]+", "_", str(text)).strip("_")
    name = name if name and name[0].isalpha() else f"{fallback}_{name}".strip("_")
    return name[:32]


def _space_in(spec: Any, axis: str) -> Any:
    # not concatenable: the model resizes and scales the whole image at once (tiles would change the features)
    return spec.SpaceInputAxis(id=spec.AxisId(axis), size=spec.ParameterizedSize(min=MIN_SIDE, step=1),
                               concatenable=False)


def _like_image(spec: Any, axis: str, output: bool) -> Any:
    size = spec.SizeReference(tensor_id=spec.TensorId("image"), axis_id=spec.AxisId(axis))
    kind = spec.SpaceOutputAxis if output else spec.SpaceInputAxis
    return kind(id=spec.AxisId(axis), size=size)


def image_input(n_channels: int, test: Path, sample: Path) -> Any:
    """The ``image`` input: (batch, channel, y, x), any dtype cast to float32."""
    from bioimageio.spec.model import v0_5 as spec

    return spec.InputTensorDescr(
        id=spec.TensorId("image"), description="image, any intensity scale (scaled inside the model as in training)",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier(f"channel_{c}")
                                                                for c in range(n_channels)]),
              _space_in(spec, "y"), _space_in(spec, "x")],
        test_tensor=spec.FileDescr(source=test), sample_tensor=spec.FileDescr(source=sample),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32"))])


def mask_input(test: Path, sample: Path) -> Any:
    """The ``mask`` input: (batch, y, x) instance ids (0 = background) of the image's size, cast to int64."""
    from bioimageio.spec.model import v0_5 as spec

    return spec.InputTensorDescr(
        id=spec.TensorId("mask"), description="instance mask of the image: one id per object, 0 = background",
        axes=[spec.BatchAxis(), _like_image(spec, "y", False), _like_image(spec, "x", False)],
        test_tensor=spec.FileDescr(source=test), sample_tensor=spec.FileDescr(source=sample),
        data=spec.IntervalOrRatioDataDescr(type="int64", range=(0, None)),
        preprocessing=[spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="int64"))])


def space_output(tensor_id: str, description: str, channels: Sequence[str] | None, data: Any, test: Path,
                 sample: Path) -> Any:
    """An output of the image's size: (batch, [channel,] y, x)."""
    from bioimageio.spec.model import v0_5 as spec

    axes = [spec.BatchAxis()]
    if channels is not None:
        axes.append(spec.ChannelAxis(channel_names=[spec.Identifier(c) for c in channels]))
    axes += [_like_image(spec, "y", True), _like_image(spec, "x", True)]
    return spec.OutputTensorDescr(id=spec.TensorId(tensor_id), description=description, axes=axes,
                                  test_tensor=spec.FileDescr(source=test), sample_tensor=spec.FileDescr(source=sample),
                                  data=data)


def model_descr(parts: dict[str, Any], inputs: list, outputs: list, tags: Sequence[str], opset: int) -> Any:
    """The ModelDescr: name, description, authors, DOIs, licence, README, cover, tensors, ONNX weights, and the
    reproducibility tolerance that :func:`~.onnx_graph.check_parity` enforced."""
    from bioimageio.spec.model import v0_5 as spec

    from .onnx_graph import MISMATCH_PPM, TOLERANCE

    tolerance = spec.ReproducibilityTolerance(absolute_tolerance=TOLERANCE, relative_tolerance=0.0,
                                              mismatched_elements_per_million=MISMATCH_PPM)
    return spec.ModelDescr(
        name=parts["name"], description=parts["description"],
        authors=[spec.Author(name=a) for a in parts["authors"]],
        cite=[spec.CiteEntry(text=t, doi=spec.Doi(d)) for t, d in parts["cite"]],
        license=parts["license"], documentation=spec.FileDescr(source=parts["readme"]),
        covers=[spec.FileDescr(source=parts["cover"])], tags=list(tags), inputs=inputs, outputs=outputs,
        weights=spec.WeightsDescr(onnx=spec.OnnxWeightsDescr(source=parts["weights"], opset_version=opset)),
        config=spec.Config(bioimageio=spec.BioimageioConfig(reproducibility_tolerance=[tolerance])))
