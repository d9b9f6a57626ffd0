"""Classifier files from strangers: no payload runs, no trust widens, memory stays bounded.

Every crafted file below is refused with a clear error, and the canary file that
its payload would create is never created.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from vfm_features import (
    ExtractorMismatchError,
    InputError,
    ObjectClassifier,
    PixelClassifier,
    UnknownExtractorError,
    load_classifier,
)
from vfm_features.classifiers.fileformat import read_archive
from vfm_features.cli import main


class Canary:
    """Unpickling this creates the file named by ``CANARY``: proof that a payload ran."""

    def __reduce__(self):
        return (open, (os.environ["CANARY"], "w"))


@pytest.fixture
def canary(tmp_path, monkeypatch):
    path = tmp_path / "canary-was-created"
    monkeypatch.setenv("CANARY", str(path))
    yield path
    assert not path.exists(), "a payload from a crafted file ran"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, small_data):
    d = small_data[0]
    clf = PixelClassifier("filters", extractor_options={"sigmas": [1.0]},
                          head_options={"n_estimators": 3}).fit(d.image, d.scribbles(0.03, random_state=0))
    path = tmp_path_factory.mktemp("saved") / "good.vfmc"
    clf.save(path)
    return path


def members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write(path, content: dict, *, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in content.items():
            zf.writestr(name, data)
    return path


def edited(saved, tmp_path, *, meta=None, arrays=None, extra=None, drop=(), name="crafted.vfmc"):
    content = members(saved)
    m = json.loads(content["metadata.json"])
    if meta:
        meta(m)
    content["metadata.json"] = json.dumps(m).encode()
    for key, value in (arrays or {}).items():
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=True)
        content[f"head/{key}.npy"] = buf.getvalue()
    content.update(extra or {})
    for key in drop:
        content.pop(key)
    return write(tmp_path / name, content)


def npy(array) -> np.ndarray:
    return np.asarray(array)


def test_the_good_file_loads_and_holds_numbers_only(saved, small_data):
    content = members(saved)
    assert set(content) == {"metadata.json"} | {n for n in content if n.startswith("head/") and n.endswith(".npy")}
    clf = load_classifier(saved)
    assert clf.predict(small_data[1].image).shape == small_data[1].image.shape[:2]


# -- code execution -------------------------------------------------------------------------------
def test_pickled_object_array_never_runs(saved, tmp_path, canary):
    payload = np.array([Canary()], dtype=object)
    crafted = edited(saved, tmp_path, arrays={"threshold": payload},
                     meta=lambda m: m["arrays"].update(threshold={"shape": [1], "dtype": "|O"}))
    with pytest.raises(InputError, match="cannot be read|not the numeric array"):
        load_classifier(crafted)


def test_a_pickle_member_is_refused_unread(saved, tmp_path, canary):
    crafted = edited(saved, tmp_path, extra={"forest.skops": pickle.dumps(Canary()),
                                             "head/payload.pkl": pickle.dumps(Canary())})
    with pytest.raises(InputError, match="unexpected member"):
        load_classifier(crafted)


def test_old_format_with_a_skops_payload_is_refused(saved, tmp_path, canary):
    crafted = edited(saved, tmp_path, meta=lambda m: m.update(format_version=1))
    with pytest.raises(InputError, match="format 1.*skops.*Retrain"):
        load_classifier(crafted)


@pytest.mark.parametrize("head", ["numpy.testing._private.utils.runstring", "os:system", "../../rf", "rf;rm"])
def test_a_head_is_looked_up_among_registered_ones_only(saved, tmp_path, canary, head):
    crafted = edited(saved, tmp_path, meta=lambda m: m["head"].update(name=head))
    with pytest.raises(UnknownExtractorError, match="Unknown pixel head"):
        load_classifier(crafted)


@pytest.mark.parametrize("option", [{"trust_checkpoint": True}, {"weights": "/tmp/evil.pt"},
                                    {"config": {"_target_": "os.system"}}])
def test_options_that_widen_trust_are_never_taken_from_a_file(saved, tmp_path, canary, option):
    crafted = edited(saved, tmp_path, meta=lambda m: m["extractor"]["options"].update(option))
    with pytest.raises(InputError, match="may not set them"):
        load_classifier(crafted)


def test_trust_options_come_from_the_user_and_are_not_saved(tmp_path, small_data):
    pytest.importorskip("segment_anything")
    d = small_data[0]
    clf = PixelClassifier("sam:vit_b", extractor_options={"pretrained": False, "device": "cpu",
                                                          "trust_checkpoint": True, "architecture": "vit_b"},
                          head_options={"n_estimators": 2})
    ext = clf._components()[0]
    assert "trust_checkpoint" not in ext.saved_options() and "weights" not in ext.saved_options()
    assert "device" not in ext.saved_options()


# -- the head's arrays are checked before scikit-learn walks them ---------------------------------------
def _arrays(saved):
    return read_archive(saved)[1]


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a["children_left"].__setitem__(0, 0), "points outside its tree or backwards"),
    (lambda a: a["children_right"].__setitem__(0, 10**9), "points outside its tree or backwards"),
    (lambda a: a["feature"].__setitem__(0, 10**6), "split feature lies outside"),
    (lambda a: a["feature"].__setitem__(0, -7), "split feature lies outside"),
    (lambda a: a["threshold"].__setitem__(0, np.nan), "threshold is not finite"),
    (lambda a: a["value"].__setitem__((0, 0), -1.0), "not finite and non-negative"),
    (lambda a: a["node_counts"].__setitem__(0, 0), "has no nodes"),
])
def test_crafted_trees_are_refused(saved, tmp_path, mutate, message):
    arrays = {k: v.copy() for k, v in _arrays(saved).items()}
    mutate(arrays)
    crafted = edited(saved, tmp_path, arrays=arrays)
    with pytest.raises(InputError, match=message):
        load_classifier(crafted)


def test_edited_classes_are_refused(saved, tmp_path):
    crafted = edited(saved, tmp_path, meta=lambda m: m.update(classes=[m["classes"][1], m["classes"][0]] + m["classes"][2:]))
    with pytest.raises(InputError, match="differ from those of its head"):
        load_classifier(crafted)
    fewer = edited(saved, tmp_path, meta=lambda m: m.update(n_features_in=m["n_features_in"] + 1), name="f.vfmc")
    with pytest.raises(InputError, match="another number of features"):
        load_classifier(fewer)


# -- bounded memory ------------------------------------------------------------------------------------
def test_oversized_metadata_is_refused_before_reading(saved, tmp_path):
    content = members(saved)
    content["metadata.json"] = content["metadata.json"] + b" " * (2 << 20)  # 2 MiB of padding, compresses to little
    crafted = write(tmp_path / "big.vfmc", content)
    assert crafted.stat().st_size < 100_000
    with pytest.raises(InputError, match="declares .* bytes, more than the"):
        load_classifier(crafted)


def test_a_zip_bomb_array_is_refused_by_its_declared_size(saved, tmp_path):
    content = members(saved)
    bomb = io.BytesIO()
    np.save(bomb, np.zeros(64 << 20, np.uint8))  # 64 MiB of zeros, compresses to ~64 KiB
    content["head/threshold.npy"] = bomb.getvalue()
    crafted = write(tmp_path / "bomb.vfmc", content)
    with pytest.raises(InputError, match="more than the"):
        load_classifier(crafted, max_bytes=16 << 20)


def test_too_many_members_are_refused(saved, tmp_path):
    content = members(saved)
    content.update({f"head/x{i}.npy": b"" for i in range(1100)})
    with pytest.raises(InputError, match="members"):
        load_classifier(write(tmp_path / "many.vfmc", content))


# -- damaged files: one clear sentence each -------------------------------------------------------------
@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update({"metadata.json": b"\xff\xfe not utf-8"}), "not UTF-8"),
    (lambda c: c.update({"metadata.json": b"[1, 2]"}), "not a JSON object"),
    (lambda c: c.update({"metadata.json": b"{"}), "not JSON"),
    (lambda c: c.pop("metadata.json"), "no metadata.json"),
])
def test_damaged_members(saved, tmp_path, mutate, message):
    content = members(saved)
    mutate(content)
    with pytest.raises(InputError, match=message):
        load_classifier(write(tmp_path / "damaged.vfmc", content))


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.update(format_version="2"), "not a whole number"),
    (lambda m: m.pop("classes"), "lacks"),
    (lambda m: m.update(surprise=1), "unknown keys"),
    (lambda m: m["params"].update(cache="/tmp/x"), "unknown keys"),
    (lambda m: m.update(classes=[1]), "at least two distinct"),
    (lambda m: m.update(classes=[1.5, 2]), "at least two distinct"),
    (lambda m: m.update(classifier="Evil"), "unknown classifier type"),
    (lambda m: m["head"].update(kind="object"), "does not fit its classifier"),
    (lambda m: m.update(intensity={"p1": ["x"], "p99": [1]}), "intensity record"),
    (lambda m: m["arrays"].pop("threshold"), "not declared"),
])
def test_damaged_metadata(saved, tmp_path, mutate, message):
    with pytest.raises(InputError, match=message):
        load_classifier(edited(saved, tmp_path, meta=mutate))


def test_missing_array_and_bad_paths(saved, tmp_path):
    with pytest.raises(InputError, match="missing"):
        load_classifier(edited(saved, tmp_path, drop=["head/threshold.npy"]))
    with pytest.raises(InputError, match="is a folder"):
        load_classifier(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_classifier(tmp_path / "nope.vfmc")


def test_a_plugin_that_is_not_installed_is_named(saved, tmp_path):
    def other(m):
        m["extractor"].update(name="vgg:blocks3", provenance={"distribution": "vfm-vgg", "version": "0.1"})
    with pytest.raises(UnknownExtractorError, match="vfm-vgg 0.1.*pip install 'vfm-vgg'"):
        load_classifier(edited(saved, tmp_path, meta=other))


def test_a_plugin_version_change_is_a_signature_change(saved, tmp_path):
    def older(m):
        m["signature"]["extractor"]["plugin"]["version"] = "0"
    with pytest.raises(ExtractorMismatchError, match="retrain"):
        load_classifier(edited(saved, tmp_path, meta=older))


def test_cli_predict_refuses_a_crafted_file_and_writes_nothing(saved, tmp_path, canary, capsys):
    import tifffile

    crafted = edited(saved, tmp_path, meta=lambda m: m["extractor"]["options"].update(trust_checkpoint=True))
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.zeros((32, 32), np.uint8))
    out = tmp_path / "out"
    assert main(["predict", str(crafted), "--images", str(image), "-o", str(out)]) == 1
    assert "may not set them" in capsys.readouterr().err
    assert not out.exists()


def test_object_classifier_files_are_checked_the_same_way(tmp_path, small_data, canary):
    d = small_data[0]
    clf = ObjectClassifier("regionprops", head_options={"n_estimators": 3}).fit(d.image, d.instances,
                                                                               d.object_classes)
    clf.save(tmp_path / "o.vfmc")
    meta = read_archive(tmp_path / "o.vfmc")[0]
    assert meta["upsampler"] is None and meta["head"]["kind"] == "object"
    crafted = edited(tmp_path / "o.vfmc", tmp_path, meta=lambda m: m["extractor"]["options"].update(weights="x"))
    with pytest.raises(InputError, match="may not set them"):
        load_classifier(crafted)
