import numpy as np
import pytest
from sklearn.base import clone

from vfm_features import InputError, NotFittedError, PixelClassifier
from vfm_features.evaluation.metrics import macro_f1


@pytest.fixture(scope="module")
def trained(small_data):
    train = small_data[:2]
    labels = [d.scribbles(0.03, random_state=i) for i, d in enumerate(train)]
    clf = PixelClassifier("filters", head_options={"n_estimators": 30}, random_state=0).fit([d.image for d in train], labels)
    return clf, labels


def test_learns_synthetic_classes(trained, small_data):
    clf, _ = trained
    test = small_data[2]
    pred = clf.predict(test.image)
    assert pred.shape == test.image.shape
    assert set(np.unique(pred)) <= {1, 2, 3, 4}
    assert macro_f1(test.semantic, pred) > 0.6  # chance is about 0.25


def test_probabilities_sum_to_one_and_working_grid(trained, small_data):
    clf, _ = trained
    img = small_data[2].image
    proba = clf.predict_proba(img)
    assert proba.shape == (4, 96, 96) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(0), 1, atol=1e-5)
    coarse = clone(clf).set_params(working_shape=(48, 48))
    coarse.__dict__.update({k: v for k, v in clf.__dict__.items() if k.endswith("_")})
    p2 = coarse.predict_proba(img)
    assert p2.shape == proba.shape
    np.testing.assert_allclose(p2.sum(0), 1, atol=1e-4)
    assert np.mean(coarse.predict(img) == clf.predict(img)) > 0.8


def test_deterministic_under_seed(trained, small_data):
    clf, labels = trained
    imgs = [d.image for d in small_data[:2]]
    again = PixelClassifier("filters", head_options={"n_estimators": 30}, random_state=0).fit(imgs, labels)
    np.testing.assert_array_equal(again.predict_proba(small_data[2].image), clf.predict_proba(small_data[2].image))


def test_partial_fit_replaces_labels_of_a_seen_image(small_data):
    d = small_data[0]
    lab = d.scribbles(0.02, random_state=0)
    clf = PixelClassifier("filters", head_options={"n_estimators": 10}, budget=None)
    clf.fit(d.image, lab)
    n1 = clf.n_training_pixels_
    clf.partial_fit(d.image, lab)  # same image, same labels: no duplicates
    assert clf.n_training_pixels_ == n1
    more = d.scribbles(0.05, random_state=1)
    clf.partial_fit(small_data[1].image, more)  # a new image adds samples
    assert clf.n_training_pixels_ > n1


def test_stack_and_multichannel(small_data):
    d = small_data[0]
    lab = d.scribbles(0.03, random_state=0)
    rgb = np.stack([d.image, d.image // 2, d.image], -1)
    clf = PixelClassifier("filters", head_options={"n_estimators": 5}, extractor_options={"sigmas": [1.0]}).fit(rgb, lab)
    assert clf.predict(rgb).shape == d.image.shape
    with pytest.raises(InputError, match="features"):
        clf.predict(d.image)  # 1 channel instead of 3
    stack = np.stack([d.image, small_data[1].image])
    clf1 = PixelClassifier("filters", head_options={"n_estimators": 5}).fit(stack, np.stack([lab, lab * 0]), axes="ZYX")
    assert clf1.predict(stack, axes="ZYX").shape == (2, 96, 96)
    assert clf1.predict_proba(stack, axes="ZYX").shape == (2, 4, 96, 96)


def test_bad_input_messages(small_data):
    d = small_data[0]
    clf = PixelClassifier("filters", head_options={"n_estimators": 5})
    with pytest.raises(NotFittedError, match="fit"):
        clf.predict(d.image)
    with pytest.raises(InputError, match="shape"):
        clf.fit(d.image, np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match="no labelled"):
        clf.fit(d.image, np.zeros_like(d.semantic))
    one = np.zeros_like(d.semantic)
    one[:5, :5] = 2
    with pytest.raises(InputError, match="only class 2"):
        clf.fit(d.image, one)
    nan = d.image.astype(float)
    nan[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        clf.fit(nan, d.semantic)
    with pytest.raises(InputError, match="negative"):
        clf.fit(d.image, -d.semantic.astype(int))
    with pytest.raises(InputError, match="label image"):
        clf.fit([d.image, d.image], [d.semantic])
    with pytest.raises(InputError, match="ambiguous"):
        clf.fit(np.zeros((5, 40, 40)), d.semantic)


def test_sklearn_conventions():
    clf = PixelClassifier("filters", budget=500, working_shape=(64, 64))
    params = clf.get_params()
    assert params["budget"] == 500 and params["working_shape"] == (64, 64)
    c2 = clone(clf)
    assert c2.get_params() == params
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(nope=1)


def test_instance_mask_as_labels_and_object_extractor_are_refused(small_data):
    d = small_data[0]
    many = np.arange(96 * 96).reshape(96, 96) % 400 + 1
    with pytest.raises(InputError, match="out of range"):
        PixelClassifier("filters", head_options={"n_estimators": 2}).fit(d.image, many)
    with pytest.raises(InputError, match="pixel extractor"):
        PixelClassifier("regionprops").fit(d.image, d.semantic)
