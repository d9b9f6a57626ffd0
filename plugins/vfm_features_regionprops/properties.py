"""The object property table: feature names and the skimage regionprops columns behind them."""

from __future__ import annotations

# (feature name, skimage property, per intensity channel?) in output order.
PROPERTIES = (
    ("area", "area", False),
    ("intensity_mean", "intensity_mean", True),
    ("intensity_max", "intensity_max", True),
    ("intensity_min", "intensity_min", True),
    ("perimeter", "perimeter", False),
    ("eccentricity", "eccentricity", False),
    ("solidity", "solidity", False),
    ("extent", "extent", False),
    ("axis_major_length", "axis_major_length", False),
    ("axis_minor_length", "axis_minor_length", False),
    ("orientation", "orientation", False),
    ("centroid_y", "centroid", False),
    ("centroid_x", "centroid", False),
)

# 3D objects of a volume: perimeter, eccentricity and orientation are 2D-only in skimage, and solidity's
# convex hull fails on the flat objects (a single slice) common in anisotropic stacks; the area is a voxel count.
PROPERTIES_3D = (
    ("volume", "area", False),
    ("intensity_mean", "intensity_mean", True),
    ("intensity_max", "intensity_max", True),
    ("intensity_min", "intensity_min", True),
    ("extent", "extent", False),
    ("axis_major_length", "axis_major_length", False),
    ("axis_minor_length", "axis_minor_length", False),
    ("equivalent_diameter", "equivalent_diameter_area", False),
    ("centroid_z", "centroid", False),
    ("centroid_y", "centroid", False),
    ("centroid_x", "centroid", False),
)

#: centroid feature -> its skimage column (2D: y, x; 3D: z, y, x)
_CENTROIDS = {2: {"centroid_y": "centroid-0", "centroid_x": "centroid-1"},
              3: {"centroid_z": "centroid-0", "centroid_y": "centroid-1", "centroid_x": "centroid-2"}}


def properties_for(ndim: int) -> tuple[tuple[str, str, bool], ...]:
    """The property table for 2D images (``ndim=2``) or volumes (``ndim=3``)."""
    return PROPERTIES_3D if ndim == 3 else PROPERTIES


def skimage_properties(ndim: int = 2) -> tuple[str, ...]:
    """The skimage regionprops properties to compute, each once."""
    return tuple(dict.fromkeys(prop for _, prop, _ in properties_for(ndim)))


SKIMAGE_PROPERTIES = skimage_properties(2)


def feature_names(channel_labels: list[str] | None, ndim: int = 2) -> list[str]:
    """Output names; ``channel_labels`` (e.g. ['ch0', 'ch2']) splits intensity features, None = one summed intensity."""
    names = []
    for name, _, per_channel in properties_for(ndim):
        if per_channel and channel_labels is not None:
            names += [f"{name}_{label}" for label in channel_labels]
        else:
            names.append(name)
    return names


def table_columns(n_intensity_channels: int | None, ndim: int = 2) -> list[str]:
    """regionprops_table column keys in :func:`feature_names` order (None: one intensity channel)."""
    cols = []
    for name, prop, per_channel in properties_for(ndim):
        if prop == "centroid":
            cols.append(_CENTROIDS[ndim][name])
        elif per_channel and n_intensity_channels is not None:
            cols += [f"{prop}-{c}" for c in range(n_intensity_channels)]
        else:
            cols.append(prop)
    return cols
