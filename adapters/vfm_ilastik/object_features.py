"""Per-object VFM features in the shape ilastik's Object Classification asks for (no ilastik import here).

ilastik's object feature plugins implement three methods (``ilastik/plugins/types.py``):

* ``availableFeatures(image, labels)``: the features offered, ``{name: {parameter: value}}``.
  ilastik calls it with uninitialised arrays of the dataset's shape (``numpy.empty``), so
  it must not read them; it lists what the registry offers, cheaply (no model is built).
* ``fill_properties(features)``: fills ``displaytext``, ``detailtext``, ``tooltip``,
  ``advanced`` (and ``group``) of each named feature, in place, and returns the dict.
* ``compute_global(image, labels, features, axes)``: ``image`` is 4D (x, y, z, c in the
  order ``axes.x``, ``axes.y``, ``axes.z``, ``axes.c`` give), ``labels`` the same without
  the channel axis; returns ``{name: (n_objects, n_values)}`` with one row per object id
  ``1..labels.max()``, the background left out.

Features are named ``"VFM <stat> <extractor>"`` (``stat`` one of mean, std, min, max) and
``"VFM area"``, so they never clash with another plugin's names (ilastik refuses
duplicates). The extractor is read from each feature's parameters (``"extractor"``), which
ilastik stores in the project file; a project file is data from someone else, so the name
is only looked up in the registry of installed extractors, never imported or called.

Which extractors are offered: by default the default variant of each installed family
(``filters:default``, ``sam:vit_b``, ...); ``VFM_ILASTIK_EXTRACTORS`` overrides this
(``"all"`` or a comma-separated list such as ``"filters,musam:vit_b_lm"``).
``VFM_ILASTIK_CACHE=/path/cache.zarr`` keeps embeddings in an embedding cache, so a
second feature computation on the same images recomputes nothing.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from typing import Any, Mapping

import numpy as np

import vfm_features as vf

PLUGIN_NAME = "VFM Features"
STATS = ("mean", "std", "min", "max")
AREA = "VFM area"
ENV_EXTRACTORS = "VFM_ILASTIK_EXTRACTORS"
ENV_CACHE = "VFM_ILASTIK_CACHE"
# the properties fill_properties sets (ilastik's FeatureDescription: the first four are required)
PROPERTIES = ("displaytext", "detailtext", "tooltip", "advanced", "group")
_NAME = re.compile(r"^VFM (mean|std|min|max) (\S+)$")


def feature_name(stat: str, extractor: str) -> str:
    """The ilastik feature name of ``stat`` over the features of ``extractor``."""
    return f"VFM {stat} {extractor}"


def default_features(extractor: str = "filters") -> dict[str, dict[str, Any]]:
    """The default selection for one extractor: mean embedding and area (ilastik's ``Features`` entry)."""
    name = vf.get_spec(extractor).name
    return {feature_name("mean", name): {"extractor": name, "stat": "mean"}, AREA: {}}


def offered_extractors() -> list[str]:
    """Extractors whose features are offered: ``VFM_ILASTIK_EXTRACTORS``, else one default per family."""
    pixel = vf.list_extractors(kind="pixel")
    wanted = os.environ.get(ENV_EXTRACTORS, "").strip()
    if wanted == "all":
        return pixel
    if not wanted:
        families = sorted({n.split(":", 1)[0] for n in pixel})
        return [vf.get_spec(f).name for f in families]
    names = []
    for item in (w.strip() for w in wanted.split(",")):
        try:
            spec = vf.get_spec(item) if item else None
        except vf.UnknownExtractorError as exc:
            warnings.warn(f"{ENV_EXTRACTORS}: {exc}", stacklevel=2)  # the dialog must still open
            continue
        if spec is not None and spec.kind == "pixel" and spec.name not in names:
            names.append(spec.name)
    return names


def _family(extractor: str) -> str:
    return extractor.split(":", 1)[0]


def _describe(name: str, props: dict[str, Any]) -> None:
    if name == AREA:
        props.update(displaytext="Area (VFM)", detailtext="Number of pixels (voxels in 3D) of the object.",
                     tooltip="Object area in pixels", advanced=False, group="VFM")
        return
    stat, extractor = _stat_and_extractor(name, props)
    what = {"mean": "Mean", "std": "Standard deviation", "min": "Minimum", "max": "Maximum"}.get(stat, stat)
    props.update(
        displaytext=f"{what} of {extractor} features",
        detailtext=(f"{what} over the object's pixels of each feature channel of the {extractor} extractor "
                    "(vfm-features), read at every pixel by bilinear upsampling of its embedding. In 3D the "
                    "statistic runs over all the object's voxels, the embedding being computed slice by slice."),
        tooltip=f"{what} of {extractor} embedding channels inside the object",
        advanced=stat != "mean", group=f"VFM {_family(extractor)}")


def _stat_and_extractor(name: str, params: Mapping[str, Any]) -> tuple[str, str]:
    """The statistic and extractor of a feature: its parameters first, else its name."""
    m = _NAME.match(name)
    stat = params.get("stat", m.group(1) if m else None)
    extractor = params.get("extractor", m.group(2) if m else None)
    if isinstance(stat, bytes):  # a project file stores strings as UTF-8 bytes
        stat = stat.decode("utf-8", "replace")
    if isinstance(extractor, bytes):
        extractor = extractor.decode("utf-8", "replace")
    if stat not in STATS or not isinstance(extractor, str) or not extractor:
        raise vf.InputError(
            f"The feature {name!r} is not one of the {PLUGIN_NAME} plugin's: names are 'VFM <stat> <extractor>' "
            f"with stat one of {STATS} (or give 'stat' and 'extractor' parameters), or {AREA!r}.")
    return stat, extractor


@functools.lru_cache(maxsize=4)
def _extractor(name: str) -> Any:
    """A built extractor (kept: ilastik makes a new plugin object for every call)."""
    spec = vf.get_spec(name)  # an unknown name raises UnknownExtractorError with close matches
    if spec.kind != "pixel":
        raise vf.InputError(f"{name} computes object features itself; choose a pixel extractor for the "
                            f"{PLUGIN_NAME} plugin (see vfm-features list).")
    return vf.get_extractor(spec.name)


@functools.lru_cache(maxsize=1)
def _cache(path: str) -> Any:
    return vf.EmbeddingCache(path)


def _embed(extractor: Any, plane: np.ndarray) -> Any:
    path = os.environ.get(ENV_CACHE, "").strip()
    if path:
        return _cache(path).embed(extractor, plane, axes="YXC")
    return extractor.embed(plane, axes="YXC")


def axis_positions(image: Any, axes: Any) -> dict[str, int]:
    """Positions of x, y, z, c in ilastik's 4D image, from the ``axes`` object (or the image's axistags)."""
    if all(isinstance(getattr(axes, k, None), (int, np.integer)) for k in "xyzc"):
        pos = {k: int(getattr(axes, k)) for k in "xyzc"}
    elif hasattr(image, "axistags"):
        pos = {k: int(image.axistags.index(k)) for k in "xyzc"}
    else:
        raise vf.InputError(f"compute_global needs ilastik's axes object (attributes x, y, z, c); got {axes!r}.")
    if sorted(pos.values()) != [0, 1, 2, 3]:
        raise vf.InputError(f"The axes {pos} are not a permutation of the 4 axes of the image.")
    return pos


def to_zyxc(image: Any, labels: Any, axes: Any) -> tuple[np.ndarray, np.ndarray]:
    """ilastik's image (4D) and labels (3D, the image's axes without c) as (Z, Y, X, C) and (Z, Y, X)."""
    img = np.asarray(image)
    lab = np.asarray(labels)
    if img.ndim != 4:
        raise vf.InputError(f"compute_global takes ilastik's 4D image (x, y, z, c); got shape {img.shape}.")
    pos = axis_positions(image, axes)
    vol = np.transpose(img, (pos["z"], pos["y"], pos["x"], pos["c"]))
    if lab.ndim == 4:  # labels that kept a singleton channel axis
        lab = np.take(lab, 0, axis=pos["c"])
    if lab.ndim != 3:
        raise vf.InputError(f"compute_global takes ilastik's 3D label image (x, y, z); got shape {lab.shape}.")
    lpos = {k: v - (v > pos["c"]) for k, v in pos.items() if k != "c"}
    lab = np.transpose(lab, (lpos["z"], lpos["y"], lpos["x"]))
    if lab.shape != vol.shape[:3]:
        raise vf.InputError(f"The label image {lab.shape} and the image {vol.shape[:3]} (z, y, x) differ in shape.")
    return vol, lab


def _pooled(extractor: Any, upsampler: str, volume: np.ndarray, labels: np.ndarray, stats: list[str]) -> Any:
    """``stats`` of every object over all its voxels: each slice with objects is embedded and gives the per-object
    partial sums of its pixels, merged exactly over the slices (``vf.Aggregator``); None when no slice has one."""
    aggregator = vf.Aggregator(tuple(stats), include_area=False)
    parts = []
    for z in range(volume.shape[0]):
        mask = labels[z].astype(np.int64)
        if mask.any():
            parts.append(aggregator.sums(_embed(extractor, volume[z]), volume[z], mask, upsampler))
    return aggregator.merge(parts) if parts else None


def _rows(pooled: Any, stat: str, n: int, n_features: int) -> np.ndarray:
    """(n, C) float32 rows of ``stat`` for ids 1..n; ids absent from the labels get zeros."""
    if pooled is None:
        return np.zeros((n, n_features), np.float32)
    cols = [i for i, name in enumerate(pooled.names) if name.startswith(stat + "_")]
    out = np.zeros((n, len(cols)), np.float32)
    out[pooled.ids - 1] = pooled.values[:, cols]
    return out


def object_features(volume: np.ndarray, labels: np.ndarray, features: Mapping[str, Mapping[str, Any]]
                    ) -> dict[str, np.ndarray]:
    """The requested features of objects ``1..labels.max()`` of a (Z, Y, X, C) volume: one row per id."""
    n = int(labels.max()) if labels.size else 0
    requests: dict[tuple[str, str], dict[str, str]] = {}  # (extractor, upsampler) -> {feature name: stat}
    out: dict[str, np.ndarray] = {}
    for name, params in features.items():
        params = params if isinstance(params, Mapping) else {}
        if name == AREA:
            out[name] = np.bincount(labels.ravel().astype(np.int64), minlength=n + 1)[1:, None].astype(np.float32)
            continue
        stat, extractor = _stat_and_extractor(name, params)
        upsampler = params.get("upsampler", "bilinear")
        if isinstance(upsampler, bytes):
            upsampler = upsampler.decode("utf-8", "replace")
        requests.setdefault((extractor, str(upsampler)), {})[name] = stat
    for (name, upsampler), wanted in requests.items():
        extractor = _extractor(name)
        stats = [s for s in STATS if s in wanted.values()]
        pooled = _pooled(extractor, upsampler, volume, labels, stats) if n else None
        n_features = extractor.n_features_for(volume.shape[-1])
        for feature, stat in wanted.items():
            out[feature] = _rows(pooled, stat, n, n_features)
    return out


class VFMObjectFeatures:
    """ilastik object features from any registered vfm-features extractor (the ilastik-independent part).

    :mod:`vfm_ilastik.ilastik_plugin` combines it with ilastik's ``ObjectFeaturesPlugin``
    base class, which is what ilastik loads.
    """

    name = PLUGIN_NAME  # ilastik 1.4.x reads the plugin name from the .yapsy-plugin file; kept for display

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def availableFeatures(self, image: Any, labels: Any) -> dict[str, dict[str, Any]]:  # noqa: N802 - ilastik's name
        """Features offered for any image (the arrays are not read: ilastik passes uninitialised ones)."""
        features: dict[str, dict[str, Any]] = {}
        for extractor in offered_extractors():
            for stat in STATS:
                features[feature_name(stat, extractor)] = {"extractor": extractor, "stat": stat}
        features[AREA] = {}
        return self.fill_properties(features)

    def fill_properties(self, features: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Fill display text, detail text, tooltip, advanced flag and group of each feature, in place."""
        for name, props in features.items():
            if name == AREA or _NAME.match(name) or isinstance(props, Mapping) and "extractor" in props:
                _describe(name, props)
            else:
                props.update(displaytext=name, detailtext=name, tooltip=name, advanced=True)
        return features

    def compute_global(self, image: Any, labels: Any, features: Mapping[str, Any], axes: Any) -> dict[str, np.ndarray]:
        """One row per object id 1..max(labels) (background left out) for each requested feature."""
        volume, lab = to_zyxc(image, labels, axes)
        return object_features(volume, lab, features)

    def compute_local(self, image: Any, binary_bbox: Any, features: Mapping[str, Any], axes: Any) -> dict:
        """No per-object (neighbourhood) features: every VFM feature is global."""
        return {}
