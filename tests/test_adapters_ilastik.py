"""The ilastik adapter against ilastik's plugin interface (ilastik itself is not installable here).

ilastik's interface, as its own files define it (ilastik/plugins/types.py, plugins/manager.py,
plugins_default/vigra_objfeats.py, applets/objectExtraction/opObjectExtraction.py and
objectExtractionGui.py), is rebuilt below as minimal stand-ins of its two base classes:
the main branch's ``ObjectFeaturesPlugin`` (an ABC, plugins named by ``plugin_info``) and
1.4.x's (a yapsy ``IPlugin``). They live in this test module only and are put in
``sys.modules`` for one test at a time. The loaders are ilastik's: the entry-point loop of
its main-branch manager, and the real yapsy ``PluginManager`` that ilastik 1.4.x uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import entry_points

import numpy as np
import pytest

import vfm_features as vf
from vfm_ilastik import AREA, PLUGIN_NAME, STATS, VFMObjectFeatures, default_features, feature_name
from vfm_ilastik.object_features import PROPERTIES

# the names ilastik's own "Standard Object Features" plugin offers (vigra's region features, their
# neighbourhood variants and the default features): ours must never clash with them
VIGRA_NAMES = {"Count", "Sum", "Mean", "Variance", "Skewness", "Kurtosis", "Minimum", "Maximum", "Quantiles",
               "Histogram", "RegionCenter", "RegionRadii", "RegionAxes", "Coord<Minimum>", "Coord<Maximum>",
               "Covariance", "Central<PowerSum<2>>", "Weighted<RegionCenter>", "Global<Minimum>", "Global<Maximum>",
               *(f"{n} in neighborhood" for n in ("Mean", "Variance", "Skewness", "Kurtosis", "Minimum", "Maximum",
                                                  "Sum", "Histogram", "Covariance"))}
REQUIRED = ("displaytext", "detailtext", "tooltip", "advanced")  # FeatureDescription's required keys


# -- stand-ins of ilastik's base classes (interface only) --------------------------------------------
def _main_branch_types() -> types.ModuleType:
    mod = types.ModuleType("ilastik.plugins.types")

    @dataclass(frozen=True)
    class PluginInfo:
        name: str
        author: str
        description: str
        version: str
        website: str | None = ""

    class ObjectFeaturesPlugin(ABC):
        plugin_info: PluginInfo

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._selectedFeatures = []

        @abstractmethod
        def availableFeatures(self, image, labels):
            """Features this plugin computes on an image."""

        @abstractmethod
        def fill_properties(self, features):
            """Display properties of each feature."""

        def compute_global(self, image, labels, features, axes):
            return {}

        def compute_local(self, image, binary_bbox, features, axes):
            return {}

    mod.PluginInfo, mod.ObjectFeaturesPlugin = PluginInfo, ObjectFeaturesPlugin
    return mod


def _release_14_types() -> types.ModuleType:
    yapsy_iplugin = pytest.importorskip("yapsy.IPlugin")
    mod = types.ModuleType("ilastik.plugins.types")

    class ObjectFeaturesPlugin(yapsy_iplugin.IPlugin):
        name = "Base object features plugin"

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._selectedFeatures = []

        def availableFeatures(self, image, labels):
            return []

        def compute_global(self, image, labels, features, axes):
            return {}

        def compute_local(self, image, binary_bbox, features, axes):
            return {}

        def fill_properties(self, feature_dict):
            return feature_dict

    mod.ObjectFeaturesPlugin = ObjectFeaturesPlugin
    return mod


def _install(monkeypatch, types_module: types.ModuleType) -> type:
    ilastik = types.ModuleType("ilastik")
    plugins = types.ModuleType("ilastik.plugins")
    plugins.ObjectFeaturesPlugin = types_module.ObjectFeaturesPlugin
    ilastik.plugins, plugins.types = plugins, types_module
    for name, mod in (("ilastik", ilastik), ("ilastik.plugins", plugins), ("ilastik.plugins.types", types_module)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delitem(sys.modules, "vfm_ilastik.ilastik_plugin", raising=False)  # rebuilt on this base
    return types_module.ObjectFeaturesPlugin


def _our_entry_point(group: str):
    found = [ep for ep in entry_points(group=group) if ep.name == "vfm_features"]
    assert found, f"entry point {group} missing: reinstall vfm-features (pip install -e .)"
    return found[0]


def load_main_branch(monkeypatch):
    """ilastik main's manager: classes from the entry-point group, checked and keyed by plugin_info.name."""
    base = _install(monkeypatch, _main_branch_types())
    cls = _our_entry_point("ilastik.objectfeature_plugins").load()
    assert issubclass(cls, base), f"Could not load plugin of type {cls}"
    plugins = {cls.plugin_info.name: cls}
    return plugins[PLUGIN_NAME]()


def load_release_14(monkeypatch):
    """ilastik 1.4.x's manager: yapsy searches the entry point's package folder for .yapsy-plugin files."""
    base = _install(monkeypatch, _release_14_types())
    from yapsy.PluginManager import PluginManager

    places = [os.path.split(_our_entry_point("ilastik.objectfeatures").load().__file__)[0]]
    manager = PluginManager()
    manager.setPluginPlaces(places)
    manager.setCategoriesFilter({"ObjectFeatures": base})
    manager.collectPlugins()
    for info in manager.getAllPlugins():
        manager.activatePluginByName(info.name)
    info = manager.getPluginByName(PLUGIN_NAME, "ObjectFeatures")
    assert info is not None, [(i.name, i.error) for i in manager.getAllPlugins()]
    assert isinstance(info.plugin_object, base)
    return info.plugin_object


LOADERS = {"main-branch": load_main_branch, "release-1.4": load_release_14}


@pytest.fixture(params=sorted(LOADERS))
def plugin(request, monkeypatch):
    monkeypatch.setenv("VFM_ILASTIK_EXTRACTORS", "filters")
    return LOADERS[request.param](monkeypatch)


class Axes:
    """Built as opObjectExtraction._extract builds it: positions of x, y, z, c in the image's axistags."""

    def __init__(self, order: str):
        self.x, self.y, self.z, self.c = (order.index(k) for k in "xyzc")


def ilastik_arrays(image_yx: np.ndarray, labels_yx: np.ndarray, order: str = "xyzc"):
    """A 2D image and label image as ilastik passes them: 4D image and 3D labels (the channel axis removed)."""
    vol = image_yx[None, :, :, None]  # z, y, x, c
    lab = labels_yx[None, :, :, None]
    perm = ["zyxc".index(k) for k in order]
    axes = Axes(order)
    labels4 = np.transpose(lab, perm).astype(np.uint32)
    slc = [slice(None)] * 4
    slc[axes.c] = 0
    return np.transpose(vol, perm), labels4[tuple(slc)], axes


# -- the two loaders ----------------------------------------------------------------------------------
def test_both_entry_points_resolve_after_install():
    main_branch = _our_entry_point("ilastik.objectfeature_plugins")
    assert main_branch.value == "vfm_ilastik.ilastik_plugin:VFMObjectFeaturesPlugin"
    package = _our_entry_point("ilastik.objectfeatures").load()
    assert "vfm_features.yapsy-plugin" in os.listdir(os.path.dirname(package.__file__))


def test_ilastik_main_branch_loads_the_plugin_class(monkeypatch):
    obj = load_main_branch(monkeypatch)
    assert type(obj).plugin_info.name == PLUGIN_NAME
    assert obj._selectedFeatures == []  # ilastik's base __init__ ran


def test_ilastik_14_yapsy_loads_the_plugin_from_the_entry_point_package(monkeypatch):
    obj = load_release_14(monkeypatch)
    assert isinstance(obj, VFMObjectFeatures)


# -- the contract, for both mechanisms ---------------------------------------------------------------
@pytest.mark.parametrize("shapes", [((40, 30), (40, 30)), ((40, 30, 2), (40, 30)), ((40, 30, 5), (40, 30, 5)),
                                    ((40, 30, 5, 3), (40, 30, 5))])
def test_discovery_with_uninitialised_arrays(plugin, shapes):
    image, labels = np.empty(shapes[0], np.float32), np.empty(shapes[1], np.uint32)  # as the GUI calls it
    image.fill(np.nan)  # whatever the memory holds must not matter
    features = plugin.availableFeatures(image, labels)
    assert feature_name("mean", "filters:default") in features and AREA in features
    for name, props in features.items():
        assert all(k in props for k in REQUIRED), name
        assert "/" not in name  # names become HDF5 group names in the project file
    assert not set(features) & VIGRA_NAMES  # ilastik refuses names used by two plugins


def test_fill_properties_fills_in_place_and_returns_the_dict(plugin):
    names = [feature_name(s, "filters:default") for s in STATS] + [AREA, feature_name("mean", "sam:vit_b")]
    features = {n: {} for n in names}
    filled = plugin.fill_properties(features)
    assert filled is features  # the GUI ignores the return value
    for name in names:
        assert set(PROPERTIES) <= set(features[name])
        assert isinstance(features[name]["advanced"], bool)
    assert features[feature_name("mean", "filters:default")]["advanced"] is False
    assert features[feature_name("std", "filters:default")]["advanced"] is True
    kept = plugin.fill_properties({AREA: {"margin": 0}})
    assert kept[AREA]["margin"] == 0  # parameters stay


@pytest.mark.parametrize("order", ["xyzc", "zyxc", "cxyz"])
def test_compute_global_one_row_per_object_without_background(plugin, small_data, order):
    d = small_data[0]
    image, labels, axes = ilastik_arrays(d.image, d.instances, order)
    wanted = {**default_features("filters"), feature_name("std", "filters:default"): {"extractor": "filters:default"}}
    out = plugin.compute_global(image, labels, wanted, axes)
    assert set(out) == set(wanted)
    n = int(d.instances.max())
    ref = vf.aggregate_embedding(vf.get_extractor("filters").embed(d.image), d.instances, stats=["mean", "std"])
    mean, std = (out[feature_name(s, "filters:default")] for s in ("mean", "std"))
    area = out[AREA]
    assert mean.shape == (n, 32) and std.shape == (n, 32) and area.shape == (n, 1)
    C = 32
    np.testing.assert_allclose(mean[ref.ids - 1], ref.values[:, :C], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std[ref.ids - 1], ref.values[:, C:2 * C], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(area[ref.ids - 1, 0], ref.values[:, -1])
    for value in out.values():  # ilastik stacks a zero background row on top and casts to float32
        assert value.ndim == 2 and np.vstack([np.zeros(value.shape[1]), value]).astype(np.float32).shape[0] == n + 1


def test_absent_ids_get_zero_rows_and_rows_follow_the_largest_id(plugin, small_data):
    d = small_data[0]
    mask = np.zeros_like(d.instances)
    mask[10:20, 10:20], mask[40:50, 40:60] = 1, 4  # ids 2 and 3 absent: vigra's rows run to the largest id
    image, labels, axes = ilastik_arrays(d.image, mask)
    out = plugin.compute_global(image, labels, default_features("filters"), axes)
    assert out[AREA][:, 0].tolist() == [100, 0, 0, 200]
    assert not out[feature_name("mean", "filters:default")][1:3].any()


def test_no_objects_give_no_rows(plugin, small_data):
    image, labels, axes = ilastik_arrays(small_data[0].image, np.zeros((96, 96), np.int32))
    out = plugin.compute_global(image, labels, default_features("filters"), axes)
    assert all(v.shape[0] == 0 for v in out.values())


def test_a_3d_volume_is_embedded_slice_by_slice_and_pooled_over_voxels(plugin, small_data):
    a, b = small_data[0], small_data[1]
    vol = np.stack([a.image, b.image])[..., None]  # z, y, x, c
    obj = int(a.instances.max()) + 1  # slice 1 only
    second = np.where(b.instances > 0, obj, 0)
    second[a.instances == 1] = 1  # object 1 spans both slices
    lab = np.stack([a.instances, second])
    axes = Axes("zyxc")
    feats = {feature_name(s, "filters:default"): {} for s in STATS}
    out = plugin.compute_global(vol, lab.astype(np.uint32), feats, axes)
    ext = vf.get_extractor("filters")
    dense = [ext.embed(p).data for p in (a.image, b.image)]  # filters: one embedding cell per pixel
    for oid in (1, obj):
        values = np.concatenate([dense[z][:, lab[z] == oid].T for z in range(2)])
        got = {s: out[feature_name(s, "filters:default")][oid - 1] for s in STATS}
        np.testing.assert_allclose(got["mean"], values.mean(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got["std"], values.std(0), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(got["min"], values.min(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got["max"], values.max(0), rtol=1e-5, atol=1e-5)


def test_an_unknown_extractor_is_refused_with_close_matches(plugin, small_data):
    image, labels, axes = ilastik_arrays(small_data[0].image, small_data[0].instances)
    with pytest.raises(vf.UnknownExtractorError, match="filters"):
        plugin.compute_global(image, labels, {"VFM mean filtres": {"extractor": "filtres"}}, axes)


def test_the_extractor_comes_from_the_parameters(plugin, small_data):
    image, labels, axes = ilastik_arrays(small_data[0].image, small_data[0].instances)
    out = plugin.compute_global(image, labels, {"VFM mean mine": {"extractor": b"filters", "stat": "mean"}}, axes)
    assert out["VFM mean mine"].shape[1] == 32
    with pytest.raises(vf.InputError, match="not one of the VFM Features"):
        plugin.compute_global(image, labels, {"Mean": {}}, axes)
    with pytest.raises(vf.InputError, match="pixel extractor"):
        plugin.compute_global(image, labels, {"VFM mean regionprops": {}}, axes)


def test_offered_extractors_follow_the_environment(monkeypatch):
    monkeypatch.setenv("VFM_ILASTIK_EXTRACTORS", "filters, nosuchmodel")
    with pytest.warns(UserWarning, match="nosuchmodel"):
        features = VFMObjectFeatures().availableFeatures(np.empty((8, 8)), np.empty((8, 8), np.uint32))
    assert {n for n in features if n != AREA} == {feature_name(s, "filters:default") for s in STATS}
    monkeypatch.delenv("VFM_ILASTIK_EXTRACTORS")
    default = VFMObjectFeatures().availableFeatures(np.empty((8, 8)), np.empty((8, 8), np.uint32))
    assert feature_name("mean", vf.get_spec("sam").name) in default  # one default variant per family


def test_discovery_imports_no_model_library():
    code = ("import sys, numpy as np, vfm_ilastik; "
            "vfm_ilastik.VFMObjectFeatures().availableFeatures(np.empty((9, 9)), np.empty((9, 9), np.uint32)); "
            "bad = [m for m in ('torch', 'transformers', 'segment_anything', 'sam2') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_the_embedding_cache_serves_a_second_computation(monkeypatch, tmp_path, small_data):
    pytest.importorskip("zarr")
    monkeypatch.setenv("VFM_ILASTIK_CACHE", str(tmp_path / "cache.zarr"))
    d = small_data[2]
    image, labels, axes = ilastik_arrays(d.image, d.instances)
    first = VFMObjectFeatures().compute_global(image, labels, default_features("filters"), axes)
    assert len(vf.EmbeddingCache(tmp_path / "cache.zarr")) == 1
    again = VFMObjectFeatures().compute_global(image, labels, default_features("filters"), axes)
    np.testing.assert_array_equal(first[AREA], again[AREA])
    np.testing.assert_allclose(first[feature_name("mean", "filters:default")],
                               again[feature_name("mean", "filters:default")])


# -- pixel classification: features as channels of an HDF5 raw image ---------------------------------
# the axistags attribute of a file that ilastik itself exported (tests/test_ilastik/data/inputdata/2d_Probabilities.h5)
ILASTIK_YXC = {"axes": [{"key": "y", "typeFlags": 2, "resolution": 0, "description": ""},
                        {"key": "x", "typeFlags": 2, "resolution": 0, "description": ""},
                        {"key": "c", "typeFlags": 1, "resolution": 0, "description": ""}]}


def test_feature_channels_in_hdf5_with_ilastiks_axistags(tmp_path, small_data):
    h5py = pytest.importorskip("h5py")
    from vfm_ilastik import write_ilastik_features

    d = small_data[0]
    path = write_ilastik_features(d.image, tmp_path / "cells.h5", "filters", band_rows=40)
    ext = vf.get_extractor("filters")
    with h5py.File(path, "r") as f:
        dset = f["data"]
        assert dset.shape == (96, 96, 33) and dset.dtype == np.float32
        assert json.loads(dset.attrs["axistags"]) == ILASTIK_YXC
        np.testing.assert_array_equal(dset[..., 0], d.image.astype(np.float32))
        np.testing.assert_allclose(dset[..., 1:], np.moveaxis(ext.embed(d.image).data, 0, -1), rtol=1e-6)
        meta = json.loads(dset.attrs["vfm_features"])
        assert meta["extractor"]["extractor"] == "filters:default" and meta["image_channels"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.h5"]  # no temporary left behind
    with pytest.raises(vf.InputError, match="overwrite=True"):
        write_ilastik_features(d.image, path)
    with pytest.raises(vf.InputError, match=r"\.h5"):
        write_ilastik_features(d.image, tmp_path / "cells.tif")


def test_a_stack_is_written_zyxc(tmp_path, small_data):
    h5py = pytest.importorskip("h5py")
    from vfm_ilastik import axistags_json, write_ilastik_features

    stack = np.stack([small_data[0].image, small_data[1].image])
    path = write_ilastik_features(stack, tmp_path / "stack.h5", "filters", axes="ZYX", include_image=False,
                                  extractor_options={"sigmas": [1.0]})
    with h5py.File(path, "r") as f:
        assert f["data"].shape == (2, 96, 96, 8)
        assert [a["key"] for a in json.loads(f["data"].attrs["axistags"])["axes"]] == list("zyxc")
        ext = vf.get_extractor("filters", sigmas=[1.0])
        np.testing.assert_allclose(f["data"][1], np.moveaxis(ext.embed(small_data[1].image).data, 0, -1), rtol=1e-6)
    assert json.loads(axistags_json("zyxc"))["axes"][3] == {"key": "c", "typeFlags": 1, "resolution": 0,
                                                           "description": ""}


def test_a_small_gaussian_passes_feature_channels_through(tmp_path, small_data):
    """The recipe's premise: ilastik's Gaussian at sigma 0.3 leaves each channel nearly as it is."""
    h5py = pytest.importorskip("h5py")
    from scipy.ndimage import gaussian_filter

    from vfm_ilastik import write_ilastik_features

    path = write_ilastik_features(small_data[0].image, tmp_path / "f.h5", "filters")
    with h5py.File(path, "r") as f:
        data = f["data"][...]
    for c in range(data.shape[-1]):
        channel = data[..., c]
        smooth = gaussian_filter(channel, 0.3, truncate=3.5)
        assert np.corrcoef(channel.ravel(), smooth.ravel())[0, 1] > 0.98, c


def test_adapters_use_only_the_public_api():
    """Adapters import vfm_features itself (no submodule, no plugin) and use only names of its __all__."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    plugins = {p.name for p in (root / "plugins").iterdir() if p.is_dir()}
    for path in (root / "adapters").rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith("vfm_features."), f"{path.name} imports {name}"
                assert name.split(".")[0] not in plugins, f"{path.name} imports the plugin {name}"
        used = set(re.findall(r"\bvf\.([A-Za-z_]+)", text))
        assert used <= set(vf.__all__), f"{path.name} uses {sorted(used - set(vf.__all__))}"
