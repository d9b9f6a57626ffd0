"""ONNX export, the onnxruntime backend, the onnx plugin (onnx:folder, NAME@onnx), rf-onnx heads and µSAM vit_t.

Exports use tiny random networks (SAM with a 64-pixel input, SAM2 and DINOv3 test
configurations); real-size figures are in benchmarks/bench_onnx.py. No test
touches the network.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import vfm_features as vf
from vfm_features import ExtractorMismatchError, InputError, WeightsError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from vfm_features.models.onnx_folder import (  # noqa: E402
    META_FILE,
    MODEL_FILE,
    default_folder,
    file_entry,
    read_folder,
)

TINY_SAM = {"name": "tiny", "embed_dim": 16, "depth": 1, "num_heads": 2, "global_attn_indexes": [0], "img_size": 64,
            "window_size": 4}
SMALL_SAM = {**TINY_SAM, "img_size": 128}  # another input size, same architecture otherwise


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("VFM_FEATURES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VFM_FEATURES_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def tiny_sam(**options):
    pytest.importorskip("segment_anything")
    return vf.get_extractor("sam:vit_b", architecture=options.pop("architecture", TINY_SAM), pretrained=False,
                            device="cpu", **options)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Folders of the tiny SAM encoder: float32 and int8."""
    pytest.importorskip("torch")
    from vfm_features.models.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("onnx")
    ex = tiny_sam()
    export_onnx(ex, root / "fp32")
    export_onnx(ex, root / "int8", int8=True)
    return root


def image(shape=(50, 70), channels=None, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape + ((channels,) if channels else ()), dtype=np.float32)


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite(folder: Path, **changes) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    meta.update(changes)
    (folder / META_FILE).write_text(json.dumps(meta))


def refresh_files(folder: Path) -> None:
    """Make the metadata's checksums match the (edited) model file, as a careful forger would."""
    rewrite(folder, files={MODEL_FILE: file_entry(folder / MODEL_FILE)})


# -- export ---------------------------------------------------------------------------------------
@pytest.mark.torch
def test_export_writes_the_model_and_checked_metadata(exported):
    folder = read_folder(exported / "fp32")
    meta = folder.meta
    assert sorted(p.name for p in (exported / "fp32").iterdir()) == [MODEL_FILE, META_FILE]
    assert meta["extractor"] == "sam:vit_b" and meta["library_version"] == vf.__version__
    assert meta["signature"]["weights_hash"] == "random-init:tiny:seed=0"
    assert meta["contract"]["size"] == 64 and meta["contract"]["value_range"] == 255.0
    assert meta["input_shape"] == [1, 3, 64, 64] and meta["output_shape"] == [1, 256, 4, 4]
    assert meta["opset"] == 17 and meta["quantization"] is None and meta["options"]["channels"] == "sum"
    par = meta["parity"]
    assert par["cosine"] >= 0.99999 and par["max_abs"] <= 1e-3 * par["reference_max_abs"]
    assert par["min_cosine"] == 0.99999 and "sample_image(64)" in par["sample"]
    q = read_folder(exported / "int8").meta
    assert q["quantization"] == "int8" and 0.99 <= q["parity"]["cosine"] < 1
    import onnx

    ops = {n.op_type for n in onnx.load(str(exported / "int8" / MODEL_FILE)).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops and "ConvInteger" not in ops  # convolutions stay float


@pytest.mark.torch
@pytest.mark.parametrize("channels", ["sum", "per_channel"])
def test_the_onnx_extractor_matches_torch(exported, channels):
    torch_ex = tiny_sam(channels=channels)
    onnx_ex = vf.get_extractor("onnx:folder", path=exported / "fp32", channels=channels)
    for img in (image((50, 70), 2), image((90, 40), 2, seed=1)):  # shrink and enlarge, pad at the bottom or right
        want, got = torch_ex.embed(img), onnx_ex.embed(img)
        assert got.data.shape == want.data.shape and got.geometry == want.geometry
        assert np.abs(got.data - want.data).max() <= 1e-4 * np.abs(want.data).max()
    assert onnx_ex.n_features_for(2) == torch_ex.n_features_for(2)


@pytest.mark.torch
def test_int8_is_close_and_says_so(exported):
    want = tiny_sam().embed(image()).data.ravel().astype(np.float64)
    got = vf.get_extractor("onnx:folder", path=exported / "int8").embed(image()).data.ravel()
    assert got @ want / np.linalg.norm(got) / np.linalg.norm(want) > 0.99


@pytest.mark.torch
@pytest.mark.parametrize("family", ["sam2", "dinov3"])
def test_sam2_and_dinov3_export_with_parity(tmp_path, family):
    from vfm_features.models.onnx_export import export_onnx

    if family == "sam2":
        pytest.importorskip("sam2")
        from test_sam2 import TINY

        ex = vf.get_extractor("sam2:hiera_t", config=TINY, pretrained=False, device="cpu", input_size=64)
    else:
        pytest.importorskip("transformers")
        from test_dinov3 import TINY

        ex = vf.get_extractor("dinov3:vits16", config=TINY, pretrained=False, device="cpu", input_size=64)
    meta = export_onnx(ex, tmp_path / family)
    assert meta["parity"]["cosine"] >= 0.99999
    img = image((70, 45), 3)
    want = ex.embed(img).data
    got = vf.get_extractor("onnx:folder", path=tmp_path / family).embed(img).data
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.torch
def test_a_model_that_fails_parity_is_not_written(tmp_path):
    from vfm_features.models.onnx_export import export_onnx

    target = tmp_path / "out" / "strict"
    with pytest.raises(InputError, match=r"differs from torch.*cosine 0\.9.*nothing was written.*--min-cosine"):
        export_onnx(tiny_sam(), target, int8=True, min_cosine=1.0)
    assert not target.exists() and list(target.parent.iterdir()) == []  # no temporary left behind


@pytest.mark.torch
def test_export_replaces_only_its_own_folders(tmp_path, exported):
    from vfm_features.models.onnx_export import export_onnx

    ex = tiny_sam()
    (tmp_path / "mine").mkdir()
    with pytest.raises(InputError, match="not a folder written by 'vfm-features export-onnx'"):
        export_onnx(ex, tmp_path / "mine", overwrite=True)
    target = copy_folder(exported / "int8", tmp_path / "export")
    with pytest.raises(InputError, match="exists already; pass --overwrite"):
        export_onnx(ex, target)
    export_onnx(ex, target, overwrite=True)
    assert read_folder(target).quantization is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "mine"]  # nothing left aside


@pytest.mark.torch
def test_what_cannot_be_exported_is_refused(tmp_path, exported):
    from vfm_features.models.onnx_export import export_onnx

    with pytest.raises(InputError, match="not a neural-network extractor"):
        export_onnx(vf.get_extractor("filters"), tmp_path / "x")
    with pytest.raises(InputError, match="does not run through torch.*export the torch extractor"):
        export_onnx(vf.get_extractor("onnx:folder", path=exported / "fp32"), tmp_path / "x")
    with pytest.raises(InputError, match="runs in bfloat16; export it with precision='float32'"):
        export_onnx(tiny_sam(precision="bf16"), tmp_path / "x")
    if __import__("importlib").util.find_spec("transformers"):
        from test_dinov3 import TINY

        free = vf.get_extractor("dinov3:vits16", config=TINY, pretrained=False, input_size=None)
        with pytest.raises(InputError, match="no fixed input size.*input_size=1024"):
            export_onnx(free, tmp_path / "x")
    assert not (tmp_path / "x").exists()


# -- the command line and the cache ---------------------------------------------------------------------
@pytest.mark.torch
def test_cli_exports_into_the_cache_and_registers_name_at_onnx(tmp_path, capsys):
    pytest.importorskip("segment_anything")
    from vfm_features.cli import main

    arch = json.dumps(TINY_SAM)
    assert main(["export-onnx", "sam:vit_b", "-O", f"architecture={arch}", "-O", "pretrained=false"]) == 0
    out = capsys.readouterr().out
    assert "cosine 1.0000" in out and "use it as: -e sam:vit_b@onnx" in out
    folder = default_folder("sam:vit_b", None)
    assert folder == tmp_path / "cache" / "onnx" / "sam-vit_b" and (folder / MODEL_FILE).is_file()
    registry = vf.Registry()  # a new session: the default registry has read the cache already
    assert "sam:vit_b@onnx" in registry.list()
    spec = registry.resolve("sam:vit_b@onnx")
    assert spec.options == {"path": str(folder)} and spec.patch_size == 16 and spec.global_context
    ex = registry.get("sam:vit_b@onnx")
    assert ex.saved_options() == {"channels": "sum", "normalization": "auto"}  # never the path
    assert ex.embed(image()).data.shape == (256, 3, 4)
    assert main(["export-onnx", "sam:vit_b", "-O", f"architecture={arch}", "-O", "pretrained=false"]) == 1
    assert "exists already" in capsys.readouterr().err


def test_cli_errors_are_one_line(capsys):
    from vfm_features.cli import main

    assert main(["export-onnx", "filters"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vfm-features export-onnx: error:") and "neural-network" in err and "\n" not in err


# -- bad input ---------------------------------------------------------------------------------------------
def test_a_folder_without_metadata_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / MODEL_FILE).write_bytes(b"\x08\x07")
    with pytest.raises(InputError, match="has no vfm-onnx.json.*export the model with 'vfm-features export-onnx'"):
        vf.get_extractor("onnx:folder", path=tmp_path / "m")
    with pytest.raises(InputError, match="needs path=DIR"):
        vf.get_extractor("onnx:folder")
    with pytest.raises(InputError, match="does not exist"):
        vf.get_extractor("onnx:folder", path=tmp_path / "missing")


@pytest.mark.torch
def test_metadata_from_another_library_version_or_malformed_is_refused(tmp_path, exported):
    folder = copy_folder(exported / "fp32", tmp_path / "old")
    rewrite(folder, library_version="0.0.1")
    with pytest.raises(InputError, match=r"exported with vfm-features 0\.0\.1.*this is vfm-features.*Export"):
        vf.get_extractor("onnx:folder", path=folder)
    for change, match in [({"contract": {"size": "64"}}, "input contract"), ({"format_version": 9}, "format version"),
                          ({"input_shape": [1, 3, 32, 32]}, "input shape"),
                          ({"features_per_image": True}, "wrong type"),
                          ({"files": {"../x": {"bytes": 1, "sha256": "0" * 64}}}, "file list")]:
        bad = copy_folder(exported / "fp32", tmp_path / f"bad{len(list(tmp_path.iterdir()))}")
        rewrite(bad, **change)
        with pytest.raises(InputError, match=match):
            vf.get_extractor("onnx:folder", path=bad)
    huge = copy_folder(exported / "fp32", tmp_path / "huge")
    (huge / META_FILE).write_text(" " * (1 << 20) + (huge / META_FILE).read_text())
    with pytest.raises(InputError, match="more than the"):
        vf.get_extractor("onnx:folder", path=huge)


@pytest.mark.torch
def test_an_onnx_file_for_another_input_size_is_refused(tmp_path, exported):
    from vfm_features.models.onnx_export import export_onnx

    export_onnx(tiny_sam(architecture=SMALL_SAM), tmp_path / "small")
    folder = copy_folder(exported / "fp32", tmp_path / "swapped")
    shutil.copy(tmp_path / "small" / MODEL_FILE, folder / MODEL_FILE)
    ex = vf.get_extractor("onnx:folder", path=folder)  # the metadata is fine: the file is checked when it loads
    with pytest.raises(InputError, match=r"takes inputs of shape \[1, 3, 128, 128\].*says \[1, 3, 64, 64\].*size"):
        ex.embed(image())


@pytest.mark.torch
def test_a_damaged_model_file_is_refused(tmp_path, exported):
    folder = copy_folder(exported / "fp32", tmp_path / "damaged")
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[-100] ^= 0xFF  # a weight, not the graph
    (folder / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match the sha256"):
        vf.get_extractor("onnx:folder", path=folder).embed(image())


def _edit_graph(folder: Path, edit) -> None:
    import onnx

    model = onnx.load(str(folder / MODEL_FILE))
    edit(model)
    onnx.save_model(model, str(folder / MODEL_FILE))
    refresh_files(folder)


@pytest.mark.torch
def test_a_quantised_model_whose_operators_are_missing_is_a_clear_error(tmp_path, exported):
    folder = copy_folder(exported / "int8", tmp_path / "missing-op")

    def edit(model):
        node = next(n for n in model.graph.node if n.op_type == "MatMulInteger")
        node.op_type, node.domain = "MatMulIntegerToInt4", "com.microsoft"  # a built-in domain, an op it lacks
        model.opset_import.append(__import__("onnx").helper.make_opsetid("com.microsoft", 1))

    _edit_graph(folder, edit)
    with pytest.raises(WeightsError, match=r"this int8 model uses operators that onnxruntime [\d.]+ .*cannot run"
                                           r".*export it again without --int8"):
        vf.get_extractor("onnx:folder", path=folder).embed(image())


@pytest.mark.torch
def test_custom_operator_domains_and_outside_data_files_are_refused(tmp_path, exported):
    from onnx import TensorProto

    folder = copy_folder(exported / "fp32", tmp_path / "custom")

    def custom(model):
        model.graph.node[0].domain = "my.ops"

    _edit_graph(folder, custom)
    with pytest.raises(InputError, match=r"domain\(s\) \['my.ops'\].*never custom operator libraries"):
        vf.get_extractor("onnx:folder", path=folder).embed(image())

    outside = copy_folder(exported / "fp32", tmp_path / "outside")

    def external(model):
        tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "../../../../etc/passwd"

    _edit_graph(outside, external)
    with pytest.raises(InputError, match=r"reads weights from '\.\./\.\./\.\./\.\./etc/passwd'"):
        vf.get_extractor("onnx:folder", path=outside).embed(image())


# -- trust, signatures, classifiers ---------------------------------------------------------------------------
@pytest.mark.torch
def test_path_is_a_trust_option_and_the_signature_follows_the_files(tmp_path, exported, small_data):
    ex = vf.get_extractor("onnx:folder", path=exported / "fp32")
    sig = ex.signature()
    assert "path" not in sig["options"] and sig["weights_hash"].startswith("onnx:")
    moved = copy_folder(exported / "fp32", tmp_path / "elsewhere")
    assert vf.get_extractor("onnx:folder", path=moved).signature() == sig  # a copy is the same model
    assert vf.get_extractor("onnx:folder", path=exported / "int8").signature() != sig

    d = small_data[0]
    clf = vf.PixelClassifier(ex, head_options={"n_estimators": 3}, n_jobs=1)
    clf.fit(d.image, d.scribbles(0.03, random_state=0))
    clf.save(tmp_path / "c.vfmc")
    meta = vf.read_metadata(tmp_path / "c.vfmc")
    assert "path" not in meta["extractor"]["options"]
    again = vf.load_classifier(tmp_path / "c.vfmc", extractor_options={"path": str(moved)})
    np.testing.assert_array_equal(again.predict(d.image), clf.predict(d.image))
    with pytest.raises(ExtractorMismatchError):
        vf.load_classifier(tmp_path / "c.vfmc", extractor_options={"path": str(exported / "int8")})


@pytest.mark.torch
def test_conformance(exported):
    from vfm_features.testing import check_extractor

    ran = check_extractor("onnx:folder", path=exported / "fp32", channels=(1, 3))
    assert "classifier save/load" in ran and "two threads" in ran and "pickle" in ran


@pytest.mark.torch
def test_session_options_follow_n_threads(exported):
    ex = vf.get_extractor("onnx:folder", path=exported / "fp32", n_threads=1)
    opts = ex.load().backend().load().get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1 and not opts.enable_cpu_mem_arena
    assert ex.signature() == vf.get_extractor("onnx:folder", path=exported / "fp32").signature()


# -- without torch -----------------------------------------------------------------------------------------------
_NO_TORCH = textwrap.dedent("""
    import importlib.abc, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "segment_anything", "sam2", "transformers", "timm"):
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, BlockTorch())
    import numpy as np, tifffile
    import vfm_features as vf
    from vfm_features.cli import main

    folder, work = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    img = rng.random((60, 80), dtype=np.float32)
    lab = np.zeros((60, 80), np.uint8); lab[5:15, 5:20] = 1; lab[40:55, 50:75] = 2
    ex = vf.get_extractor("onnx:folder", path=folder)
    assert ex.embed(img).data.shape == (256, 3, 4)
    clf = vf.PixelClassifier(ex, head="rf-onnx", head_options={"n_estimators": 5}, n_jobs=1).fit(img, lab)
    assert clf.predict(img).shape == (60, 80)
    clf.save(work + "/c.vfmc")
    tifffile.imwrite(work + "/img.tif", img)
    assert main(["predict", work + "/c.vfmc", "--images", work + "/img.tif", "-o", work + "/out",
                 "-O", "path=" + folder]) == 0
    loaded = vf.load_classifier(work + "/c.vfmc", extractor_options={"path": folder})
    np.testing.assert_array_equal(loaded.predict(img), tifffile.imread(work + "/out/img_classes.tif"))
    bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "segment_anything", "transformers", "timm")]
    assert not bad, bad
    print("ok")
""")


@pytest.mark.torch
def test_embed_train_and_predict_without_torch(tmp_path, exported):
    script = tmp_path / "no_torch.py"
    script.write_text(_NO_TORCH)
    env = {**os.environ, "VFM_FEATURES_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(script), str(exported / "fp32"), str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


# -- the forest through onnxruntime ---------------------------------------------------------------------------
def _forest_data(n=3000, width=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, width)).astype(np.float32)
    y = 1 + (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0.5)
    return X, y


def _samples(X, y=None):
    from vfm_features import PixelSamples

    return PixelSamples([None], [None], np.zeros(len(X), int), np.zeros((len(X), 2), int), None, y=y, rows=X)


def test_rf_onnx_matches_the_native_forest():
    pytest.importorskip("skl2onnx")
    from vfm_features.heads.onnx_forest import PROBABILITY_TOLERANCE

    X, y = _forest_data()
    native = vf.get_head("rf", "pixel", n_estimators=16, random_state=0, n_jobs=1).fit(_samples(X, y))
    onnx_head = vf.get_head("rf-onnx", "pixel", n_estimators=16, random_state=0, n_jobs=1).fit(_samples(X, y))
    Xt, _ = _forest_data(5000, seed=1)
    forest = native.forest_
    rows = []  # every split value itself and its float32 neighbours: where float32 thresholds could go wrong
    for tree in forest.estimators_[:8]:
        t = tree.tree_
        for node in np.flatnonzero(t.feature >= 0):
            split = np.float32(t.threshold[node])
            for v in (split, np.nextafter(split, np.float32(-np.inf)), np.nextafter(split, np.float32(np.inf))):
                row = Xt[len(rows) % len(Xt)].copy()
                row[t.feature[node]] = v
                rows.append(row)
    Xt = np.concatenate([Xt, np.array(rows)])
    want = forest.predict_proba(Xt)  # float64, scikit-learn's own
    got = onnx_head.predict_proba(_samples(Xt))
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() <= PROBABILITY_TOLERANCE
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > PROBABILITY_TOLERANCE  # no tie within the tolerance
    np.testing.assert_array_equal(got.argmax(1)[clear], want.argmax(1)[clear])
    np.testing.assert_array_equal(onnx_head.classes_, native.classes_)


def test_rf_onnx_saves_as_forest_arrays_and_pickles_without_its_session(small_data, tmp_path):
    pytest.importorskip("skl2onnx")
    d = small_data[0]
    clf = vf.PixelClassifier("filters", head="rf-onnx", head_options={"n_estimators": 4}, n_jobs=1)
    clf.fit(d.image, d.scribbles(0.03, random_state=0))
    want = clf.predict_proba(small_data[1].image)
    ref = vf.PixelClassifier("filters", head="rf", head_options={"n_estimators": 4}, n_jobs=1)
    ref.fit(d.image, d.scribbles(0.03, random_state=0))
    assert np.abs(want - ref.predict_proba(small_data[1].image)).max() <= 1e-5
    clf.save(tmp_path / "f.vfmc")
    np.testing.assert_array_equal(vf.load_classifier(tmp_path / "f.vfmc").predict_proba(small_data[1].image), want)
    again = pickle.loads(pickle.dumps(clf))
    assert "_onnx" not in again.head_.__dict__
    np.testing.assert_array_equal(again.predict_proba(small_data[1].image), want)


def test_rf_onnx_objects():
    pytest.importorskip("skl2onnx")
    from vfm_features import ObjectSamples

    X, y = _forest_data(400, 8)
    samples = ObjectSamples(np.zeros(len(X), int), np.arange(1, len(X) + 1), y=y, rows=X)
    head = vf.get_head("rf-onnx", "object", n_estimators=10, random_state=0, n_jobs=1).fit(samples)
    want = head.forest_.predict_proba(X)
    assert np.abs(head.predict_proba(samples) - want).max() <= 1e-5


# -- µSAM vit_t (TinyViT) ------------------------------------------------------------------------------------
TINY_VIT = {"name": "tinyt", "kind": "tiny_vit", "embed_dims": [8, 16, 16, 320], "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 1, 2]}


def test_vit_t_variants_are_listed_with_the_publishers_url_and_hash():
    from vfm_features_sam import TINY_SPECS

    assert [s.name for s in TINY_SPECS] == ["musam:vit_t_lm", "musam:vit_t_em_organelles"]
    hashes = {"musam:vit_t_lm": "xxh128:72ec5074774761a6e5c05a08942f981e",
              "musam:vit_t_em_organelles": "xxh128:253474720c497cce605e57c9b1d18fd9"}
    for spec in TINY_SPECS:
        listed = vf.get_spec(spec.name)
        assert listed.weights_hash == hashes[spec.name] and listed.license == "CC-BY-4.0"
        assert listed.weights_url.startswith("https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/")
        assert listed.requires == ("torch", "mobile_sam", "timm") and listed.install == "vfm-features[musam-tiny]"
        assert listed.options["architecture"] == "vit_t" and listed.patch_size == 16
    assert vf.get_spec("musam").name == "musam:vit_b_lm"  # the default stays


def test_vit_t_architecture_is_checked():
    pytest.importorskip("mobile_sam")
    ex = vf.get_extractor("musam:vit_t_lm", architecture=TINY_VIT, pretrained=False)
    assert ex.options["architecture"]["kind"] == "tiny_vit" and ex.weights_hash == "random-init:tinyt:seed=0"
    assert ex.input_contract().size == 1024 and ex.n_features == 256
    with pytest.raises(InputError, match="last width of 320"):
        vf.get_extractor("musam:vit_t_lm", architecture={**TINY_VIT, "embed_dims": [8, 16, 16, 32]})
    with pytest.raises(InputError, match="four positive integers"):
        vf.get_extractor("musam:vit_t_lm", architecture={**TINY_VIT, "depths": [1, 1]})


@pytest.mark.slow
@pytest.mark.torch
def test_vit_t_loads_musam_checkpoints_and_exports(tmp_path):
    pytest.importorskip("mobile_sam")
    import torch

    from vfm_features.models.onnx_export import export_onnx

    ex = vf.get_extractor("musam:vit_t_lm", architecture=TINY_VIT, pretrained=False, device="cpu", seed=3)
    state = {"sam.image_encoder." + k: v for k, v in ex.load_model("cpu").state_dict().items()}
    torch.save({"model_state": state, "epoch": 1}, tmp_path / "vit_t.pt")
    loaded = vf.get_extractor("musam:vit_t_lm", architecture=TINY_VIT, weights=tmp_path / "vit_t.pt", device="cpu")
    img = image((300, 200))
    np.testing.assert_allclose(loaded.embed(img).data, ex.embed(img).data, atol=1e-5)
    with pytest.raises(WeightsError, match="TinyViT.*musam:vit_t_lm"):
        vf.get_extractor("sam:vit_b", weights=tmp_path / "vit_t.pt", device="cpu").load()
    meta = export_onnx(ex, tmp_path / "vit_t")
    assert meta["parity"]["cosine"] >= 0.99999
    got = vf.get_extractor("onnx:folder", path=tmp_path / "vit_t").embed(img).data
    assert np.abs(got - ex.embed(img).data).max() <= 1e-4 * np.abs(got).max()
