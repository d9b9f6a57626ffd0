"""Scale-out prediction: blocks on Dask equal the single-process run bit for bit, objects across block borders
included; a killed run resumes with only the missing blocks; OME-Zarr in and out with physical metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")
pytest.importorskip("ome_zarr")
tifffile = pytest.importorskip("tifffile")
zarr = pytest.importorskip("zarr")

import vfm_features as vf  # noqa: E402
from vfm_features import InputError  # noqa: E402
from vfm_features.scale import plan_grid, predict_objects, predict_pixels  # noqa: E402
from vfm_features.scale.store import MARKERS, read_classes  # noqa: E402


def big_scene(tiles: int = 8, size: int = 512):
    """A tiles x tiles mosaic of synthetic scenes, with object ids made unique per tile."""
    scenes = vf.make_synthetic(4, (size, size), random_state=3)
    rows_img, rows_mask, k = [], [], 0
    for i in range(tiles):
        ims, ms = [], []
        for j in range(tiles):
            s = scenes[(i + j) % 4]
            ims.append(s.image)
            ms.append(np.where(s.instances > 0, s.instances.astype(np.int64) + k, 0))
            k += int(s.instances.max()) + 1
        rows_img.append(np.concatenate(ims, 1))
        rows_mask.append(np.concatenate(ms, 1))
    return np.concatenate(rows_img, 0), np.concatenate(rows_mask, 0).astype(np.uint32)


@pytest.fixture(scope="module")
def trained(small_data):
    d = small_data[0]
    pixels = vf.PixelClassifier("filters", extractor_options={"sigmas": [1.0, 2.0]}, n_jobs=1,
                                head_options={"n_estimators": 6}).fit(d.image, d.scribbles(0.05, random_state=0))
    objects = vf.ObjectClassifier("filters", extractor_options={"sigmas": [1.0, 2.0]}, stats=("mean", "std", "min", "max"),
                                  n_jobs=1, head_options={"n_estimators": 6}).fit(d.image, d.instances, d.object_classes)
    return pixels, objects


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    image, mask = big_scene(2)  # 1024 x 1024
    tifffile.imwrite(root / "scene.tif", image, tile=(256, 256))
    tifffile.imwrite(root / "scene_mask.tif", mask, tile=(256, 256))
    return root, image, mask


def test_plan_covers_the_image_on_a_chunk_grid():
    blocks = plan_grid((1000, 700), 256, 12)
    cover = np.zeros((1000, 700), int)
    for b in blocks:
        cover[b.core_slices] += 1
        assert b.core[0][0] % 256 == 0 and b.core[1][0] % 256 == 0
        assert b.read[0][0] == max(0, b.core[0][0] - 12) and b.read[1][1] == min(700, b.core[1][1] + 12)
    assert (cover == 1).all()
    padded = plan_grid((1000, 700), 256, 12, pad=True)  # fixed-input models: one block shape
    shapes = {(b.read[0][1] - b.read[0][0] + sum(b.pad[0]), b.read[1][1] - b.read[1][0] + sum(b.pad[1]))
              for b in padded}
    assert shapes == {(280, 280)}


def test_pixels_blockwise_equal_the_whole_image(trained, scene_files, tmp_path):
    clf = trained[0]
    root, image, _ = scene_files
    report = predict_pixels(clf, root / "scene.tif", tmp_path / "p.ome.zarr", block_shape=300, probabilities=True,
                            scheduler="synchronous")
    assert report.n_blocks == 16 and report.computed == 16
    whole = clf.predict_proba(image)
    store = zarr.open_group(str(tmp_path / "p.ome.zarr"), mode="r")
    np.testing.assert_array_equal(store["probabilities/0"][...], whole)
    np.testing.assert_array_equal(read_classes(tmp_path / "p.ome.zarr"), clf.classes_[whole.argmax(0)])
    threads = predict_pixels(clf, root / "scene.tif", tmp_path / "t.ome.zarr", block_shape=300, scheduler="threads")
    assert threads.computed == 16
    np.testing.assert_array_equal(read_classes(tmp_path / "t.ome.zarr"), read_classes(tmp_path / "p.ome.zarr"))


def test_objects_across_block_borders_get_their_whole_features(trained, scene_files, tmp_path):
    clf = trained[1]
    root, image, mask = scene_files
    report = predict_objects(clf, root / "scene.tif", root / "scene_mask.tif", tmp_path / "o.ome.zarr",
                             block_shape=300, scheduler="synchronous")
    ids, values, names = report.extra["features"]
    whole = clf.object_features(image, mask)
    np.testing.assert_array_equal(ids, whole.ids)
    np.testing.assert_allclose(values, whole.values, rtol=1e-6, atol=1e-5)  # sums in another order
    assert names == whole.names
    pred = clf.predict(image, mask)
    np.testing.assert_array_equal(read_classes(tmp_path / "o.ome.zarr"), pred.class_image)
    table = np.genfromtxt(report.table, delimiter=",", names=True)
    np.testing.assert_array_equal(table["id"].astype(int), pred.ids)
    np.testing.assert_array_equal(table["class"].astype(int), pred.classes)
    crossing = [i for i in ids if len({(y // 300, x // 300) for y, x in np.argwhere(mask == i)[::5]}) > 1]
    assert len(crossing) > 10  # the test means something: many objects lie across block borders


def _cluster_run(clf_path: str, image: str, mask: str, out: str) -> None:
    """In a fresh interpreter (spawned workers need an importable main): a 2-worker local cluster."""
    code = f"""
import vfm_features as vf
from distributed import Client, LocalCluster
from vfm_features.scale import predict_objects, predict_pixels
if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, Client(cl) as c:
        pix = vf.load_classifier({clf_path + '_pixels.vfmc'!r})
        predict_pixels(pix, {image!r}, {out + '/pixels.ome.zarr'!r}, block_shape=1000, probabilities=True, scheduler=c)
        obj = vf.load_classifier({clf_path + '_objects.vfmc'!r})
        predict_objects(obj, {image!r}, {mask!r}, {out + '/objects.ome.zarr'!r}, block_shape=1000, scheduler=c)
"""
    script = Path(out) / "cluster_run.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_4096_squared_on_a_two_worker_cluster_is_bit_identical(trained, tmp_path):
    pytest.importorskip("distributed")
    image, mask = big_scene(8)  # 4096 x 4096, objects cut by the 1000-pixel block grid
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(512, 512))
    tifffile.imwrite(tmp_path / "big_mask.tif", mask, tile=(512, 512))
    trained[0].save(tmp_path / "c_pixels.vfmc")
    trained[1].save(tmp_path / "c_objects.vfmc")
    (tmp_path / "cluster").mkdir()
    _cluster_run(str(tmp_path / "c"), str(tmp_path / "big.tif"), str(tmp_path / "big_mask.tif"), str(tmp_path / "cluster"))
    single = tmp_path / "single"
    pix = vf.load_classifier(tmp_path / "c_pixels.vfmc")
    predict_pixels(pix, tmp_path / "big.tif", single / "pixels.ome.zarr", block_shape=1000, probabilities=True,
                   scheduler="synchronous")
    obj = vf.load_classifier(tmp_path / "c_objects.vfmc")
    predict_objects(obj, tmp_path / "big.tif", tmp_path / "big_mask.tif", single / "objects.ome.zarr",
                    block_shape=1000, scheduler="synchronous")
    for name, array in (("pixels", "probabilities/0"), ("pixels", "classes/0"), ("objects", "classes/0")):
        a = zarr.open_group(str(tmp_path / "cluster" / f"{name}.ome.zarr"), mode="r")[array][...]
        b = zarr.open_group(str(single / f"{name}.ome.zarr"), mode="r")[array][...]
        np.testing.assert_array_equal(a, b, err_msg=f"{name} {array}")
    assert (tmp_path / "cluster" / "objects.csv").read_text() == (single / "objects.csv").read_text()


def test_a_killed_run_resumes_with_the_missing_blocks_only(trained, tmp_path):
    image, _ = big_scene(4)  # 2048 x 2048: 64 blocks of 256
    tifffile.imwrite(tmp_path / "img.tif", image, tile=(256, 256))
    trained[0].save(tmp_path / "c.vfmc")
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "import sys; from vfm_features.cli import main; sys.exit(main(sys.argv[1:]))",
           "predict", str(tmp_path / "c.vfmc"), "--images", str(tmp_path / "img.tif"), "-o", str(out),
           "--scheduler", "synchronous", "--block-shape", "256"]
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    markers = out / "img.ome.zarr" / MARKERS
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and (not markers.exists() or len(list(markers.iterdir())) < 8):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    log.close()
    assert markers.exists(), (tmp_path / "log.txt").read_text()[-2000:]
    done_before = len([m for m in markers.iterdir() if m.name.isdigit()])
    assert 8 <= done_before < 64, "the run was not killed half-way"
    with pytest.raises(InputError, match="not a finished"):
        read_classes(out / "img.ome.zarr")
    clf = vf.load_classifier(tmp_path / "c.vfmc")
    report = predict_pixels(clf, tmp_path / "img.tif", out / "img.ome.zarr", block_shape=256, scheduler="threads")
    assert report.computed == 64 - done_before and report.n_blocks == 64
    np.testing.assert_array_equal(read_classes(out / "img.ome.zarr"), clf.predict(image))


def test_outputs_are_refused_unless_resumable_or_overwritten(trained, scene_files, tmp_path):
    clf = trained[0]
    root, _, _ = scene_files
    predict_pixels(clf, root / "scene.tif", tmp_path / "p.ome.zarr", block_shape=512, scheduler="synchronous")
    with pytest.raises(InputError, match="finished run.*overwrite"):
        predict_pixels(clf, root / "scene.tif", tmp_path / "p.ome.zarr", block_shape=512)
    again = predict_pixels(clf, root / "scene.tif", tmp_path / "p.ome.zarr", block_shape=512, overwrite=True)
    assert again.computed == again.n_blocks
    (tmp_path / "mine.ome.zarr").mkdir()
    (tmp_path / "mine.ome.zarr" / "notes.txt").write_text("precious")
    with pytest.raises(InputError, match="not an output of vfm-features"):
        predict_pixels(clf, root / "scene.tif", tmp_path / "mine.ome.zarr", overwrite=True)
    assert (tmp_path / "mine.ome.zarr" / "notes.txt").read_text() == "precious"


def test_ome_zarr_input_keeps_its_physical_pixel_size(trained, tmp_path, small_data):
    from ome_zarr.writer import write_image

    image = small_data[1].image
    group = zarr.open_group(str(tmp_path / "in.ome.zarr"), mode="w")
    write_image(image, group, axes="yx", scale_factors=(), scale={"y": 0.25, "x": 0.5},
                axes_units={"y": "micrometer", "x": "micrometer"})
    predict_pixels(trained[0], tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr", block_shape=64)
    meta = json.loads((tmp_path / "out.ome.zarr" / "classes" / "zarr.json").read_text())["attributes"]["ome"]
    ms = meta["multiscales"][0]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.25, 0.5]
    assert [a.get("unit") for a in ms["axes"]] == ["micrometer", "micrometer"]
    np.testing.assert_array_equal(read_classes(tmp_path / "out.ome.zarr"), trained[0].predict(image))


def test_cli_runs_blockwise_and_names_bad_input(trained, scene_files, tmp_path, capsys):
    from vfm_features.cli import main

    clf_path = tmp_path / "c.vfmc"
    trained[0].save(clf_path)
    root, image, _ = scene_files
    code = main(["predict", str(clf_path), "--images", str(root / "scene.tif"), "-o", str(tmp_path / "out"),
                 "--block-shape", "512", "--scheduler", "threads"])
    assert code == 0 and "megapixels/s" in capsys.readouterr().out
    np.testing.assert_array_equal(read_classes(tmp_path / "out" / "scene.ome.zarr"), trained[0].predict(image))
    assert main(["predict", str(clf_path), "--images", str(root / "scene.tif"), "-o", str(tmp_path / "o2"),
                 "--scheduler", "nonsense"]) == 1
    assert "scheduler='nonsense'" in capsys.readouterr().err
    np.save(tmp_path / "stack.npy", np.zeros((3, 64, 64), np.uint16))
    assert main(["predict", str(clf_path), "--images", str(tmp_path / "stack.npy"), "-o", str(tmp_path / "o3"),
                 "--axes", "ZYX", "--block-shape", "64"]) == 1
    assert "3 planes along Z" in capsys.readouterr().err
