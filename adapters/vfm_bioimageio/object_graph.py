"""A trained object classifier as one torch module: image + instance mask -> class image and probabilities.

The features as the library computes them (:mod:`.feature_graph`), then per
object the ``stats`` of the upsampled features over its mask (sums in float64,
as the library's) and its area, then the random forest, painted back onto the
object's pixels (background 0).

Every size in the graph follows the input's: objects are renumbered 0..n-1 per
image by sorting the mask (ids are arbitrary integers), and the per-object sums
live in a table with one row per pixel (the most objects an image can hold), so
no size depends on the mask's values. The forest therefore runs on one row per
pixel, most of them empty: the cost of a pixel classifier, not of the objects.
"""

from __future__ import annotations

from typing import Any

import vfm_features as vf

from .feature_graph import check_features_exportable, feature_module, refuse
from .tree_ensemble import check_forest_head, forest_module

__all__ = ["STATS", "check_object_exportable", "object_module"]

STATS = ("mean", "std", "min", "max")


def check_object_exportable(classifier: Any) -> tuple[Any, Any]:
    """(extractor, contract) of a fitted ObjectClassifier whose whole pipeline fits one graph; else InputError."""

    if not isinstance(classifier, vf.ObjectClassifier):
        raise refuse(f"a {type(classifier).__name__}", "is not an ObjectClassifier (use package_pixel_classifier "
                     "for a PixelClassifier).")
    check_forest_head(classifier)
    unknown = [s for s in classifier.stats if s not in STATS]
    if unknown:
        raise refuse(f"stats {unknown}", f"have no graph form; use some of {STATS}.")
    if getattr(classifier.extractor_, "kind", "pixel") != "pixel":
        raise refuse(f"the extractor {classifier.extractor_.name}", "computes object features itself (numpy/scipy "
                     "code with no ONNX form); only embeddings aggregated over the mask are exported.")
    return check_features_exportable(classifier)


def object_module(classifier: Any) -> Any:
    """The torch module: (b, c, y, x) float32 image, (b, y, x) int64 mask -> (class image (b, y, x) int64,
    probabilities (b, K, y, x) float32 of each pixel's object; 0 on the background)."""
    import numpy as np
    import torch

    check_object_exportable(classifier)
    features, forest = feature_module(classifier), forest_module(classifier.head_.forest_)
    stats, include_area = tuple(classifier.stats), bool(classifier.include_area)
    classes = np.asarray(classifier.classes_)
    if classes.dtype.kind == "f" and not np.all(classes == np.round(classes)):
        raise refuse(f"the class ids {classes.tolist()}", "are not whole numbers; a class image needs them.")

    class ObjectPipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features, self.forest = features, forest
            self.register_buffer("classes", torch.from_numpy(classes.astype(np.int64)))

        def objects(self, mask: torch.Tensor) -> torch.Tensor:
            """(b, P) mask -> each pixel's object as a row of a (b * P)-row table (ids renumbered per image)."""
            order = torch.argsort(mask, dim=1)
            ranked = torch.gather(mask, 1, order)
            step = (ranked[:, 1:] != ranked[:, :-1]).to(torch.int64)
            dense_sorted = torch.cat([torch.zeros_like(step[:, :1]), torch.cumsum(step, dim=1)], dim=1)
            dense = torch.zeros_like(mask).scatter(1, order, dense_sorted)
            first = torch.cumsum(torch.ones_like(mask[:, :1]), 0) - 1  # 0 .. b - 1
            return dense + first * mask.shape[1]

        def rows(self, feats: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
            """(n, F) per-object feature rows (stats, then area) of (n, F) pixel features in table ``row``."""
            table = torch.zeros_like(feats, dtype=torch.float64)
            count = torch.zeros_like(feats[:, :1], dtype=torch.float64).index_add(
                0, row, torch.ones_like(feats[:, :1], dtype=torch.float64))
            s1 = table.index_add(0, row, feats.double())
            mean = s1 / torch.clamp(count, min=1)
            blocks = []
            for stat in stats:
                if stat == "mean":
                    blocks.append(mean)
                elif stat == "std":
                    s2 = table.index_add(0, row, feats.double() ** 2)
                    blocks.append(torch.sqrt(torch.clamp(s2 / torch.clamp(count, min=1) - mean ** 2, min=0)))
                else:
                    reduce = "amin" if stat == "min" else "amax"
                    index = row[:, None].expand(-1, feats.shape[1])
                    blocks.append(table.scatter_reduce(0, index, feats.double(), reduce, include_self=False))
            if include_area:
                blocks.append(count)
            return torch.cat(blocks, dim=1).float()

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            feats = self.features(image)
            b, f = feats.shape[0], feats.shape[1]
            flat_mask = mask.reshape(b, -1)
            row = self.objects(flat_mask).reshape(-1)
            proba = self.forest(self.rows(feats.permute(0, 2, 3, 1).reshape(-1, f), row))
            inside = (flat_mask.reshape(-1) > 0)[:, None]
            pixel_proba = torch.where(inside, proba[row], torch.zeros_like(proba[row]))
            pixel_class = torch.where(inside[:, 0], self.classes[torch.argmax(proba, dim=1)][row],
                                      torch.zeros_like(row))
            return (pixel_class.reshape(mask.shape),
                    pixel_proba.reshape(b, mask.shape[1], mask.shape[2], -1).permute(0, 3, 1, 2))

    return ObjectPipeline().eval()
