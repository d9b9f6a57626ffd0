"""The LabKit-style backend: LabKit's labelling files (JSON and TIFF + .labels) and the Segmenter loop.

The JSON written here by hand is what LabKit's LabelingSerializer (Gson) writes: ``interval``
with ``min``/``max``/``n`` in imglib2's (x, y[, z]) order, ``pixelSizes``, ``labels`` as
name -> [[x, y], ...] and ``colors`` as name -> "#RRGGBB".
"""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest

import vfm_features as vf
from vfm_labkit import (
    EmptyLabelWarning,
    Labeling,
    Segmenter,
    labeling_json,
    open_labeling,
    read_labeling,
    read_labeling_tiff,
    write_labeling,
    write_labeling_tiff,
)

NAMES = ["background", "round", "granular", "ring"]  # the synthetic data's semantic classes 1..4
FAST = {"extractor_options": {"sigmas": [1.0, 2.0]}, "head_options": {"n_estimators": 10}}


def labkit_file(path, labels, size=(30, 20), colors=None, origin=None, **extra):
    """A .labeling file as LabKit writes it (size is LabKit's (width, height))."""
    origin = origin or (0,) * len(size)
    data = {"interval": {"min": list(origin), "max": [o + s - 1 for o, s in zip(origin, size)], "n": len(size)},
            "pixelSizes": [{"size": 1.0, "unit": "pixel"} for _ in size],
            "labels": labels, "colors": colors or {}, **extra}
    path.write_text(json.dumps(data, separators=(",", ":")))
    return path


@pytest.fixture(scope="module")
def data():
    d = vf.make_synthetic(2, (64, 64), random_state=3)
    strokes = d[0].scribbles(0.05, random_state=0)
    return d, Labeling.from_label_image(strokes, NAMES), strokes


# -- the .labeling JSON -----------------------------------------------------------------------------
def test_reads_labkits_json_in_imglib2_order(tmp_path):
    path = labkit_file(tmp_path / "img.tif.labeling", {"background": [[29, 0], [0, 19]], "foreground": [[3, 4]]},
                       colors={"background": "#0000ff", "foreground": "#FF0000"})
    lab = read_labeling(path)
    assert lab.shape == (20, 30)  # height x width
    assert lab.names == ["background", "foreground"]
    assert lab.pixels["background"].tolist() == [[0, 29], [19, 0]]  # [x, y] -> (row, column)
    assert lab.colors == {"background": "#0000FF", "foreground": "#FF0000"}
    image = lab.to_label_image()
    assert image[0, 29] == 1 and image[19, 0] == 1 and image[4, 3] == 2 and image.sum() == 4


def test_writes_what_labkit_reads(tmp_path, data):
    _, lab, strokes = data
    path = write_labeling(lab, tmp_path / "img.tif.labeling")
    raw = json.loads(path.read_text())
    assert list(raw) == ["interval", "pixelSizes", "labels", "colors"]
    assert raw["interval"] == {"min": [0, 0], "max": [63, 63], "n": 2}
    assert raw["pixelSizes"] == [{"size": 1.0, "unit": "pixel"}] * 2
    first = raw["labels"]["background"][:2]
    assert first[0][1] <= first[1][1]  # LabKit's cursor order: x fastest, then y
    assert all(isinstance(c, str) and c.startswith("#") and len(c) == 7 for c in raw["colors"].values())
    again = read_labeling(path)
    assert again.names == NAMES
    np.testing.assert_array_equal(again.to_label_image(NAMES), strokes)


def test_interval_with_an_origin_and_3d(tmp_path):
    path = labkit_file(tmp_path / "a.labeling", {"a": [[5, 7]], "b": [[6, 8]]}, size=(4, 4), origin=(5, 7))
    lab = read_labeling(path)
    assert lab.origin == (5, 7) and lab.pixels["a"].tolist() == [[0, 0]] and lab.pixels["b"].tolist() == [[1, 1]]
    assert json.loads(write_labeling(lab, tmp_path / "b.labeling").read_text())["labels"]["b"] == [[6, 8]]
    path = labkit_file(tmp_path / "c.labeling", {"a": [[1, 2, 3]], "b": []}, size=(4, 5, 6))
    lab = read_labeling(path)
    assert lab.shape == (6, 5, 4) and lab.pixels["a"].tolist() == [[3, 2, 1]] and lab.counts() == {"a": 1, "b": 0}


def test_overlapping_labels_follow_labkits_rule():
    lab = Labeling((4, 4), {"a": [[1, 1], [2, 2]], "b": [[1, 1]]})
    assert lab.to_label_image(["a", "b"])[1, 1] == 1  # the earliest class wins
    assert lab.to_label_image(["b", "a"])[1, 1] == 1 and lab.to_label_image(["b", "a"])[2, 2] == 2


@pytest.mark.parametrize("labels, extra, match", [
    ({"a": [[30, 0]]}, {}, "outside the interval"),
    ({"a": [[-1, 0]]}, {}, "outside the interval"),
    ({"a": [[1.5, 0]]}, {}, "whole-number"),
    ({"a": [[1, 0, 2]]}, {}, "whole-number"),
    ({"a": [[1, 0], [2]]}, {}, "whole-number"),
    ({"a": [[True, 0]]}, {}, "whole-number"),
    ({"a": "everything"}, {}, "not a list"),
    ({"a": []}, {"script": "x"}, "unknown keys"),
    ({"a": []}, {"colors": {"b": "#000000"}}, "not among its labels"),
    ({"a": []}, {"colors": {"a": "red"}}, "RRGGBB"),
    ({"": [[0, 0]]}, {}, "non-empty"),
])
def test_bad_labelings_are_refused(tmp_path, labels, extra, match):
    path = labkit_file(tmp_path / "bad.labeling", labels)
    raw = json.loads(path.read_text())
    raw.update(extra)
    path.write_text(json.dumps(raw))
    with pytest.raises(vf.InputError, match=match):
        read_labeling(path)


def test_damaged_files_are_refused(tmp_path):
    cases = {
        "dup.labeling": '{"interval":{"min":[0,0],"max":[3,3],"n":2},"labels":{"a":[],"a":[[1,1]]}}',
        "nan.labeling": '{"interval":{"min":[0,0],"max":[3,3],"n":2},"labels":{"a":[[NaN,1]]}}',
        "notjson.labeling": "{interval",
        "4d.labeling": '{"interval":{"min":[0,0,0,0],"max":[3,3,3,3],"n":4},"labels":{}}',
        "inverted.labeling": '{"interval":{"min":[5,0],"max":[3,3],"n":2},"labels":{}}',
        "huge.labeling": '{"interval":{"min":[0,0],"max":[99999,99999],"n":2},"labels":{}}',
        "list.labeling": "[1, 2]",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(vf.InputError, match="not a valid LabKit labelling"):
            read_labeling(tmp_path / name)
    (tmp_path / "latin.labeling").write_bytes(b'{"labels": "\xff"}')
    with pytest.raises(vf.InputError, match="UTF-8"):
        read_labeling(tmp_path / "latin.labeling")


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = labkit_file(tmp_path / "big.labeling", {"a": [[x, 0] for x in range(30)]})
    opened = []
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or pytest.fail("opened"))
    with pytest.raises(vf.InputError, match="more than the 100 allowed"):
        read_labeling(path, max_bytes=100)
    assert not opened


# -- TIFF + .labels ---------------------------------------------------------------------------------
def test_tiff_with_labels_sidecar_round_trip(tmp_path):
    lab = Labeling((5, 6), {"fg 10": [[0, 0], [1, 1]], "bg": [[1, 1], [4, 5]], "fg 2": [[2, 3]]})
    path = write_labeling_tiff(lab, tmp_path / "lab.tif")
    sets = json.loads((tmp_path / "lab.tif.labels").read_text())["labelSets"]
    assert sets[0] == [] and sorted(map(sorted, sets[1:])) == [["bg"], ["bg", "fg 10"], ["fg 10"], ["fg 2"]]
    again = open_labeling(path)
    assert again.names == ["bg", "fg 2", "fg 10"]  # LabKit orders TIFF labels number-aware
    for name in lab.names:
        assert sorted(map(tuple, again.pixels[name].tolist())) == sorted(map(tuple, lab.pixels[name].tolist()))


def test_tiff_without_sidecar_names_labels_by_value(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "plain.tif", np.array([[10, 20], [0, 0]], np.uint8))
    lab = read_labeling_tiff(tmp_path / "plain.tif")
    assert lab.names == ["10", "20"] and lab.pixels["10"].tolist() == [[0, 0]]


def test_bad_tiff_labelings_are_refused(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.array([[0, 3]], np.uint8))
    (tmp_path / "a.tif.labels").write_text(json.dumps({"labelSets": [[], ["x"]]}))
    with pytest.raises(vf.InputError, match="do not belong together"):
        read_labeling_tiff(tmp_path / "a.tif")
    (tmp_path / "a.tif.labels").write_text(json.dumps({"labelSets": [[], "x"]}))
    with pytest.raises(vf.InputError, match="not a valid LabKit .labels"):
        read_labeling_tiff(tmp_path / "a.tif")
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((2, 2), np.float32))
    with pytest.raises(vf.InputError, match="whole numbers"):
        read_labeling_tiff(tmp_path / "f.tif")
    with pytest.raises(vf.InputError, match="more than the"):
        read_labeling_tiff(tmp_path / "f.tif", max_bytes=10)
    with pytest.raises(vf.InputError, match="end in"):
        open_labeling(tmp_path / "f.png")


# -- the Segmenter ----------------------------------------------------------------------------------
def test_train_segment_predict_from_a_labkit_file(tmp_path, data):
    d, lab, _ = data
    write_labeling(lab, tmp_path / "train.tif.labeling")
    seg = Segmenter(**FAST).train([(d[0].image, read_labeling(tmp_path / "train.tif.labeling"))])
    assert seg.is_trained and seg.class_names == NAMES
    index = seg.segment(d[1].image)
    assert index.shape == (64, 64) and index.dtype == np.uint8 and index.max() < 4  # indices into class_names
    assert vf.macro_f1(d[1].semantic, index.astype(np.int64) + 1) > 0.5
    proba = seg.predict(d[1].image)
    assert proba.shape == (4, 64, 64)
    np.testing.assert_allclose(proba.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(proba, 0), index)
    out = write_labeling(seg.segment_labeling(d[1].image), tmp_path / "test.tif.labeling")  # for LabKit to open
    back = read_labeling(out)
    assert back.names == NAMES and back.colors == lab.colors
    np.testing.assert_array_equal(back.to_label_image(NAMES), index + 1)
    seg.close()


def test_adding_labels_retrains_from_the_cache(tmp_path, data):
    d, lab, strokes = data
    ext = vf.get_extractor("filters", sigmas=[1.0, 2.0])
    embed = ext.embed_plane
    calls = []
    ext.embed_plane = lambda *a, **k: (calls.append(1), embed(*a, **k))[1]
    seg = Segmenter(ext, cache=tmp_path / "cache.zarr", head_options={"n_estimators": 10})
    two = Labeling.from_label_image(np.where(strokes <= 2, strokes, 0), NAMES[:2])
    seg.train([(d[0].image, two)])
    assert calls == [1] and seg.class_names == NAMES[:2]
    seg.update([(d[0].image, lab)])  # strokes of two new labels drawn on the same image
    assert calls == [1], "an embedding was recomputed"
    assert seg.class_names == NAMES and set(np.unique(seg.segment(d[0].image))) <= {0, 1, 2, 3}
    assert len(seg.classifier.classes_) == 4
    more = Labeling.from_label_image(d[1].scribbles(0.05, random_state=1), NAMES)
    seg.update([(d[1].image, more)])  # a second image: embedded once
    seg.train([(d[0].image, lab), (d[1].image, more)])  # retraining from scratch: both from the cache
    assert calls == [1, 1]
    assert len(vf.EmbeddingCache(tmp_path / "cache.zarr")) == 2


def test_a_label_without_strokes(data):
    d, lab, _ = data
    empty = Labeling(lab.shape, {**lab.pixels, "nucleus": np.zeros((0, 2), np.int64)})
    with pytest.raises(vf.InputError, match=r"\['nucleus'\] have no strokes.*empty_labels='ignore'"):
        Segmenter(**FAST).train([(d[0].image, empty)])
    with pytest.warns(EmptyLabelWarning, match="nucleus"):
        seg = Segmenter(empty_labels="ignore", **FAST).train([(d[0].image, empty)])
    assert seg.class_names == NAMES
    only = Labeling(lab.shape, {"background": lab.pixels["background"], "foreground": np.zeros((0, 2), np.int64)})
    with pytest.raises(vf.InputError, match="at least two labels with strokes"), warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyLabelWarning)
        Segmenter(empty_labels="ignore", **FAST).train([(d[0].image, only)])


def test_size_mismatch_and_bad_pairs(data):
    d, lab, _ = data
    with pytest.raises(vf.InputError, match="differ"):
        Segmenter(**FAST).train([(d[0].image[:32], lab)])
    with pytest.raises(vf.InputError, match="pairs"):
        Segmenter(**FAST).train([d[0].image])
    with pytest.raises(vf.NotFittedError):
        Segmenter(**FAST).segment(d[0].image)


def test_save_and_open_the_model(tmp_path, data):
    d, lab, _ = data
    seg = Segmenter(**FAST).train([(d[0].image, lab)])
    path = seg.save_model(tmp_path / "cells.vfmseg")
    again = Segmenter.open_model(path)
    assert again.class_names == NAMES and again.colors == seg.colors
    np.testing.assert_array_equal(again.segment(d[1].image), seg.segment(d[1].image))
    with pytest.raises(vf.InputError, match="loaded from a file"):
        again.update([(d[0].image, lab)])
    with pytest.raises(vf.InputError, match="end in .vfmseg"):
        seg.save_model(tmp_path / "cells.classifier")


def test_damaged_model_files_are_refused(tmp_path, data):
    d, lab, _ = data
    path = Segmenter(**FAST).train([(d[0].image, lab)]).save_model(tmp_path / "m.vfmseg")
    with zipfile.ZipFile(path) as zf:
        meta, inner = json.loads(zf.read("segmenter.json")), zf.read("classifier.vfmc")

    def write(name, meta_obj, extra=None):
        target = tmp_path / name
        with zipfile.ZipFile(target, "w") as zf:
            zf.writestr("segmenter.json", json.dumps(meta_obj))
            zf.writestr("classifier.vfmc", inner)
            if extra:
                zf.writestr(extra, b"print('hi')")
        return target

    with pytest.raises(vf.InputError, match="classes"):
        Segmenter.open_model(write("short.vfmseg", {**meta, "class_names": NAMES[:3]}))
    with pytest.raises(vf.InputError, match="not exactly"):
        Segmenter.open_model(write("extra.vfmseg", meta, extra="run.py"))
    with pytest.raises(vf.InputError, match="expected keys"):
        Segmenter.open_model(write("keys.vfmseg", {**meta, "code": "x"}))
    with pytest.raises(vf.InputError, match="larger than allowed"):
        Segmenter.open_model(path, max_bytes=100)
    (tmp_path / "junk.vfmseg").write_bytes(b"not a zip")
    with pytest.raises(vf.InputError, match="not a zip"):
        Segmenter.open_model(tmp_path / "junk.vfmseg")


def test_a_3d_labeling_trains_on_a_stack(data):
    d, _, _ = data
    stack = np.stack([d[0].image, d[1].image])
    strokes = np.stack([d[0].scribbles(0.05, random_state=0), d[1].scribbles(0.05, random_state=1)])
    lab = Labeling.from_label_image(strokes, NAMES)
    assert labeling_json(lab)["interval"] == {"min": [0, 0, 0], "max": [63, 63, 1], "n": 3}
    seg = Segmenter(**FAST).train([(stack, lab)])
    index = seg.segment(stack, axes="ZYX")
    assert index.shape == (2, 64, 64)
    assert vf.macro_f1(np.stack([d[0].semantic, d[1].semantic]), index.astype(np.int64) + 1) > 0.5
