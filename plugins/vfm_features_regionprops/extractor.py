"""RegionpropsExtractor: shape and intensity features per object with skimage.measure.regionprops_table."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vfm_features import ObjectFeatureExtractor, ObjectFeatures
from vfm_features.preprocess import check_volume_axes, select_channels, to_planes, volume_mask
from vfm_features.validation import check_channels, check_instance_mask

from .properties import feature_names, skimage_properties, table_columns


class RegionpropsExtractor(ObjectFeatureExtractor):
    """Area, intensity mean/max/min, perimeter, eccentricity, solidity, extent, axis lengths,
    orientation (radians) and centroid (y, x in pixels) of every object of an instance mask; in a
    volume, the 3D features of its 3D objects (see :meth:`object_features`).

    Option ``channels``: ``"sum"`` (default: intensity features of the channel sum),
    ``"per_channel"`` (intensity features for every channel, named ``..._ch<i>``) or a
    list of channel indices (intensity features for those channels).
    """

    #: measures the 3D objects of a volume (axes 'ZYX' / 'ZYXC' with a 3D instance mask)
    volumes = True

    def __init__(self, spec, *, channels: str | Sequence[int] = "sum") -> None:
        super().__init__(spec, channels=check_channels(channels, ("sum", "per_channel")))

    def feature_names(self, n_channels: int = 1, ndim: int = 2) -> list[str]:
        """Output names for an image with ``n_channels`` channels (``ndim=3``: a volume)."""
        return feature_names(self._channel_labels(n_channels), ndim)

    def _channel_labels(self, n_channels: int) -> list[str] | None:
        channels = self.options["channels"]
        if channels == "sum":
            return None
        indices = range(n_channels) if channels == "per_channel" else [c % n_channels for c in channels]
        return [f"ch{c}" for c in indices]

    def object_features(self, image: Any, mask: Any, *, axes: str | None = None) -> ObjectFeatures:
        """One row per object id of ``mask`` (0 = background), ids ascending; values (n, F) float32.

        A volume (axes ``ZYX`` / ``ZYXC``) with a 3D mask gives the features of its 3D objects
        (:data:`PROPERTIES_3D`: volume in voxels, no perimeter, eccentricity, orientation or solidity).
        """
        planes, stack_shape = to_planes(image, axes)
        channels = self.options["channels"]
        if stack_shape:
            check_volume_axes(axes, stack_shape)
            labels = volume_mask(mask, tuple(stack_shape) + planes[0].shape[:2])
            intensity = np.stack([select_channels(p, channels) for p in planes]).astype(np.float64)
        else:
            labels = check_instance_mask(mask, planes[0].shape[:2])
            intensity = select_channels(planes[0], channels).astype(np.float64)
        return self._measure(labels, intensity, planes[0].shape[-1])

    def _measure(self, labels: np.ndarray, intensity: np.ndarray, n_channels: int) -> ObjectFeatures:
        """regionprops of ``labels`` (2D or 3D) with ``intensity`` (labels' shape + selected channels)."""
        from skimage.measure import regionprops_table

        ndim = labels.ndim
        names = self.feature_names(n_channels, ndim)
        if not labels.any():
            return ObjectFeatures(np.zeros(0, np.int64), np.zeros((0, len(names)), np.float32), names)
        n_int = None if intensity.shape[-1] == 1 else intensity.shape[-1]
        if n_int is None:
            intensity = intensity[..., 0]
        # ids 1..n: skimage sizes some of its arrays by the largest id (2**36 would exhaust memory)
        from skimage.segmentation import relabel_sequential

        sequential, _, inverse = relabel_sequential(labels)
        table = regionprops_table(sequential, intensity, properties=("label",) + skimage_properties(ndim))
        order = np.argsort(table["label"], kind="stable")
        values = np.stack([np.asarray(table[col], dtype=np.float64)[order] for col in table_columns(n_int, ndim)],
                          axis=1)
        ids = np.asarray(inverse[np.asarray(table["label"], dtype=np.int64)[order]], dtype=np.int64)
        return ObjectFeatures(ids, values.astype(np.float32), names)
