import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import vfm_features as vf
from vfm_features.errors import PluginValidationError, UnknownExtractorError
from vfm_features.registry import Registry


def test_builtin_plugins_come_from_entry_points():
    names = vf.list_extractors()
    assert "filters:default" in names and "regionprops:default" in names
    assert vf.get_spec("filters:default").plugin == "filters"
    assert vf.list_extractors(kind="object") == [n for n in names if vf.get_spec(n).kind == "object"]


def test_bare_family_resolves_to_default():
    assert vf.get_spec("filters").name == "filters:default"
    assert vf.get_spec("  Filters ").name == "filters:default"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownExtractorError) as err:
        vf.get_extractor("filtres")
    msg = str(err.value)
    assert "'filters" in msg and "vfm-features list" in msg
    assert isinstance(err.value, KeyError)


def _write_plugin(root, pkg, body, dist="third_party_plugin"):
    (root / pkg).mkdir()
    (root / pkg / "__init__.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[vfm_features.extractors]\n{pkg} = {pkg}\n")


PLUGIN = """
import numpy as np
from vfm_features import ExtractorSpec, FeatureExtractor, Embedding, EmbeddingGeometry, hookimpl

class Block(FeatureExtractor):
    def _embed_plane(self, plane):
        h, w = plane.shape[0] // 4, plane.shape[1] // 4
        x = plane[: h * 4, : w * 4, 0].astype(np.float32).reshape(h, 4, w, 4).mean((1, 3))
        return Embedding(np.stack([x, -x]), EmbeddingGeometry(plane.shape[:2], step=(4.0, 4.0)))

def build(spec, **options):
    return Block(spec, **options)

@hookimpl
def vfm_features_extractors():
    return [ExtractorSpec("blocky:mean4", factory=build, n_features=2, patch_size=4, default=True,
                          description="4x4 block means")]
"""


def test_third_party_plugin_found_by_entry_point(tmp_path, monkeypatch):
    _write_plugin(tmp_path, "blocky_plugin", PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    assert "blocky:mean4" in reg.list()
    ext = reg.get("blocky")
    emb = ext.embed(np.arange(64 * 64, dtype=np.float32).reshape(64, 64))
    assert emb.data.shape == (2, 16, 16)
    # features read at pixel coordinates come back through the geometry
    f = ext.features_at(emb, np.array([[1.5, 1.5]]))
    assert f.shape == (1, 2) and np.isclose(f[0, 0], emb.data[0, 0, 0])
    monkeypatch.delitem(sys.modules, "blocky_plugin")


def test_broken_plugin_warns_and_others_still_load(tmp_path, monkeypatch):
    _write_plugin(tmp_path, "broken_plugin", "raise RuntimeError('boom')\n", dist="broken")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    with pytest.warns(RuntimeWarning, match="broken_plugin"):
        names = reg.list()
    assert "filters:default" in names


def test_invalid_spec_is_rejected():
    class Bad:
        @vf.hookimpl
        def vfm_features_extractors(self):
            return [vf.ExtractorSpec("NoColon", factory=lambda spec: None)]

    reg = Registry(entry_point_group=None)
    reg.register(Bad(), name="bad")
    with pytest.raises(PluginValidationError, match="family:variant"):
        reg.list()


def test_duplicate_name_warns():
    def plugin(desc):
        class P:
            @vf.hookimpl
            def vfm_features_extractors(self):
                return [vf.ExtractorSpec("x:y", factory=lambda spec: None, description=desc)]
        return P()

    reg = Registry(entry_point_group=None)
    reg.register(plugin("a"), name="a")
    reg.register(plugin("b"), name="b")
    with pytest.warns(RuntimeWarning, match="replaces"):
        reg.specs()


def test_missing_optional_package_names_the_extra():
    class P:
        @vf.hookimpl
        def vfm_features_extractors(self):
            return [vf.ExtractorSpec("needs:pkg", factory=lambda spec: None, requires=("no_such_pkg_xyz",))]

    reg = Registry(entry_point_group=None)
    reg.register(P(), name="p")
    with pytest.raises(ImportError, match=r"pip install 'vfm-features\[needs\]'"):
        reg.get("needs:pkg")


@pytest.mark.parametrize("code", [
    "import vfm_features as v; v.list_extractors(); [v.get_spec(n) for n in v.list_extractors()]",
    "from vfm_features.cli import main; main(['list', '--details'])",
])
def test_import_and_listing_leave_torch_unloaded(code):
    check = code + "; import sys; bad=[m for m in ('torch','transformers','segment_anything','sam2') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", check], check=True, capture_output=True)


def test_no_warnings_when_listing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Registry().list()
