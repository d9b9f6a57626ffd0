"""Behaviour that a review found missing: each test names the case it guards."""

import os
import pickle
import stat

import numpy as np
import pytest

from vfm_features import InputError, ObjectClassifier, PixelClassifier, get_extractor, load_classifier
from vfm_features.cli import main


def test_set_params_then_fit_uses_the_new_extractor_options(small_data):
    d = small_data[0]
    lab = d.scribbles(0.03, random_state=0)
    clf = PixelClassifier("filters", head_options={"n_estimators": 5}).fit(d.image, lab)
    clf.set_params(extractor_options={"sigmas": [1.0]}).fit(d.image, lab)
    assert clf.n_features_in_ == 8 and clf.signature_["extractor"]["options"]["sigmas"] == [1.0]
    obj = ObjectClassifier("filters", head_options={"n_estimators": 5}).fit(d.image, d.instances, d.object_classes)
    n_mean = obj.n_features_in_
    obj.set_params(stats=("mean", "std")).fit(d.image, d.instances, d.object_classes)
    assert obj.n_features_in_ == 2 * n_mean - 1  # mean + std per channel, one area


def test_loaded_classifier_refuses_partial_fit(tmp_path, small_data):
    d = small_data[0]
    clf = PixelClassifier("filters", head_options={"n_estimators": 5}).fit(d.image, d.scribbles(0.03, random_state=0))
    clf.save(tmp_path / "m.vfmc")
    with pytest.raises(InputError, match="call fit"):
        load_classifier(tmp_path / "m.vfmc").partial_fit(d.image, d.semantic)


def test_same_image_twice_merges_its_labels(small_data):
    d = small_data[0]
    first = np.where(d.semantic == 1, 1, 0).astype(np.uint8)
    second = np.where(d.semantic == 2, 2, 0).astype(np.uint8)
    clf = PixelClassifier("filters", head_options={"n_estimators": 5}, budget=None).fit([d.image, d.image], [first, second])
    assert clf.classes_.tolist() == [1, 2]


def test_budget_below_number_of_classes_and_huge_label_ids(small_data):
    d = small_data[0]
    with pytest.raises(InputError, match="at least 4"):
        PixelClassifier("filters", budget=2).fit(d.image, d.semantic)
    lab = d.semantic.astype(np.uint64)
    lab[0, 0] = 2**63 + 5
    with pytest.raises(InputError, match="2\\*\\*63"):
        PixelClassifier("filters").fit(d.image, lab)


def test_score_is_macro_f1(small_data):
    d, t = small_data[0], small_data[1]
    clf = PixelClassifier("filters", head_options={"n_estimators": 10}).fit(d.image, d.scribbles(0.03, random_state=0))
    assert 0.5 < clf.score(t.image, t.semantic) <= 1.0
    obj = ObjectClassifier("regionprops", head_options={"n_estimators": 20}).fit(d.image, d.instances, d.object_classes)
    assert 0.0 <= obj.score(t.image, t.instances, t.object_classes) <= 1.0


def test_object_classifier_with_pixel_extractor_pickles_and_handles_huge_ids(small_data):
    d = small_data[0]
    obj = ObjectClassifier("filters", head_options={"n_estimators": 5}).fit(d.image, d.instances, d.object_classes)
    again = pickle.loads(pickle.dumps(obj))
    big = d.instances.astype(np.int64) * 2**35
    pred = again.predict(d.image, big)
    np.testing.assert_array_equal(pred.class_image, obj.predict(d.image, d.instances).class_image)


def test_instance_extractor_round_trips_and_files_are_readable(tmp_path, small_data):
    d = small_data[0]
    ext = get_extractor("filters", sigmas=[1.0, 2.0])
    clf = PixelClassifier(ext, head_options={"n_estimators": 5}).fit(d.image, d.scribbles(0.03, random_state=0))
    clf.save(tmp_path / "m.vfmc")
    np.testing.assert_array_equal(load_classifier(tmp_path / "m.vfmc").predict(d.image), clf.predict(d.image))
    obj = ObjectClassifier(get_extractor("regionprops"), head_options={"n_estimators": 5}).fit(d.image, d.instances, d.object_classes)
    obj.save(tmp_path / "o.vfmc")
    assert load_classifier(tmp_path / "o.vfmc").predict(d.image, d.instances).ids.size
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "m.vfmc").st_mode) == 0o666 & ~umask


def test_features_command_refuses_object_extractor(tmp_path, small_data, capsys):
    np.save(tmp_path / "img.npy", small_data[0].image)
    assert main(["features", str(tmp_path / "img.npy"), "-o", str(tmp_path / "f.npy"), "-e", "regionprops"]) == 1
    assert "per-object" in capsys.readouterr().err
    assert not (tmp_path / "f.npy").exists()


def test_precision_aliases_share_one_signature():
    pytest.importorskip("segment_anything")
    a = get_extractor("sam:vit_b", pretrained=False, precision="bf16").signature()
    assert a == get_extractor("sam:vit_b", pretrained=False, precision="bfloat16").signature()


def test_training_then_predicting_one_image_embeds_it_once(small_data):
    from plugin_tools import counting_filters

    d = small_data[0]
    ext = counting_filters()
    clf = PixelClassifier(ext, head_options={"n_estimators": 5}).fit(d.image, d.scribbles(0.03, random_state=0))
    clf.predict(d.image)
    clf.partial_fit(d.image, d.scribbles(0.05, random_state=1))
    assert ext.calls == 1
    clf.predict(small_data[1].image)
    assert ext.calls == 2
