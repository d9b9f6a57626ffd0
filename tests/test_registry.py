"""The registry: entry points, isolation of broken plugins, deterministic order, provenance, hook names."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

import vfm_features as vf
from plugin_tools import install
from vfm_features.errors import PluginValidationError, UnknownExtractorError, UnknownOptionError
from vfm_features.registry import PluginWarning, Registry


def test_builtin_plugins_come_from_entry_points():
    names = vf.list_extractors()
    assert "filters:default" in names and "regionprops:default" in names
    spec = vf.get_spec("filters:default")
    assert spec.plugin == "filters" and spec.distribution == "vfm-features" and spec.plugin_version == vf.__version__
    assert vf.list_extractors(kind="object") == [n for n in names if vf.get_spec(n).kind == "object"]
    assert vf.list_upsamplers() == ["bilinear"] or "bilinear" in vf.list_upsamplers()
    assert {"rf", "rf-reference"} <= set(vf.list_heads("pixel")) & set(vf.list_heads("object"))


def test_bare_family_resolves_to_default():
    assert vf.get_spec("filters").name == "filters:default"
    assert vf.get_spec("  Filters ").name == "filters:default"


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownExtractorError) as err:
        vf.get_extractor("filtres")
    msg = str(err.value)
    assert "'filters" in msg and "vfm-features list" in msg
    assert isinstance(err.value, KeyError) and isinstance(err.value, vf.InputError)
    with pytest.raises(UnknownExtractorError, match="Did you mean 'bilinear'"):
        vf.get_upsampler("bilinaer")
    with pytest.raises(UnknownExtractorError, match="Unknown object head 'forest'"):
        vf.get_head("forest", "object")


def test_misspelt_options_are_refused_with_the_valid_ones():
    with pytest.raises(UnknownOptionError, match="sigma.*Its options:.*sigmas"):
        vf.get_extractor("filters", sigma=[1.0])


PLUGIN = """
import numpy as np
from vfm_features import ExtractorSpec, FeatureExtractor, Embedding, EmbeddingGeometry, hookimpl

class Block(FeatureExtractor):
    def _embed_plane(self, plane):
        h, w = plane.shape[0] // 4, plane.shape[1] // 4
        x = plane[: h * 4, : w * 4, 0].astype(np.float32).reshape(h, 4, w, 4).mean((1, 3))
        return Embedding(np.stack([x, -x]), EmbeddingGeometry(plane.shape[:2], step=(4.0, 4.0)))

@hookimpl
def vfm_features_extractors():
    return [ExtractorSpec("blocky:mean4", factory=Block, n_features=2, patch_size=4, default=True,
                          description="4x4 block means", options={"scale": 1.0})]
"""


def test_third_party_plugin_records_its_distribution(tmp_path, monkeypatch):
    install(tmp_path, "blocky_plugin", source=PLUGIN, dist="blocky-dist", version="2.3")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    spec = reg.resolve("blocky")
    assert (spec.plugin, spec.distribution, spec.plugin_version) == ("blocky_plugin", "blocky-dist", "2.3")
    ext = reg.get("blocky", scale=2.0)
    assert ext.signature()["plugin"] == {"distribution": "blocky-dist", "version": "2.3"}
    emb = ext.embed(np.arange(64 * 64, dtype=np.float32).reshape(64, 64))
    assert emb.data.shape == (2, 16, 16)
    with pytest.raises(UnknownOptionError, match="scael.*scale"):  # **options factories take the declared ones only
        reg.get("blocky", scael=2.0)
    monkeypatch.delitem(sys.modules, "blocky_plugin")


def test_broken_plugins_warn_and_the_others_still_load(tmp_path, monkeypatch):
    install(tmp_path / "a", "broken_import", source="raise RuntimeError('boom')\n", dist="broken-a")
    install(tmp_path / "b", "raising_hook", dist="broken-b", source="""
        from vfm_features import hookimpl
        @hookimpl
        def vfm_features_extractors():
            raise ValueError('hook failed')
        """)
    install(tmp_path / "c", "bad_spec", dist="broken-c", source="""
        from vfm_features import ExtractorSpec, hookimpl
        @hookimpl
        def vfm_features_extractors():
            return [ExtractorSpec("NoColon", factory=print), "not a spec", ExtractorSpec("ok:fine", factory=print)]
        """)
    for sub in "abc":
        monkeypatch.syspath_prepend(str(tmp_path / sub))
    reg = Registry()
    with pytest.warns(PluginWarning) as caught:
        names = reg.list()
    text = " ".join(str(w.message) for w in caught)
    assert "broken_import" in text and "hook failed" in text and "NoColon" in text and "not a spec" not in text
    assert "filters:default" in names and "ok:fine" in names and "nocolon" not in " ".join(names)


def test_misspelt_hook_is_reported():
    class Typo:
        @vf.hookimpl
        def vfm_features_extractor(self):
            return []

    reg = Registry(entry_point_group=None)
    with pytest.raises(PluginValidationError, match="did you mean 'vfm_features_extractors'"):
        reg.register(Typo(), name="typo")


def test_duplicates_are_deterministic_with_an_explicit_override():
    def plugin(desc, override=False):
        class P:
            @vf.hookimpl
            def vfm_features_extractors(self):
                return [vf.ExtractorSpec("x:y", factory=print, description=desc, override=override)]
        return P()

    reg = Registry(entry_point_group=None)
    reg.register(plugin("from b"), name="b")
    reg.register(plugin("from a"), name="a")
    with pytest.warns(PluginWarning, match="registered by plugin 'a' and again by 'b'; the first one is used"):
        assert reg.resolve("x:y").description == "from a"  # by plugin name, not registration order
    reg.register(plugin("from c", override=True), name="c")
    with pytest.warns(PluginWarning, match="overrides"):
        assert reg.resolve("x:y").description == "from c"


def test_register_twice_and_unregister():
    import vfm_features_filters

    reg = Registry()
    name = reg.register(vfm_features_filters)  # installed already: nothing happens
    assert name == "filters" and "filters:default" in reg.list()
    reg.unregister("filters")
    assert "filters:default" not in reg.list()
    reg.register(vfm_features_filters, name="filters")
    assert "filters:default" in reg.list()


def test_disabled_plugins_are_skipped(monkeypatch):
    monkeypatch.setenv("VFM_FEATURES_DISABLE_PLUGINS", "regionprops, sam2")
    reg = Registry()
    assert not reg.list("regionprops") and not reg.list("sam2") and reg.list("filters")


def test_missing_optional_package_names_the_install_command():
    class P:
        @vf.hookimpl
        def vfm_features_extractors(self):
            return [vf.ExtractorSpec("needs:pkg", factory=print, requires=("no_such_pkg_xyz",),
                                     install="needs-extra[gpu]"),
                    vf.ExtractorSpec("needs:other", factory=print, requires=("no_such_pkg_xyz",))]

    reg = Registry(entry_point_group=None)
    reg.register(P(), name="p")
    with pytest.raises(ImportError, match=r"pip install 'needs-extra\[gpu\]'"):
        reg.get("needs:pkg")
    with pytest.raises(ImportError, match="provide no_such_pkg_xyz"):
        reg.get("needs:other")


def test_builtin_model_plugins_name_their_extra():
    assert vf.get_spec("sam:vit_b").install == "vfm-features[sam]"
    assert vf.get_spec("sam2").install == "vfm-features[sam2]"
    assert vf.get_spec("dinov3").install == "vfm-features[dinov3]"


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
