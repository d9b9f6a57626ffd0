import json

import numpy as np
import pytest
import tifffile

from vfm_features.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory, small_data):
    root = tmp_path_factory.mktemp("cli")
    paths = {"images": [], "labels": [], "masks": [], "classes": []}
    for i, d in enumerate(small_data[:2]):
        tifffile.imwrite(root / f"img{i}.tif", d.image)
        tifffile.imwrite(root / f"lab{i}.tif", d.scribbles(0.03, random_state=i))
        tifffile.imwrite(root / f"mask{i}.tif", d.instances)
        (root / f"cls{i}.json").write_text(json.dumps(d.object_classes))
        paths["images"].append(str(root / f"img{i}.tif"))
        paths["labels"].append(str(root / f"lab{i}.tif"))
        paths["masks"].append(str(root / f"mask{i}.tif"))
        paths["classes"].append(str(root / f"cls{i}.json"))
    return root, paths


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


def test_train_and_predict_pixels(files, tmp_path, capsys):
    root, p = files
    model = tmp_path / "px.vfmc"
    assert main(["train", "pixels", "--images", *p["images"], "--labels", *p["labels"], "-o", str(model),
                 "--trees", "10", "-O", "sigmas=[1,2]"]) == 0
    assert model.exists()
    assert main(["predict", str(model), "--images", p["images"][0], "-o", str(tmp_path / "out"), "--probabilities"]) == 0
    classes = tifffile.imread(tmp_path / "out" / "img0_classes.tif")
    assert classes.shape == (96, 96) and set(np.unique(classes)) <= {1, 2, 3, 4}
    assert tifffile.imread(tmp_path / "out" / "img0_probabilities.tif").shape == (4, 96, 96)


def test_train_and_predict_objects(files, tmp_path):
    root, p = files
    model = tmp_path / "obj.vfmc"
    assert main(["train", "objects", "--images", *p["images"], "--masks", *p["masks"], "--labels", *p["classes"],
                 "-o", str(model), "--trees", "10"]) == 0
    assert main(["predict", str(model), "--images", p["images"][1], "--masks", p["masks"][1], "-o", str(tmp_path)]) == 0
    out = tifffile.imread(tmp_path / "img1_classes.tif")
    mask = tifffile.imread(p["masks"][1])
    assert np.all((out > 0) == (mask > 0))


def test_features_npy_and_zarr(files, tmp_path):
    root, p = files
    assert main(["features", p["images"][0], "-o", str(tmp_path / "f.npy"), "-O", "sigmas=[1]"]) == 0
    f = np.load(tmp_path / "f.npy")
    assert f.shape == (8, 96, 96)
    assert json.loads((tmp_path / "f.json").read_text())["signature"]["extractor"] == "filters:default"
    pytest.importorskip("zarr")
    assert main(["features", p["images"][0], "-o", str(tmp_path / "f.zarr"), "-O", "sigmas=[1]"]) == 0
    import zarr

    arr = zarr.open_array(str(tmp_path / "f.zarr"), mode="r")
    np.testing.assert_allclose(arr[:], f)


def test_errors_are_one_sentence_and_exit_1(files, tmp_path, capsys):
    root, p = files
    assert main(["train", "pixels", "--images", p["images"][0], "--labels", p["masks"][0], p["masks"][1],
                 "-o", str(tmp_path / "m.vfmc")]) == 1
    assert "pass one for each" in capsys.readouterr().err
    assert main(["features", p["images"][0], "-o", str(tmp_path / "x.npy"), "-e", "nosuch"]) == 1
    assert "Unknown extractor" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "none.vfmc"), "--images", p["images"][0], "-o", str(tmp_path)]) == 1
    assert not (tmp_path / "m.vfmc").exists()


def test_demo_small(capsys):
    assert main(["demo", "--size", "96", "--train", "2", "--test", "1"]) == 0
    out = capsys.readouterr().out
    assert "regionprops" in out and "macro-F1" in out
