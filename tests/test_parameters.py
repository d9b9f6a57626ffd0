"""Every parameter is checked at fit with one sentence; silent wrong results become errors or warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from vfm_features import InputError, ObjectClassifier, PixelClassifier, get_extractor
from vfm_features.classifiers.base import IntensityWarning


@pytest.fixture(scope="module")
def d(small_data):
    return small_data[0]


@pytest.mark.parametrize("params, message", [
    ({"band_rows": -1}, "band_rows=-1 is not valid"),
    ({"band_rows": 0}, "band_rows=0"),
    ({"working_shape": (0, 0)}, "working_shape=.*two positive whole numbers"),
    ({"working_shape": (20,)}, "working_shape"),
    ({"working_shape": (-4, 8)}, "working_shape"),
    ({"budget": float("nan")}, "budget=nan"),
    ({"budget": 0}, "budget=0"),
    ({"budget": -5}, "budget=-5"),
    ({"budget": 10.5}, "budget=10.5"),
    ({"n_jobs": 0}, "n_jobs=0 is not valid"),
    ({"random_state": -1}, "random_state=-1"),
    ({"extractor": None}, "extractor=None is not valid"),
    ({"head": ""}, "head='' is not valid"),
    ({"extractor_options": ["sigmas"]}, "extractor_options must be a dict"),
    ({"head_options": {"n_estimators": 0}}, "n_estimators=0 is not valid"),
    ({"head_options": {"max_depth": -2}}, "max_depth=-2"),
    ({"head_options": {"max_features": "all"}}, "max_features='all'"),
    ({"progress": "yes"}, "progress must be True, False or a callable"),
])
def test_pixel_parameters(d, params, message):
    params = {"extractor": "filters", **params}
    with pytest.raises(InputError, match=message):
        PixelClassifier(**params).fit(d.image, d.scribbles(0.03, random_state=0))


@pytest.mark.parametrize("params, message", [
    ({"stats": ("mean", "median")}, "stats="),
    ({"stats": ()}, "stats="),
    ({"include_area": "yes"}, "include_area must be True or False"),
    ({"budget": 0}, "budget=0"),
])
def test_object_parameters(d, params, message):
    with pytest.raises(InputError, match=message):
        ObjectClassifier("filters", **params).fit(d.image, d.instances, d.object_classes)


def test_set_params_then_partial_fit_uses_the_new_extractor(d):
    lab = d.scribbles(0.03, random_state=0)
    clf = PixelClassifier("filters", head_options={"n_estimators": 3}).fit(d.image, lab)
    clf.set_params(extractor_options={"sigmas": [1.0]})
    assert not hasattr(clf, "head_")  # set_params forgets what was learned
    clf.partial_fit(d.image, lab)
    assert clf.n_features_in_ == 8 and clf.extractor_.options["sigmas"] == (1.0,)


@pytest.mark.parametrize("labels, message", [
    ({1: 1.7}, "not a whole number"),
    ({"a": 1}, "Object id 'a' is not a whole number"),
    ({1: None}, "not a whole number"),
    ({1: -2}, "classes >= 1"),
    ({10_000: 1}, "not in the instance mask"),
])
def test_object_labels_are_checked(d, labels, message):
    with pytest.raises(InputError, match=message):
        ObjectClassifier("regionprops").fit(d.image, d.instances, labels)


def test_whole_float_labels_and_string_digits_are_accepted(d):
    ids = sorted(d.object_classes)
    labels = {str(i): float(d.object_classes[i]) for i in ids}
    clf = ObjectClassifier("regionprops", head_options={"n_estimators": 3}).fit(d.image, d.instances, labels)
    assert clf.n_training_objects_ == len(ids)


def test_an_image_as_nested_lists_and_ragged_lists(d):
    image = d.image[:32, :32].tolist()
    lab = np.zeros((32, 32), np.uint8)
    lab[:5], lab[-5:] = 1, 2
    clf = PixelClassifier("filters", head_options={"n_estimators": 3}).fit(image, lab)
    assert clf.predict(image).shape == (32, 32)
    with pytest.raises(InputError, match="ragged"):
        PixelClassifier("filters").fit([[1, 2, 3], [4, 5]], lab)


def test_inf_in_a_mask_is_named(d):
    mask = d.instances.astype(np.float64)
    mask[0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        ObjectClassifier("regionprops").fit(d.image, mask, d.object_classes)


def test_instance_mask_as_pixel_labels_warns(d):
    instances = np.zeros((96, 96), np.uint16)
    for k in range(20):  # 20 objects, one blob each
        y, x = divmod(k, 5)
        instances[4 + 18 * y: 12 + 18 * y, 4 + 18 * x: 14 + 18 * x] = k + 1
    with pytest.warns(UserWarning, match="looks like an instance mask"):
        PixelClassifier("filters", head_options={"n_estimators": 2}, budget=2000).fit(d.image, instances)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real class labels: no warning
        PixelClassifier("filters", head_options={"n_estimators": 2}).fit(d.image, d.scribbles(0.03, random_state=0))


def test_huge_object_ids_in_regionprops(d):
    big = d.instances.astype(np.int64) * 2**36
    feats = get_extractor("regionprops").object_features(d.image, big)
    small = get_extractor("regionprops").object_features(d.image, d.instances)
    np.testing.assert_array_equal(feats.ids, small.ids * 2**36)
    np.testing.assert_array_equal(feats.values, small.values)


def test_raw_intensity_features_warn_once_on_other_scales(d):
    image = d.image.astype(np.uint16) * 16
    clf = PixelClassifier("filters", head_options={"n_estimators": 3}).fit(image, d.scribbles(0.03, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(image)  # the training scale: no warning
    with pytest.warns(IntensityWarning, match="normalization.*percentile"):
        clf.predict(image.astype(np.float32) / image.max())  # the same image scaled to 0..1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(image * 2)  # warned once per classifier
    fresh = PixelClassifier("filters", head_options={"n_estimators": 3}).fit(image, d.scribbles(0.03, random_state=0))
    with pytest.warns(IntensityWarning):
        fresh.predict(image * 2)  # twice the exposure
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh.predict(image[:40, :40])  # a darker or brighter field of view of the same scale is fine
    scaled = PixelClassifier("filters", extractor_options={"normalization": "percentile"},
                             head_options={"n_estimators": 3}).fit(image, d.scribbles(0.03, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled.predict(image.astype(np.float32) / image.max())  # per-image scaling: nothing to warn about
