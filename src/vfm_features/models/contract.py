"""A model's input contract, and the geometry the core derives from it (numpy only, no torch).

A model plugin declares an :class:`InputContract`; the core prepares every image
by it - channel rule and intensity scaling to 0..1 (``ModelExtractor.prepare``),
then scaling to ``value_range``, resizing, mean/std and padding (the backend) -
and derives from it which output cells cover the image and where they lie
(:meth:`InputContract.layout`). Plugins therefore carry no preprocessing code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vfm_features.errors import InputError
from vfm_features.geometry import EmbeddingGeometry

ResizeRule = Literal["longest", "stretch"]


def longest_side_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Shape after scaling the longest side to ``long_side`` (segment_anything's ResizeLongestSide rule)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass(frozen=True)
class InputLayout:
    """Where one image goes in the model input and which output cells cover it."""

    resized: tuple[int, int]  # image size after resizing, in model-input pixels
    padded: tuple[int, int]  # model input size (resized + padding at the bottom and right)
    cells: tuple[int, int]  # output cells that cover image content (the rest is padding)
    geometry: EmbeddingGeometry


@dataclass(frozen=True)
class InputContract:
    """How a model wants its input.

    ``resize='longest'``: the longest side goes to ``size`` (aspect kept) and the
    input is padded with zeros (after normalisation) at the bottom and right to
    ``size`` x ``size`` (SAM). ``resize='stretch'``: the image is resized to
    ``size`` x ``size`` (SAM2, DINOv3), or, with ``size=None``, to its own size
    rounded to a multiple of ``multiple``. ``stride`` is the number of input
    pixels per output cell; images in 0..1 are multiplied by ``value_range``
    before resizing, then ``(x - mean) / std`` per RGB channel.
    """

    size: int | None
    resize: ResizeRule
    stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    value_range: float = 1.0
    multiple: int = 1

    def __post_init__(self) -> None:
        if self.resize not in ("longest", "stretch"):
            raise InputError(f"InputContract.resize={self.resize!r}; use 'longest' or 'stretch'.")
        if self.resize == "longest" and self.size is None:
            raise InputError("InputContract: resize='longest' needs a size.")
        if self.stride < 1 or (self.size is not None and self.size < self.stride) or self.multiple < 1:
            raise InputError(f"InputContract: size={self.size}, stride={self.stride}, multiple={self.multiple} do "
                             "not fit together.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise InputError("InputContract: mean and std need three values each, std positive.")

    def layout(self, image_shape: tuple[int, int]) -> InputLayout:
        """Model-input size, padding, covering cells and embedding geometry for an image of ``image_shape``."""
        H, W = (int(s) for s in image_shape[:2])
        p = self.stride
        if self.resize == "longest":
            h, w = longest_side_shape(H, W, int(self.size))
            cells = (math.ceil(h / p), math.ceil(w / p))
            return InputLayout((h, w), (int(self.size), int(self.size)), cells,
                               EmbeddingGeometry(image_shape=(H, W), step=(p * H / h, p * W / w)))
        if self.size is None:
            m = self.multiple
            h, w = (max(m, int(round(s / m)) * m) for s in (H, W))
        else:
            h = w = int(self.size)
        cells = (h // p, w // p)
        return InputLayout((h, w), (h, w), cells,
                           EmbeddingGeometry(image_shape=(H, W), step=(H / cells[0], W / cells[1])))

    def as_dict(self) -> dict:
        return {"size": self.size, "resize": self.resize, "stride": self.stride, "mean": list(self.mean),
                "std": list(self.std), "value_range": self.value_range, "multiple": self.multiple}
