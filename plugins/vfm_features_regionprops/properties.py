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

SKIMAGE_PROPERTIES = tuple(dict.fromkeys(prop for _, prop, _ in PROPERTIES))


def feature_names(channel_labels: list[str] | None) -> list[str]:
    """Output names; ``channel_labels`` (e.g. ['ch0', 'ch2']) splits intensity features, None = one summed intensity."""
    names = []
    for name, _, per_channel in PROPERTIES:
        if per_channel and channel_labels is not None:
            names += [f"{name}_{label}" for label in channel_labels]
        else:
            names.append(name)
    return names


def table_columns(n_intensity_channels: int | None) -> list[str]:
    """regionprops_table column keys in :func:`feature_names` order (None: 2D intensity image)."""
    cols = []
    for name, prop, per_channel in PROPERTIES:
        if prop == "centroid":
            cols.append("centroid-0" if name == "centroid_y" else "centroid-1")
        elif per_channel and n_intensity_channels is not None:
            cols += [f"{prop}-{c}" for c in range(n_intensity_channels)]
        else:
            cols.append(prop)
    return cols
