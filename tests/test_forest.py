"""The default forest and its fast predictor: same probabilities as scikit-learn, fallback otherwise."""

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from vfm_features.heads import forest_predict as forest_mod
from vfm_features.threads import n_threads
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
    assert isinstance(obj.head_.forest_, RandomForestClassifier) and obj.head_.n_jobs == -1
    assert obj.head_.forest_.n_jobs == n_threads(-1)  # resolved by the library's thread budget


def test_reading_and_predicting_together_equals_predicting_the_map(data):
    # predict_proba_grid reads a few rows at a time in threads: same probabilities, bit for bit
    X, y, X_new = data
    f = make_forest(n_estimators=12, random_state=0, n_jobs=1).fit(X, y)
    grid = X_new[:4800].reshape(60, 80, 12)  # (rows, cols, F)
    expected = predict_proba_float32(f, grid.reshape(-1, 12))
    calls = []

    def read(start, stop):
        calls.append((start, stop))
        return np.moveaxis(grid[start:stop], -1, 0)  # (F, rows, cols), pixel-major underneath

    for n_jobs in (1, 2):
        got = forest_mod.predict_proba_grid(f, read, 60, 80, n_jobs=n_jobs)
        assert got.shape == (3, 60, 80)
        np.testing.assert_array_equal(np.moveaxis(got, 0, -1).reshape(-1, 3), expected)
    assert sorted(set(calls))[0][0] == 0 and max(stop for _, stop in calls) == 60
    with pytest.raises(ValueError, match="expects"):
        forest_mod.predict_proba_grid(f, lambda a, b: np.zeros((5, b - a, 80), np.float32), 60, 80)


def test_pixel_head_dense_prediction_equals_the_row_prediction(small_data):
    from vfm_features import Embedding, EmbeddingGeometry, get_upsampler
    from vfm_features.heads.forest_heads import ForestPixelHead

    rng = np.random.default_rng(3)
    emb = Embedding(rng.standard_normal((8, 10, 12)).astype(np.float32), EmbeddingGeometry((80, 96), step=(8.0, 8.0)))
    up = get_upsampler("bilinear")
    coords = np.stack([rng.integers(0, 80, 300), rng.integers(0, 96, 300)], 1)
    feats = up.sparse(emb, None, coords)
    y = 1 + (feats[:, 0] > 0) + (feats[:, 1] > 0.5)

    class Rows:
        def __init__(self, X):
            self.X, self.y = X, y

        def features(self):
            return self.X

    head = ForestPixelHead(n_estimators=10, random_state=0).fit(Rows(feats))
    region = (slice(5, 37), slice(3, 41))
    got = head.predict_proba_dense(emb, None, up, (40, 48), region)
    dense = up.dense(emb, None, (40, 48), region)
    rows = np.moveaxis(dense, 0, -1).reshape(-1, 8)
    np.testing.assert_array_equal(np.moveaxis(got, 0, -1).reshape(-1, 3), head.predict_rows(rows))
    slow = ForestPixelHead(n_estimators=10, random_state=0, fast=False).fit(Rows(feats))
    np.testing.assert_allclose(slow.predict_proba_dense(emb, None, up, (40, 48), region), got, rtol=1e-6)


def test_pixel_head_bounds_the_labels_per_tree(data):
    from vfm_features.heads.forest_heads import ForestObjectHead, ForestPixelHead

    X, y, _ = data

    class Rows:
        def features(self):
            return X

    Rows.y = y
    assert ForestPixelHead().max_samples == forest_mod.MAX_SAMPLES and ForestObjectHead().max_samples is None
    capped = ForestPixelHead(n_estimators=4, max_samples=100, random_state=0).fit(Rows())
    assert capped.forest_.max_samples == 100  # 600 labels, each tree on a bootstrap of 100
    few = ForestPixelHead(n_estimators=4, max_samples=1000, random_state=0).fit(Rows())
    assert few.forest_.max_samples is None  # fewer labels than the bound: every tree sees all of them
    params, arrays = capped.get_state()
    assert params["max_samples"] == 100
    back = ForestPixelHead.from_state(params, arrays, n_features=X.shape[1])
    np.testing.assert_array_equal(back.predict_rows(X), capped.predict_rows(X))
