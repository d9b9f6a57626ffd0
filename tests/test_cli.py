"""The command line: one -o rule, safe outputs, refused flags, one-line errors, no torch for light extractors."""

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from vfm_features.cli import main
from vfm_features.evaluation.synthetic import make_synthetic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_synthetic(3, (64, 64), random_state=1)
    paths = {"images": [], "labels": [], "masks": [], "classes": []}
    for i, d in enumerate(data):
        tifffile.imwrite(root / f"img{i}.tif", d.image)
        tifffile.imwrite(root / f"lab{i}.tif", d.scribbles(0.05, random_state=i))
        tifffile.imwrite(root / f"mask{i}.tif", d.instances)
        (root / f"cls{i}.json").write_text(json.dumps(d.object_classes))
        paths["images"].append(str(root / f"img{i}.tif"))
        paths["labels"].append(str(root / f"lab{i}.tif"))
        paths["masks"].append(str(root / f"mask{i}.tif"))
        paths["classes"].append(str(root / f"cls{i}.json"))
    return root, paths


@pytest.fixture(scope="module")
def models(files, tmp_path_factory):
    """A pixel and an object classifier trained once for the module."""
    root, p = files
    out = tmp_path_factory.mktemp("models")
    assert main(["train", "pixels", "--images", *p["images"][:2], "--labels", *p["labels"][:2],
                 "-o", str(out / "px.vfmc"), "--trees", "8", "-O", "sigmas=[1,2]", "--jobs", "1"]) == 0
    assert main(["train", "objects", "--images", *p["images"][:2], "--masks", *p["masks"][:2],
                 "--labels", *p["classes"][:2], "-o", str(out / "obj.vfmc"), "--trees", "8", "--jobs", "1"]) == 0
    return out / "px.vfmc", out / "obj.vfmc"


def snapshot(folder: Path):
    """Every path under ``folder`` (hidden ones too) with its bytes; None if the folder does not exist."""
    folder = Path(folder)
    if not folder.exists():
        return None
    return {str(q.relative_to(folder)): (q.read_bytes() if q.is_file() else "dir") for q in sorted(folder.rglob("*"))}


def refused(capsys, code: int, *fix: str) -> str:
    """Exit 1, nothing on stdout, exactly one line on stderr in the CLI's form, naming the fix."""
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(r"^vfm-features( [a-z]+)?: error: ", lines[0]), lines[0]
    assert "Traceback" not in err
    for text in fix:
        assert text in lines[0], lines[0]
    return lines[0]


# -- help and list --------------------------------------------------------------------------------
def test_help_and_list(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "evaluate" in capsys.readouterr().out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "filters:default" in out and "regionprops:default" in out
    assert main(["list", "filters", "--details"]) == 0
    assert "license" in capsys.readouterr().out
    assert main(["list", "--json"]) == 0
    assert any(d["name"] == "filters:default" for d in json.loads(capsys.readouterr().out))


def test_list_upsamplers_and_heads_name_their_plugin(capsys):
    assert main(["list", "--upsamplers"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^bilinear .*\(plugin bilinear, vfm-features", out, re.M)
    assert main(["list", "--heads"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pixel +rf .*\(plugin forest, vfm-features", out, re.M)
    assert re.search(r"^object +rf-reference ", out, re.M)
    assert main(["list", "--heads", "--details", "rf"]) == 0
    assert "n_estimators=64" in capsys.readouterr().out
    assert main(["list", "--heads", "--json"]) == 0
    heads = json.loads(capsys.readouterr().out)
    assert {(h["kind"], h["name"]) for h in heads} >= {("pixel", "rf"), ("object", "rf")}
    assert all(h["distribution"] == "vfm-features" for h in heads)


def test_trust_help_warns_about_code(capsys):
    for command in ("predict", "features"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--weights" in text and "--trust-checkpoint" in text and "RUN CODE" in text


# -- train and predict ---------------------------------------------------------------------------
def test_train_and_predict_pixels(files, models, tmp_path, capsys):
    root, p = files
    px, _ = models
    assert main(["predict", str(px), "--images", p["images"][2], "-o", str(tmp_path / "out"), "--probabilities"]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["img2_classes.tif", "img2_probabilities.tif"]
    classes = tifffile.imread(tmp_path / "out" / "img2_classes.tif")
    assert classes.shape == (64, 64) and classes.dtype == np.uint16 and set(np.unique(classes)) <= {1, 2, 3, 4}
    proba = tifffile.imread(tmp_path / "out" / "img2_probabilities.tif")
    assert proba.shape == (4, 64, 64) and proba.dtype == np.float32
    assert "\r" not in capsys.readouterr().err  # no progress bars when stderr is not a terminal


def test_progress_bars_only_on_a_terminal(files, tmp_path, monkeypatch, capsys):
    import io

    root, p = files
    args = ["train", "pixels", "--images", *p["images"][:2], "--labels", *p["labels"][:2], "-O", "sigmas=[1]",
            "--trees", "3", "--jobs", "1"]
    assert main([*args, "-o", str(tmp_path / "a.vfmc")]) == 0
    assert "\r" not in capsys.readouterr().err  # pytest's stderr is no terminal

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([*args, "-o", str(tmp_path / "b.vfmc")]) == 0
    assert "\r" in terminal.getvalue()  # the same command draws bars on a terminal


def test_train_objects_and_predict_table(files, models, tmp_path, capsys):
    root, p = files
    _, obj = models
    out = tmp_path / "out"
    assert main(["predict", str(obj), "--images", p["images"][2], "--masks", p["masks"][2], "-o", str(out),
                 "--probabilities"]) == 0
    assert sorted(os.listdir(out)) == ["img2_classes.tif", "img2_objects.csv"]
    image = tifffile.imread(out / "img2_classes.tif")
    mask = tifffile.imread(p["masks"][2])
    assert np.all((image > 0) == (mask > 0))
    with open(out / "img2_objects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["id"]) for r in rows] == sorted(int(i) for i in np.unique(mask) if i)
    prob_cols = [c for c in rows[0] if c.startswith("p_")]
    assert prob_cols and all(abs(sum(float(r[c]) for c in prob_cols) - 1) < 1e-4 for r in rows)
    for r in rows:  # the table and the class image agree
        assert np.all(image[mask == int(r["id"])] == int(r["class"]))
        assert r["class"] == max(prob_cols, key=lambda c: float(r[c]))[2:]
    # without --probabilities: id,class only
    out2 = tmp_path / "out2"
    assert main(["predict", str(obj), "--images", p["images"][2], "--masks", p["masks"][2], "-o", str(out2)]) == 0
    assert (out2 / "img2_objects.csv").read_text().splitlines()[0] == "id,class"


def test_train_head_options_and_upsampler(files, tmp_path, capsys):
    from vfm_features.classifiers.fileformat import read_metadata

    root, p = files
    args = ["train", "pixels", "--images", p["images"][0], "--labels", p["labels"][0], "--jobs", "1",
            "-O", "sigmas=[1]"]
    assert main([*args, "-o", str(tmp_path / "a.vfmc"), "--head", "rf-reference", "--head-option", "n_estimators=5",
                 "--head-option", "max_depth=3", "--upsampler", "bilinear"]) == 0
    meta = read_metadata(tmp_path / "a.vfmc")
    assert meta["head"]["name"] == "rf-reference" and meta["upsampler"]["name"] == "bilinear"
    assert meta["head"]["params"]["n_estimators"] == 5 and meta["head"]["params"]["max_depth"] == 3
    assert main([*args, "-o", str(tmp_path / "b.vfmc"), "--trees", "4"]) == 0
    assert read_metadata(tmp_path / "b.vfmc")["head"]["params"]["n_estimators"] == 4
    capsys.readouterr()
    before = snapshot(tmp_path)
    refused(capsys, main([*args, "-o", str(tmp_path / "c.vfmc"), "--trees", "4", "--head-option", "n_estimators=5"]),
            "--trees", "disagree")
    refused(capsys, main([*args, "-o", str(tmp_path / "c.vfmc"), "--head-option", "leaves=5"]), "leaves",
            "n_estimators")
    refused(capsys, main([*args, "-o", str(tmp_path / "c.vfmc"), "--head", "svm"]), "'svm'", "list --heads")
    refused(capsys, main([*args, "-o", str(tmp_path / "c.vfmc"), "--upsampler", "nosuchup"]), "list --upsamplers")
    assert snapshot(tmp_path) == before


def test_predict_working_shape_for_pixel_classifiers(files, models, tmp_path):
    from vfm_features.classifiers.load import load_classifier

    root, p = files
    px, _ = models
    out = tmp_path / "out"
    assert main(["predict", str(px), "--images", p["images"][2], "-o", str(out), "--working-shape", "16", "16"]) == 0
    clf = load_classifier(px)
    clf.working_shape = (16, 16)
    expected = clf.predict(tifffile.imread(p["images"][2]))
    np.testing.assert_array_equal(tifffile.imread(out / "img2_classes.tif"), expected)
    full = load_classifier(px).predict(tifffile.imread(p["images"][2]))
    assert not np.array_equal(expected, full)  # the grid was changed, not ignored


def test_weights_and_trust_are_extractor_options_at_load_time(files, models, tmp_path, monkeypatch, capsys):
    import vfm_features.classifiers.load as load_module
    import vfm_features.registry as registry
    from vfm_features.errors import InputError

    root, p = files
    px, _ = models
    seen = {}

    def fake_load(path, *, extractor_options=None, **kw):
        seen["predict"] = extractor_options
        raise InputError("stop here")

    def fake_get(name, **options):
        seen["features"] = options
        raise InputError("stop here")

    monkeypatch.setattr(load_module, "load_classifier", fake_load)
    monkeypatch.setattr(registry, "get_extractor", fake_get)
    weights = root / "w.pt"
    weights.write_bytes(b"x")
    assert main(["predict", str(px), "--images", p["images"][2], "-o", str(tmp_path / "o"), "--weights", str(weights),
                 "--trust-checkpoint"]) == 1
    assert main(["features", p["images"][2], "-o", str(tmp_path / "f.npy"), "--weights", str(weights)]) == 1
    assert seen["predict"] == {"weights": str(weights), "trust_checkpoint": True}
    assert seen["features"] == {"weights": str(weights)}
    assert snapshot(tmp_path) == {}


# -- outputs: never over an input, unique names, --overwrite ----------------------------------------
def test_train_never_writes_over_an_input(files, tmp_path, capsys):
    root, p = files
    shutil.copy(p["labels"][0], tmp_path / "lab.tif")
    link = tmp_path / "model.vfmc"
    link.symlink_to(tmp_path / "lab.tif")  # -o names the label file through a link
    before = snapshot(tmp_path)
    code = main(["train", "pixels", "--images", p["images"][0], "--labels", str(tmp_path / "lab.tif"), "-o", str(link),
                 "--overwrite"])
    refused(capsys, code, "also an input", "another output")
    assert snapshot(tmp_path) == before
    code = main(["train", "pixels", "--images", p["images"][0], "--labels", str(tmp_path / "lab.tif"),
                 "-o", str(tmp_path / "lab.tif"), "--overwrite"])
    refused(capsys, code, ".vfmc")
    assert snapshot(tmp_path) == before


def test_train_refuses_to_overwrite_without_flag(files, tmp_path, capsys):
    root, p = files
    model = tmp_path / "m.vfmc"
    model.write_bytes(b"precious")
    before = snapshot(tmp_path)
    args = ["train", "pixels", "--images", p["images"][0], "--labels", p["labels"][0], "-o", str(model),
            "-O", "sigmas=[1]", "--trees", "3", "--jobs", "1"]
    refused(capsys, main(args), "exists already", "--overwrite")
    assert snapshot(tmp_path) == before
    assert main([*args, "--overwrite"]) == 0
    assert model.read_bytes()[:2] == b"PK" and sorted(os.listdir(tmp_path)) == ["m.vfmc"]


def test_predict_refuses_images_with_the_same_name(files, models, tmp_path, capsys):
    root, p = files
    px, _ = models
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(p["images"][0], tmp_path / "a" / "img.tif")
    shutil.copy(p["images"][1], tmp_path / "b" / "img.tif")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    before = snapshot(tmp_path)
    code = main(["predict", str(px), "--images", str(tmp_path / "a" / "img.tif"), str(tmp_path / "b" / "img.tif"),
                 "-o", str(out)])
    refused(capsys, code, "img_classes.tif", "distinct file names")
    assert snapshot(tmp_path) == before


def test_predict_refuses_existing_and_overwrites_with_flag(files, models, tmp_path, capsys):
    root, p = files
    px, _ = models
    out = tmp_path / "out"
    out.mkdir()
    (out / "img2_classes.tif").write_bytes(b"old result")
    before = snapshot(tmp_path)
    refused(capsys, main(["predict", str(px), "--images", p["images"][2], "-o", str(out)]),
            "img2_classes.tif exists already", "--overwrite")
    assert snapshot(tmp_path) == before
    assert main(["predict", str(px), "--images", p["images"][2], "-o", str(out), "--overwrite"]) == 0
    assert tifffile.imread(out / "img2_classes.tif").shape == (64, 64)
    # an output that is an input (through a link) is refused even with --overwrite
    (out / "img2_classes.tif").unlink()
    (out / "img2_classes.tif").symlink_to(p["images"][2])
    image_bytes = Path(p["images"][2]).read_bytes()
    before = snapshot(tmp_path)
    refused(capsys, main(["predict", str(px), "--images", p["images"][2], "-o", str(out), "--overwrite"]),
            "also an input")
    assert snapshot(tmp_path) == before and Path(p["images"][2]).read_bytes() == image_bytes


def test_predict_failing_midway_leaves_the_folder_as_it_was(files, models, tmp_path, capsys):
    root, p = files
    px, _ = models
    fake = tmp_path / "zzz.tif"
    fake.write_text("not a tiff")  # exists, so the up-front checks pass; reading it fails after img2 is predicted
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    code = main(["predict", str(px), "--images", p["images"][2], str(fake), "-o", str(out), "--probabilities"])
    refused(capsys, code, str(fake), "TIF")
    assert snapshot(tmp_path) == before and not out.exists()  # nothing written, no folder made, no temporaries
    out.mkdir()
    (out / "keep.txt").write_text("x")
    before = snapshot(tmp_path)
    code = main(["predict", str(px), "--images", p["images"][2], str(fake), "-o", str(out)])
    refused(capsys, code, str(fake))
    assert snapshot(tmp_path) == before


def test_predict_o_is_a_folder(files, models, tmp_path, capsys):
    root, p = files
    px, _ = models
    (tmp_path / "x.tif").write_bytes(b"keep")
    before = snapshot(tmp_path)
    refused(capsys, main(["predict", str(px), "--images", p["images"][2], "-o", str(tmp_path / "x.tif")]),
            "takes a folder")
    refused(capsys, main(["predict", str(px), "--images", p["images"][2], "-o", str(tmp_path / "x.tif" / "out")]),
            "x.tif is a file, not a folder")
    refused(capsys, main(["train", "pixels", "--images", p["images"][2], "--labels", p["labels"][2],
                          "-o", str(tmp_path / "x.tif" / "m.vfmc")]), "x.tif is a file, not a folder")
    assert snapshot(tmp_path) == before


# -- features -----------------------------------------------------------------------------------
def test_features_npy_and_zarr(files, tmp_path):
    root, p = files
    assert main(["features", p["images"][0], "-o", str(tmp_path / "f.npy"), "-O", "sigmas=[1]"]) == 0
    f = np.load(tmp_path / "f.npy")
    assert f.shape == (8, 64, 64)
    record = json.loads((tmp_path / "f.json").read_text())
    assert record["signature"]["extractor"] == "filters:default" and record["vfm-features"]["written_by"]
    pytest.importorskip("zarr")
    assert main(["features", p["images"][0], "-o", str(tmp_path / "f.zarr"), "-O", "sigmas=[1]"]) == 0
    import zarr

    arr = zarr.open_array(str(tmp_path / "f.zarr"), mode="r")
    np.testing.assert_allclose(arr[:], f)
    assert arr.attrs["vfm-features"]["written_by"] == "vfm-features features"


def test_features_dense_uses_the_upsampler(files, tmp_path):
    root, p = files
    assert main(["features", p["images"][0], "-o", str(tmp_path / "d.npy"), "-O", "sigmas=[1]", "--dense",
                 "--upsampler", "bilinear"]) == 0
    assert np.load(tmp_path / "d.npy").shape == (8, 64, 64)
    assert json.loads((tmp_path / "d.json").read_text())["upsampler"]["upsampler"] == "bilinear"


def test_features_npy_checks_both_files_first(files, tmp_path, capsys):
    root, p = files
    (tmp_path / "x.json").write_text("my notes")  # only the sidecar exists
    before = snapshot(tmp_path)
    refused(capsys, main(["features", p["images"][0], "-o", str(tmp_path / "x.npy")]), "x.json exists already",
            "--overwrite")
    assert snapshot(tmp_path) == before
    np.save(tmp_path / "img.npy", tifffile.imread(p["images"][0]))
    before = snapshot(tmp_path)
    refused(capsys, main(["features", str(tmp_path / "img.npy"), "-o", str(tmp_path / "img.npy"), "--overwrite"]),
            "also an input")
    assert snapshot(tmp_path) == before
    assert main(["features", p["images"][0], "-o", str(tmp_path / "x.npy"), "-O", "sigmas=[1]", "--overwrite"]) == 0
    assert json.loads((tmp_path / "x.json").read_text())["dense"] is False


def test_features_never_deletes_a_folder_it_did_not_write(files, tmp_path, capsys):
    pytest.importorskip("zarr")
    root, p = files
    cache = tmp_path / "cache.zarr"  # someone's folder, e.g. a cache
    (cache / "sub").mkdir(parents=True)
    (cache / "sub" / "data.bin").write_bytes(b"important")
    (cache / "zarr.json").write_text("{}")
    before = snapshot(tmp_path)
    args = ["features", p["images"][0], "-o", str(cache), "-O", "sigmas=[1]"]
    refused(capsys, main(args), "exists already", "--overwrite")
    assert snapshot(tmp_path) == before
    refused(capsys, main([*args, "--overwrite"]), "not a .zarr written by 'vfm-features features'")
    assert snapshot(tmp_path) == before
    # a store this command wrote is replaced with --overwrite, and nothing else is left behind
    ours = tmp_path / "f.zarr"
    assert main(["features", p["images"][0], "-o", str(ours), "-O", "sigmas=[1]"]) == 0
    assert main(["features", p["images"][0], "-o", str(ours), "-O", "sigmas=[1,2]", "--overwrite"]) == 0
    import zarr

    assert zarr.open_array(str(ours), mode="r").shape == (16, 64, 64)
    assert sorted(os.listdir(tmp_path)) == ["cache.zarr", "f.zarr"]
    # ...but not once something else was put into it
    (ours / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    refused(capsys, main(["features", p["images"][0], "-o", str(ours), "--overwrite"]), "left alone")
    assert snapshot(tmp_path) == before


# -- flags that do not apply are refused -----------------------------------------------------------
@pytest.mark.parametrize("extra, fix", [
    (["pixels", "--masks", "M"], "--masks is for 'train objects'"),
    (["pixels", "--stats", "mean", "std"], "--stats is for 'train objects'"),
    (["pixels", "-o", "model.tif"], ".vfmc"),
    (["objects", "--masks", "M", "--stats", "mean", "std"], "drop --stats"),
    (["objects", "--masks", "M", "--working-shape", "32", "32"], "drop --working-shape"),
    (["objects", "--masks", "M", "--upsampler", "bilinear"], "drop --upsampler"),
    (["objects", "--masks", "M", "--no-area"], "drop --no-area"),
    (["pixels", "-e", "regionprops"], "train objects"),
])
def test_train_refuses_flags_that_do_not_apply(files, tmp_path, capsys, extra, fix):
    root, p = files
    task, *rest = extra
    rest = [p["masks"][0] if a == "M" else a for a in rest]
    out = ["-o", str(tmp_path / "m.vfmc")] if "-o" not in rest else []
    labels = p["labels"][0] if task == "pixels" else p["classes"][0]
    code = main(["train", task, "--images", p["images"][0], "--labels", labels, *out, *rest])
    refused(capsys, code, fix)
    assert snapshot(tmp_path) == {}


def test_predict_refuses_flags_that_do_not_apply(files, models, tmp_path, capsys):
    root, p = files
    px, obj = models
    out = str(tmp_path / "o")
    refused(capsys, main(["predict", str(obj), "--images", p["images"][2], "--masks", p["masks"][2], "-o", out,
                          "--working-shape", "16", "16"]), "drop --working-shape")
    refused(capsys, main(["predict", str(px), "--images", p["images"][2], "--masks", p["masks"][2], "-o", out]),
            "drop --masks")
    refused(capsys, main(["features", p["images"][2], "-o", str(tmp_path / "f.npy"), "--upsampler", "bilinear"]),
            "--dense")
    assert snapshot(tmp_path) == {}


# -- errors at the boundary: one line, the path named, no traceback ----------------------------------
def test_errors_are_one_line_and_exit_1(files, models, tmp_path, capsys):
    root, p = files
    px, _ = models
    fake_png = tmp_path / "fake.png"
    fake_png.write_text("text, not an image")
    fake_model = tmp_path / "fake.vfmc"
    fake_model.write_bytes(b"\x00\x01 not a zip")
    bad_json = tmp_path / "bad.json"
    bad_json.write_bytes(b"\xff\xfe{")
    before = snapshot(tmp_path)
    m = str(tmp_path / "m.vfmc")
    refused(capsys, main(["train", "pixels", "--images", p["images"][0], "--labels", p["masks"][0], p["masks"][1],
                          "-o", m]), "pass one for each")
    refused(capsys, main(["features", p["images"][0], "-o", str(tmp_path / "x.npy"), "-e", "nosuch"]),
            "Unknown extractor")
    refused(capsys, main(["predict", str(tmp_path / "none.vfmc"), "--images", p["images"][0], "-o", str(tmp_path)]),
            "none.vfmc")
    refused(capsys, main(["predict", str(fake_model), "--images", p["images"][0], "-o", str(tmp_path / "o")]),
            "fake.vfmc", "not a valid")
    refused(capsys, main(["predict", str(px), "--images", str(fake_png), "-o", str(tmp_path / "o")]),
            "fake.png", "PNG")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(capsys, main(["predict", str(px), "--images", str(empty), "-o", str(tmp_path / "o")]), "holds no image")
    empty.rmdir()
    refused(capsys, main(["train", "objects", "--images", p["images"][0], "--masks", p["masks"][0],
                          "--labels", str(bad_json), "-o", m]), "bad.json")
    refused(capsys, main(["train", "pixels", "--images", p["images"][0]]), "required", "--help")
    refused(capsys, main(["train", "pixels", "--images", p["images"][0], "--labels", p["labels"][0], "-o", m,
                          "--budget", "many"]), "invalid int value")
    refused(capsys, main([]), "give a command")
    assert snapshot(tmp_path) == before


def test_oserrors_name_the_path(files, tmp_path, monkeypatch, capsys):
    import vfm_features.io as io

    root, p = files

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(io, "read_image", denied)
    code = main(["features", p["images"][0], "-o", str(tmp_path / "f.npy")])
    assert refused(capsys, code, p["images"][0], "Permission denied")
    assert snapshot(tmp_path) == {}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_is_refused_before_work(files, models, tmp_path, capsys):
    root, p = files
    px, _ = models
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refused(capsys, main(["predict", str(px), "--images", p["images"][2], "-o", str(locked)]), "not writable")
    finally:
        locked.chmod(0o700)
    assert os.listdir(locked) == []


# -- evaluate and demo -----------------------------------------------------------------------------
def test_evaluate_writes_into_a_folder_and_reports_heads(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["demo", "--save-data", str(data), "--size", "48", "--train", "2", "--test", "1"]) == 0
    assert sorted(os.listdir(data)) == ["images", "instances", "labels", "object_classes"]
    out = tmp_path / "ev"
    args = ["evaluate", str(data), "--task", "pixels", "--folds", "2", "--repeats", "1", "--pixel-budgets", "50",
            "--pixels-per-image", "500", "--jobs", "1", "--head", "rf", "--upsampler", "bilinear", "-o", str(out)]
    capsys.readouterr()
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "heads rf" in text and "upsampler bilinear" in text
    expected = ["evaluation.csv"]
    if importlib.util.find_spec("matplotlib") is not None:
        expected.append("evaluation.png")
    assert sorted(os.listdir(out)) == expected
    before = snapshot(tmp_path)
    refused(capsys, main(args), "evaluation.csv", "exists already", "--overwrite")
    refused(capsys, main(["demo", "--save-data", str(data), "--size", "48", "--train", "2", "--test", "1"]),
            "exists already")
    refused(capsys, main([*args[:2], "--task", "objects", "--pixel-budgets", "50", "-o", str(tmp_path / "x")]),
            "drop --pixel-budgets")
    refused(capsys, main([*args[:2], "-e", "regionprops", "--upsampler", "bilinear", "-o", str(tmp_path / "x")]),
            "drop --upsampler")
    assert snapshot(tmp_path) == before


def test_demo_small(capsys):
    assert main(["demo", "--size", "64", "--train", "2", "--test", "1"]) == 0
    out = capsys.readouterr().out
    assert "regionprops" in out and "macro-F1" in out


# -- no torch for the light extractors -------------------------------------------------------------
def test_light_extractors_do_not_import_torch(files, tmp_path):
    root, p = files
    calls = [
        ["train", "pixels", "--images", p["images"][0], "--labels", p["labels"][0], "-o", str(tmp_path / "p.vfmc"),
         "--trees", "3", "-O", "sigmas=[1]", "--jobs", "1"],
        ["predict", str(tmp_path / "p.vfmc"), "--images", p["images"][1], "-o", str(tmp_path / "o")],
        ["train", "objects", "--images", p["images"][0], "--masks", p["masks"][0], "--labels", p["classes"][0],
         "-o", str(tmp_path / "o.vfmc"), "--trees", "3", "--jobs", "1"],
        ["predict", str(tmp_path / "o.vfmc"), "--images", p["images"][1], "--masks", p["masks"][1],
         "-o", str(tmp_path / "o2")],
        ["features", p["images"][0], "-o", str(tmp_path / "f.npy"), "-O", "sigmas=[1]"],
    ]
    code = ("import sys; from vfm_features.cli import main\n"
            f"for argv in {calls!r}:\n"
            "    assert main(argv) == 0, argv\n"
            "heavy = [m for m in ('torch', 'torchvision', 'transformers', 'segment_anything', 'sam2')\n"
            "         if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "img1_classes.tif").exists() and (tmp_path / "o2" / "img1_objects.csv").exists()


# -- docs/cli.md -----------------------------------------------------------------------------------
def _doc_commands() -> list[str]:
    """The commands of the ```bash blocks of docs/cli.md, continuation lines joined."""
    text = (ROOT / "docs" / "cli.md").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)
    assert blocks
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _check_doc_outputs(folder: Path) -> None:
    assert (folder / "pixel-results" / "synthetic02_probabilities.tif").exists()
    assert (folder / "object-results" / "synthetic02_objects.csv").exists()
    assert (folder / "coarse" / "synthetic02_classes.tif").exists()


def test_docs_bash_blocks_run_as_written(tmp_path, monkeypatch, capsys):
    """Each command is expanded by bash as written (quotes, globs, continuations) and run in this process."""
    commands = _doc_commands()
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert command.startswith("vfm-features "), command
        line = "printf '%s\\0' " + command[len("vfm-features "):]
        expanded = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=tmp_path, capture_output=True,
                                  text=True, check=True).stdout
        argv = expanded.split("\0")[:-1]
        assert not any(re.search(r"[\\[*?]", a) for a in argv), f"a glob matched nothing: {argv}"
        assert main(argv) == 0, (command, capsys.readouterr().err)
    _check_doc_outputs(tmp_path)


@pytest.mark.slow
def test_docs_bash_blocks_run_in_bash(tmp_path):
    """The same, as one bash script with the installed vfm-features command (one process per command)."""
    script = "set -euo pipefail\n" + "\n".join(_doc_commands())
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\r" not in result.stderr
    _check_doc_outputs(tmp_path)
