"""RegionpropsExtractor: shape and intensity features per object with skimage.measure.regionprops_table."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vfm_features import InputError, ObjectFeatureExtractor, ObjectFeatures
from vfm_features.preprocess import select_channels, to_planes
from vfm_features.validation import check_channels, check_instance_mask

from .properties import SKIMAGE_PROPERTIES, feature_names, table_columns


class RegionpropsExtractor(ObjectFeatureExtractor):
    """Area, intensity mean/max/min, perimeter, eccentricity, solidity, extent, axis lengths,
    orientation (radians) and centroid (y, x in pixels) of every object of an instance mask.

    Option ``channels``: ``"sum"`` (default: intensity features of the channel sum),
    ``"per_channel"`` (intensity features for every channel, named ``..._ch<i>``) or a
    list of channel indices (intensity features for those channels).
    """

    def __init__(self, spec, *, channels: str | Sequence[int] = "sum") -> None:
        super().__init__(spec, channels=check_channels(channels, ("sum", "per_channel")))

    def feature_names(self, n_channels: int = 1) -> list[str]:
        """Output names for an image with ``n_channels`` channels."""
        return feature_names(self._channel_labels(n_channels))

    def _channel_labels(self, n_channels: int) -> list[str] | None:
        channels = self.options["channels"]
        if channels == "sum":
            return None
        indices = range(n_channels) if channels == "per_channel" else [c % n_channels for c in channels]
        return [f"ch{c}" for c in indices]

    def object_features(self, image: Any, mask: Any, *, axes: str | None = None) -> ObjectFeatures:
        """One row per object id of ``mask`` (0 = background), ids ascending; values (n, F) float32."""
        from skimage.measure import regionprops_table

        planes, stack_shape = to_planes(image, axes)
        if stack_shape:
            raise InputError(f"object_features() takes one 2D image; got a stack of shape {stack_shape} "
                             "plus Y, X. Call it per plane with the matching 2D mask.")
        plane = planes[0]
        labels = check_instance_mask(mask, plane.shape[:2])
        intensity = select_channels(plane, self.options["channels"]).astype(np.float64)
        names = self.feature_names(plane.shape[-1])
        if not labels.any():
            return ObjectFeatures(np.zeros(0, np.int64), np.zeros((0, len(names)), np.float32), names)
        n_int = None if intensity.shape[-1] == 1 else intensity.shape[-1]
        if n_int is None:
            intensity = intensity[..., 0]
        # ids 1..n: skimage sizes some of its arrays by the largest id (2**36 would exhaust memory)
        from skimage.segmentation import relabel_sequential

        sequential, _, inverse = relabel_sequential(labels)
        table = regionprops_table(sequential, intensity, properties=("label",) + SKIMAGE_PROPERTIES)
        order = np.argsort(table["label"], kind="stable")
        values = np.stack([np.asarray(table[col], dtype=np.float64)[order] for col in table_columns(n_int)], axis=1)
        ids = np.asarray(inverse[np.asarray(table["label"], dtype=np.int64)[order]], dtype=np.int64)
        return ObjectFeatures(ids, values.astype(np.float32), names)
