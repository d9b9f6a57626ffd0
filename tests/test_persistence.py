import json
import zipfile

import numpy as np
import pytest

from vfm_features import ExtractorMismatchError, InputError, ObjectClassifier, PixelClassifier, get_extractor, load_classifier
from vfm_features.classifiers.fileformat import read_metadata


@pytest.fixture(scope="module")
def pixel_clf(small_data):
    d = small_data[0]
    return PixelClassifier("filters", extractor_options={"sigmas": [1.0, 2.0]}, head_options={"n_estimators": 10}).fit(
        d.image, d.scribbles(0.03, random_state=0))


def test_round_trip_pixels(tmp_path, pixel_clf, small_data):
    path = tmp_path / "model.vfmc"
    pixel_clf.save(path)
    meta = read_metadata(path)
    assert meta["classifier"] == "PixelClassifier" and meta["extractor"]["name"] == "filters:default"
    assert meta["extractor"]["options"]["sigmas"] == [1.0, 2.0] and "n_threads" not in meta["extractor"]["options"]
    assert meta["signature"]["extractor"]["plugin"] == {"distribution": "vfm-features", "version": "2"}
    assert meta["upsampler"]["name"] == "bilinear" and meta["head"]["name"] == "rf"
    with zipfile.ZipFile(path) as zf:  # numbers only: JSON and .npy arrays, no pickle-based payload
        assert all(n == "metadata.json" or (n.startswith("head/") and n.endswith(".npy")) for n in zf.namelist())
    loaded = load_classifier(path)
    img = small_data[1].image
    np.testing.assert_array_equal(loaded.predict_proba(img), pixel_clf.predict_proba(img))
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left


def test_round_trip_objects(tmp_path, small_data):
    d = small_data[0]
    clf = ObjectClassifier("filters", stats=("mean", "max"), head_options={"n_estimators": 10}).fit(d.image, d.instances, d.object_classes)
    clf.save(tmp_path / "obj.vfmc")
    loaded = load_classifier(tmp_path / "obj.vfmc")
    assert loaded.stats == ("mean", "max")
    np.testing.assert_array_equal(loaded.predict(d.image, d.instances).classes, clf.predict(d.image, d.instances).classes)
    # the same extractor passed explicitly is accepted; a different one is refused
    load_classifier(tmp_path / "obj.vfmc", extractor=get_extractor("filters"))
    with pytest.raises(ExtractorMismatchError):
        load_classifier(tmp_path / "obj.vfmc", extractor=get_extractor("filters", sigmas=[3.0]))


def test_refuses_other_extractor(tmp_path, pixel_clf):
    pixel_clf.save(tmp_path / "m.vfmc")
    with pytest.raises(ExtractorMismatchError, match="retrain"):
        load_classifier(tmp_path / "m.vfmc", extractor=get_extractor("filters"))
    same = get_extractor("filters", sigmas=[1.0, 2.0])
    assert load_classifier(tmp_path / "m.vfmc", extractor=same).extractor_ is same


def test_bad_files(tmp_path, pixel_clf):
    junk = tmp_path / "junk.vfmc"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a valid vfm-features classifier"):
        load_classifier(junk)
    with pytest.raises(FileNotFoundError):
        load_classifier(tmp_path / "missing.vfmc")
    newer = tmp_path / "newer.vfmc"
    pixel_clf.save(newer)
    with zipfile.ZipFile(newer) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(members["metadata.json"])
    meta["format_version"] = 99
    members["metadata.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(newer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(InputError, match="Upgrade"):
        load_classifier(newer)


def test_unfitted_save_writes_nothing(tmp_path):
    from vfm_features import NotFittedError

    with pytest.raises(NotFittedError):
        PixelClassifier().save(tmp_path / "x.vfmc")
    assert not any(tmp_path.iterdir())
