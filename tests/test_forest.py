"""The default forest and its fast predictor: same probabilities as scikit-learn, fallback otherwise."""

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from vfm_features.heads import forest_predict as forest_mod
from vfm_features.heads.forest_predict import (blocked_predict_proba, make_forest, predict_proba_float32, reference_forest,
                                 supports_fast_path)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 12)).astype(np.float32)
    y = 1 + (X[:, 0] + 0.5 * X[:, 1] > 0) + (X[:, 2] > 1)  # classes 1..3, unequal sizes
    X_new = rng.standard_normal((5000, 12)).astype(np.float32)
    return X, y, X_new


def test_default_forest_is_a_plain_sklearn_estimator():
    f = make_forest(random_state=0)
    assert type(f) is RandomForestClassifier
    assert f.get_params()["class_weight"] == "balanced"
    assert f.n_estimators == forest_mod.N_ESTIMATORS and f.max_depth == forest_mod.MAX_DEPTH
    assert reference_forest().n_estimators == 200


@pytest.mark.parametrize("make", [
    lambda: make_forest(n_estimators=20, random_state=0, n_jobs=1),
    lambda: ExtraTreesClassifier(15, max_depth=6, random_state=1),
    lambda: RandomForestClassifier(10, random_state=2),  # unlimited depth
])
def test_fast_path_equals_sklearn_bit_for_bit(data, make):
    X, y, X_new = data
    f = make().fit(X, y)
    f.set_params(n_jobs=1)  # sklearn adds trees in order with one job
    expected = f.predict_proba(X_new)
    for n_jobs in (1, 2, -1):
        for block_rows in (None, 7, 1000):
            got = blocked_predict_proba(f, X_new, n_jobs=n_jobs, block_rows=block_rows)
            np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(predict_proba_float32(f, X_new), expected.astype(np.float32))


def test_fast_path_takes_float64_and_non_contiguous_input(data):
    X, y, X_new = data
    f = make_forest(n_estimators=8, random_state=0, n_jobs=1).fit(X, y)
    wide = np.asfortranarray(X_new.astype(np.float64))
    np.testing.assert_array_equal(predict_proba_float32(f, wide), f.predict_proba(X_new).astype(np.float32))


def test_fast_path_checks_the_feature_count(data):
    X, y, X_new = data
    f = make_forest(n_estimators=4, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="expects"):
        blocked_predict_proba(f, X_new[:, :5])


def test_fallback_for_other_estimators(data):
    X, y, X_new = data
    lr = LogisticRegression(max_iter=200).fit(X, y)
    assert not supports_fast_path(lr)
    got = predict_proba_float32(lr, X_new)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, lr.predict_proba(X_new), rtol=1e-6)


def test_fallback_for_multi_output_forests(data):
    X, y, X_new = data
    f = RandomForestClassifier(5, random_state=0).fit(X, np.stack([y, y], 1))
    assert not supports_fast_path(f)
    assert not supports_fast_path(make_forest())  # not fitted


def test_fallback_when_the_fast_path_is_off(data, monkeypatch):
    X, y, X_new = data
    f = make_forest(n_estimators=6, random_state=0, n_jobs=1).fit(X, y)
    monkeypatch.setattr(forest_mod, "supports_fast_path", lambda forest: False)
    called = []
    monkeypatch.setattr(forest_mod, "blocked_predict_proba", lambda *a, **k: called.append(1))
    got = predict_proba_float32(f, X_new)
    assert not called
    np.testing.assert_array_equal(got, f.predict_proba(X_new).astype(np.float32))


def test_classifiers_use_the_default_forest(small_data):
    from vfm_features import ObjectClassifier, PixelClassifier

    assert PixelClassifier().get_params()["head"] == "rf"
    d = small_data[0]
    clf = PixelClassifier("filters").fit(d.image, d.scribbles(0.03, random_state=0))
    assert isinstance(clf.head_.forest_, RandomForestClassifier)
    assert clf.head_.forest_.n_estimators == forest_mod.N_ESTIMATORS
    obj = ObjectClassifier(head_options={"n_estimators": 8}).fit(d.image, d.instances, d.object_classes)
    assert isinstance(obj.head_.forest_, RandomForestClassifier) and obj.head_.forest_.n_jobs == -1
