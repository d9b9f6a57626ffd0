"""3D filters (``filters`` with ``ndim=3``): analytic values, spacing, the volume seam, classifiers, cache."""

from __future__ import annotations

import numpy as np
import pytest

import vfm_features as vf
from vfm_features import InputError, ObjectClassifier, PixelClassifier
from vfm_features.features.aggregate import DEFAULT_STATS
from vfm_features_filters.eigen import eigenvalues_3x3


def filters(**options):
    return vf.get_extractor("filters", **options)


def features_of(embeddings, name: str) -> np.ndarray:
    """One named feature of a volume's slice embeddings as a (Z, Y, X) array."""
    names = embeddings[0].meta["feature_names"]
    return np.stack([e.data[names.index(name)] for e in embeddings])


def blob(shape, centre, width, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A Gaussian blob exp(-r^2 / (2 width^2)) with r in physical units (voxel size ``spacing``)."""
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing)], indexing="ij")
    return np.exp(-sum(g * g for g in grids) / (2 * width ** 2)).astype(np.float32)


def test_options_and_names():
    ext = filters(ndim=3, spacing=(2, 1, 1), sigmas=(1.0,))
    assert ext.volumetric and ext.n_features == 10
    assert ext.feature_names() == [f"ch0_{n}_s1.0" for n in (
        "gaussian3d", "log3d", "gradient_magnitude3d", "dog3d", "structure_tensor3d_ev0", "structure_tensor3d_ev1",
        "structure_tensor3d_ev2", "hessian3d_ev0", "hessian3d_ev1", "hessian3d_ev2")]
    assert ext.signature()["options"]["ndim"] == 3 and ext.signature()["options"]["spacing"] == [2.0, 1.0, 1.0]
    assert ext.n_features_for(2) == 20
    two = filters()
    assert not two.volumetric
    assert filters(ndim=2).signature() == two.signature() == filters(spacing=(1, 1, 1)).signature()
    assert "ndim" not in two.signature()["options"]


def test_ndim2_output_is_unchanged():
    img = np.random.default_rng(0).random((40, 48)).astype(np.float32)
    np.testing.assert_array_equal(filters(ndim=2).embed(img).data, filters().embed(img).data)


def test_blob_log_and_hessian_match_analytic_values():
    width, sigma = 3.0, 1.0
    vol = blob((25, 25, 25), (12, 12, 12), width)
    embs = filters(ndim=3, sigmas=(sigma,)).embed_stack(vol, axes="ZYX")
    s2 = width ** 2 + sigma ** 2
    amplitude = (width ** 2 / s2) ** 1.5  # the blob smoothed at sigma, at its centre
    c = (12, 12, 12)
    assert features_of(embs, "ch0_gaussian3d_s1.0")[c] == pytest.approx(amplitude, rel=1e-3)
    assert features_of(embs, "ch0_log3d_s1.0")[c] == pytest.approx(-3 * amplitude / s2, rel=1e-2)
    for k in range(3):
        assert features_of(embs, f"ch0_hessian3d_ev{k}_s1.0")[c] == pytest.approx(-amplitude / s2, rel=1e-2)
    assert features_of(embs, "ch0_gradient_magnitude3d_s1.0")[c] == pytest.approx(0, abs=1e-5)


@pytest.mark.parametrize("spacing_z", [1.0, 2.5])
def test_ramp_along_z_has_gradient_slope_over_spacing(spacing_z):
    slope = 0.7
    vol = np.broadcast_to((slope * np.arange(16, dtype=np.float32))[:, None, None], (16, 24, 24)).copy()
    embs = filters(ndim=3, sigmas=(1.0,), spacing=(spacing_z, 1, 1)).embed_stack(vol, axes="ZYX")
    grad = features_of(embs, "ch0_gradient_magnitude3d_s1.0")[5:11]  # away from the mirrored z borders
    np.testing.assert_allclose(grad, slope / spacing_z, rtol=1e-4)
    st = features_of(embs, "ch0_structure_tensor3d_ev0_s1.0")[6:10]
    np.testing.assert_allclose(st, (slope / spacing_z) ** 2, rtol=1e-3)
    np.testing.assert_allclose(features_of(embs, "ch0_structure_tensor3d_ev2_s1.0")[6:10], 0, atol=1e-5)


def test_anisotropic_spacing_matches_the_isotropic_volume():
    width = 4.0
    coarse = blob((16, 48, 48), (8, 24, 24), width, spacing=(2, 1, 1))  # slices 2 apart
    fine = blob((32, 48, 48), (16, 24, 24), width)  # the same blob sampled twice as densely in z
    sigmas = (2.0, 4.0)
    # off the centre (2 units along z and y), where every feature is non-zero
    a = filters(ndim=3, sigmas=sigmas, spacing=(2, 1, 1)).embed_stack(coarse, axes="ZYX")[9]
    b = filters(ndim=3, sigmas=sigmas).embed_stack(fine, axes="ZYX")[18]
    names = a.meta["feature_names"]
    assert names == b.meta["feature_names"]
    for k, name in enumerate(names):
        if name == "ch0_structure_tensor3d_ev2_s2.0":
            continue  # outer scale 0.5 * 2 = 1 unit = half a slice: under-sampled in z (8 % off)
        assert a.data[k, 26, 24] == pytest.approx(b.data[k, 26, 24], rel=0.01), name


def test_volume_constant_along_z_gives_the_2d_features():
    img = np.random.default_rng(1).random((32, 40)).astype(np.float32)
    vol = np.repeat(img[None], 6, axis=0)
    sigmas = (1.0, 2.0)
    two = filters(sigmas=sigmas).embed(img)
    three = filters(ndim=3, sigmas=sigmas).embed_stack(vol, axes="ZYX")[3]
    for feature in ("gaussian", "log", "gradient_magnitude", "dog"):
        for s in sigmas:
            np.testing.assert_allclose(three.data[three.meta["feature_names"].index(f"ch0_{feature}3d_s{s}")],
                                       two.data[two.meta["feature_names"].index(f"ch0_{feature}_s{s}")],
                                       rtol=1e-4, atol=1e-5)


def test_eigenvalues_3x3_match_numpy():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(500, 3, 3))
    m = m + m.transpose(0, 2, 1)
    m[:5] = np.eye(3) * 2  # degenerate
    got = np.stack(eigenvalues_3x3(m[:, 0, 0], m[:, 0, 1], m[:, 0, 2], m[:, 1, 1], m[:, 1, 2], m[:, 2, 2]), 1)
    np.testing.assert_allclose(got, np.linalg.eigvalsh(m)[:, ::-1], atol=1e-9)


def test_slices_depend_on_neighbours_and_the_volume_is_computed_once(monkeypatch):
    rng = np.random.default_rng(2)
    vol = rng.random((6, 24, 24)).astype(np.float32)
    ext = filters(ndim=3, sigmas=(1.0,))
    whole = ext.embed_stack(vol, axes="ZYX")
    changed = vol.copy()
    changed[4] += 1.0
    other = ext.embed_stack(changed, axes="ZYX")
    np.testing.assert_array_equal(vol[3], changed[3])
    assert not np.allclose(whole[3].data, other[3].data)  # slice 3 sees slice 4: a per-plane path would be wrong
    calls = []
    original = type(ext).embed_volume
    monkeypatch.setattr(type(ext), "embed_volume", lambda self, planes: calls.append(len(planes)) or
                        original(self, planes))
    clf = PixelClassifier(extractor=ext, budget=200).fit(vol, (vol > 0.5).astype(np.uint8) + 1, axes="ZYX")
    clf.predict(vol, axes="ZYX")
    assert calls == [6]  # fit then predict: one 3D computation of the whole volume


def objects_bright_in_3d(seed=0):
    """Cubes that are bright over 5 slices (class 1) or over 1 slice only (class 2): the same in any one slice."""
    rng = np.random.default_rng(seed)
    vol = rng.normal(0, 0.1, (8, 48, 48)).astype(np.float32)
    truth = np.zeros(vol.shape, np.uint8)
    mask = np.zeros(vol.shape, np.int64)
    n = 0
    for i, y in enumerate(range(4, 44, 10)):
        for j, x in enumerate(range(4, 44, 10)):
            n += 1
            tall = (i + j) % 2 == 0
            zs = slice(1, 6) if tall else slice(3, 4)
            vol[zs, y:y + 6, x:x + 6] += 1.0
            truth[zs, y:y + 6, x:x + 6] = 1 if tall else 2
            mask[zs, y:y + 6, x:x + 6] = n
    return vol, truth, mask


def test_pixel_classifier_on_a_volume_beats_2d_where_the_class_is_3d():
    vol, truth, _ = objects_bright_in_3d()
    labels = truth.copy()
    labels[:, :, 24:] = 0  # train on the left half, score on the right half
    scores = {}
    for ndim in (2, 3):
        options = {"sigmas": (1.0, 2.0), "ndim": ndim}
        clf = PixelClassifier(extractor="filters", extractor_options=options, budget=2000, n_jobs=1)
        clf.fit(vol, labels, axes="ZYX")
        pred = clf.predict(vol, axes="ZYX")
        assert pred.shape == vol.shape
        assert clf.predict_proba(vol, axes="ZYX").shape == (8, 2) + vol.shape[1:]
        right = truth[:, :, 24:] > 0
        scores[ndim] = (pred[:, :, 24:][right] == truth[:, :, 24:][right]).mean()
    assert scores[3] > 0.95 and scores[3] > scores[2] + 0.1, scores


def test_object_classifier_with_3d_filters():
    vol, truth, mask = objects_bright_in_3d()
    classes = {int(i): int(truth[mask == i][0]) for i in np.unique(mask[mask > 0])}
    clf = ObjectClassifier(extractor="filters", extractor_options={"sigmas": (1.0,), "ndim": 3}, n_jobs=1)
    clf.fit(vol, mask, classes, axes="ZYX")
    pred = clf.predict(vol, mask, axes="ZYX")
    assert pred.class_image.shape == vol.shape
    assert pred.as_dict() == classes
    feats = clf.object_features(vol, mask, axes="ZYX")
    assert feats.values.shape == (len(classes), 10 * len(DEFAULT_STATS) + 1)  # 10 3D features per stat, and area


def test_cache_gives_the_same_result_and_keeps_3d_apart_from_2d(tmp_path):
    vol = np.random.default_rng(3).random((5, 24, 24)).astype(np.float32)
    cache = vf.EmbeddingCache(tmp_path / "cache", dtype="float32")
    two, three = filters(sigmas=(1.0,)), filters(ndim=3, sigmas=(1.0,))
    cache.embed_stack(two, vol, axes="ZYX")
    assert len(cache) == 5
    first = cache.embed_stack(three, vol, axes="ZYX")  # the 2D entries of the same planes are not reused
    assert len(cache) == 10
    direct = three.embed_stack(vol, axes="ZYX")
    again = cache.embed_stack(three, vol, axes="ZYX")
    assert len(cache) == 10
    for a, b, c in zip(first, direct, again):
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(c.data, b.data)
    labels = (vol > 0.5).astype(np.uint8) + 1
    options = {"sigmas": (1.0,), "ndim": 3}
    with_cache = PixelClassifier(extractor="filters", extractor_options=options, cache=cache, budget=300, n_jobs=1)
    without = PixelClassifier(extractor="filters", extractor_options=options, budget=300, n_jobs=1)
    np.testing.assert_array_equal(with_cache.fit(vol, labels, axes="ZYX").predict_proba(vol, axes="ZYX"),
                                  without.fit(vol, labels, axes="ZYX").predict_proba(vol, axes="ZYX"))


@pytest.mark.parametrize("spacing", [(0, 1, 1), (-1, 1, 1), (1, 1), (1, 1, 1, 1), "111", (1, float("nan"), 1)])
def test_bad_spacing_is_refused(spacing):
    with pytest.raises(InputError, match="spacing"):
        filters(ndim=3, spacing=spacing)


def test_bad_options_are_refused():
    with pytest.raises(InputError, match="ndim"):
        filters(ndim=4)
    with pytest.raises(InputError, match="ndim=3"):
        filters(spacing=(2, 1, 1))  # spacing without ndim=3
    with pytest.raises(InputError, match="tile_shape"):
        filters(ndim=3, tile_shape=64)


def test_2d_images_and_other_stacks_are_refused():
    ext = filters(ndim=3, sigmas=(1.0,))
    img = np.zeros((16, 16), np.float32)
    with pytest.raises(InputError, match="volume"):
        ext.embed(img)
    with pytest.raises(InputError, match="single 2D image"):
        ext.embed_stack(img, axes="YX")
    with pytest.raises(InputError, match="'ZYX'"):
        ext.embed_stack(np.zeros((3, 16, 16), np.float32), axes="TYX")
    clf = PixelClassifier(extractor=ext, budget=100)
    with pytest.raises(InputError, match="'ZYX'"):
        clf.fit(img, (img > 0).astype(np.uint8) + 1)
    with pytest.raises(InputError, match="volumetric"):
        ObjectClassifier(extractor=ext).fit(img, (img == 0).astype(np.int64), {1: 1})
    with pytest.raises(InputError, match="reduce"):
        PixelClassifier(extractor=ext, reduce=4).fit(np.zeros((3, 16, 16), np.float32),
                                                     np.ones((3, 16, 16), np.uint8), axes="ZYX")


def test_blockwise_prediction_is_refused():
    vol = np.random.default_rng(4).random((4, 32, 32)).astype(np.float32)
    labels = (vol > 0.5).astype(np.uint8) + 1
    clf = PixelClassifier(extractor="filters", extractor_options={"sigmas": (1.0,), "ndim": 3}, budget=200,
                          n_jobs=1).fit(vol, labels, axes="ZYX")
    with pytest.raises(InputError, match="Blockwise prediction is 2D"):
        vf.predict_block(clf, vol[0], axes="YX")
    with pytest.raises(InputError, match="Blockwise prediction is 2D"):
        vf.predict_blockwise(clf, vol[0], axes="YX", block_shape=16)


def test_saved_classifier_keeps_the_3d_options(tmp_path):
    vol, truth, _ = objects_bright_in_3d()
    options = {"sigmas": (1.0,), "ndim": 3, "spacing": (2.0, 1.0, 1.0)}
    clf = PixelClassifier(extractor="filters", extractor_options=options, budget=500, n_jobs=1)
    clf.fit(vol, truth, axes="ZYX")
    path = clf.save(tmp_path / "clf.vfmc")
    loaded = vf.load_classifier(path)
    assert loaded._components()[0].spacing == (2.0, 1.0, 1.0) and loaded._components()[0].volumetric
    np.testing.assert_array_equal(loaded.predict_proba(vol, axes="ZYX"), clf.predict_proba(vol, axes="ZYX"))
