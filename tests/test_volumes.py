"""Volumes: 3D objects get their features from per-slice embeddings merged exactly over all their voxels."""

import numpy as np
import pytest

from vfm_features import Embedding, EmbeddingGeometry, InputError, ObjectClassifier
from vfm_features.features.aggregate import Aggregator, aggregate_embedding
from vfm_features.features.partials import ObjectSums

STATS = ("mean", "std", "min", "max")


def volume_and_mask(seed=0, shape=(4, 64, 64)):
    """A random volume and a mask with an object in one slice and objects crossing 2, 3 and 4 slices."""
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32)
    mask = np.zeros(shape, np.int64)
    mask[0, 5:15, 5:15] = 1  # one slice only
    mask[1:3, 20:40, 20:30] = 2  # two slices
    mask[1:4, 44:60, 4:20] = 3  # three slices
    mask[:, 50:62, 40:60] = 7  # every slice
    mask[3, 2:6, 40:44] = 5  # one slice, the last
    return image, mask


def voxel_features(clf, image, mask):
    """Direct numpy: the embedding of each slice stacked to (Z, Y, X, C), then statistics per object's voxels."""
    extractor = clf._components()[0]
    feats = np.stack([np.moveaxis(extractor.embed_plane(image[z][:, :, None]).data, 0, -1)
                      for z in range(image.shape[0])])
    out = {}
    for i in np.unique(mask[mask > 0]):
        vox = feats[mask == i].astype(np.float64)  # (n voxels, C)
        out[int(i)] = {"mean": vox.mean(0), "std": vox.std(0), "min": vox.min(0), "max": vox.max(0),
                       "area": len(vox)}
    return out


def test_volume_features_are_the_statistics_of_all_voxels():
    image, mask = volume_and_mask()
    clf = ObjectClassifier("filters", stats=STATS)
    feats = clf.object_features(image, mask, axes="ZYX")
    assert feats.ids.tolist() == [1, 2, 3, 5, 7]
    expected = voxel_features(clf, image, mask)
    C = (feats.values.shape[1] - 1) // 4
    for row, i in zip(feats.values, feats.ids):
        for k, stat in enumerate(STATS):
            got = row[k * C:(k + 1) * C]
            if stat in ("min", "max"):
                np.testing.assert_array_equal(got, expected[i][stat].astype(np.float32))
            else:
                np.testing.assert_allclose(got, expected[i][stat], rtol=1e-6, atol=1e-6)
        assert row[-1] == expected[i]["area"] == (mask == i).sum()  # area = voxel count
    assert feats.names[-1] == "area"


def test_objects_in_one_slice_equal_the_2d_result():
    image, mask = volume_and_mask()
    clf = ObjectClassifier("filters", stats=STATS)
    volume = clf.object_features(image, mask, axes="ZYX")
    for z, i in ((0, 1), (3, 5)):
        plane = clf.object_features(image[z], np.where(mask[z] == i, i, 0))
        np.testing.assert_array_equal(volume.rows(np.array([i])), plane.values)  # bit-identical
    # the same for a channel-last volume
    rgb = np.repeat(image[..., None], 2, axis=-1)
    both = ObjectClassifier("filters").object_features(rgb, mask, axes="ZYXC")
    single = ObjectClassifier("filters").object_features(rgb[0], np.where(mask[0] == 1, 1, 0), axes="YXC")
    np.testing.assert_array_equal(both.rows(np.array([1])), single.values)


def test_coarse_embeddings_merge_across_slices(rng):
    # bilinear means of a coarse embedding come from the sparse product, std/min/max from bands: both merge
    from vfm_features.features.upsample import bilinear_dense

    Z, H, W = 3, 40, 48
    embs = [Embedding(rng.standard_normal((4, 5, 6)).astype(np.float32), EmbeddingGeometry((H, W), step=(8.0, 8.0)))
            for _ in range(Z)]
    mask = np.zeros((Z, H, W), np.int64)
    mask[:, 3:20, 5:30] = 4
    mask[1:, 25:39, 30:47] = 9
    mask[2, 1:3, 1:2] = 2
    agg = Aggregator(STATS)
    merged = agg.merge([agg.sums(e, None, m) for e, m in zip(embs, mask)])
    full = np.stack([np.moveaxis(bilinear_dense(e), 0, -1) for e in embs])  # (Z, H, W, C)
    assert merged.ids.tolist() == [2, 4, 9]
    for row, i in zip(merged.values, merged.ids):
        vox = full[mask == i].astype(np.float64)
        expected = np.concatenate([vox.mean(0), vox.std(0), vox.min(0), vox.max(0), [len(vox)]])
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-5)


def test_merging_sums_equals_summing_at_once(rng):
    # the exact merge: splitting the pixels of objects in parts and merging gives the sums of all pixels
    labels = rng.integers(1, 6, 500)
    values = rng.standard_normal((500, 3)).astype(np.float32)
    whole = ObjectSums.from_pixels(labels, values, STATS)
    parts = [ObjectSums.from_pixels(labels[a:b], values[a:b], STATS) for a, b in ((0, 120), (120, 121), (121, 500))]
    merged = ObjectSums.merge(parts, STATS)
    np.testing.assert_array_equal(merged.ids, whole.ids)
    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_array_equal(merged.mn, whole.mn)
    np.testing.assert_array_equal(merged.mx, whole.mx)
    np.testing.assert_allclose(merged.s1, whole.s1, rtol=1e-12)
    np.testing.assert_allclose(merged.s2, whole.s2, rtol=1e-12)
    a = ObjectSums.merge([ObjectSums.from_arrays(p.to_arrays()) for p in parts], STATS)
    np.testing.assert_array_equal(a.s1, merged.s1)
    assert ObjectSums.merge([], STATS, 3).finish(STATS, True).values.shape == (0, 13)


def test_aggregate_embedding_is_unchanged_by_the_split(rng):
    data = rng.standard_normal((3, 30, 30)).astype(np.float32)
    emb = Embedding(data, EmbeddingGeometry((30, 30)))
    mask = rng.integers(0, 5, (30, 30))
    a = aggregate_embedding(emb, mask, stats=STATS, band_rows=7)
    b = Aggregator(STATS).merge([Aggregator(STATS).sums(emb, None, mask)])
    np.testing.assert_array_equal(a.values, b.values)


def two_class_volume(seed):
    """Bright and dark objects crossing slices; returns image, mask, labels {id: class}."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0.5, 0.05, (4, 64, 64)).astype(np.float32)
    mask = np.zeros(image.shape, np.int64)
    labels = {}
    for k, (y, x) in enumerate([(4, 4), (4, 36), (36, 4), (36, 36), (20, 20), (48, 48)]):
        oid = k + 1
        z0 = k % 2
        mask[z0:z0 + 3, y:y + 12, x:x + 12] = oid
        bright = k % 3 != 0
        image[mask == oid] += 0.4 if bright else -0.4
        labels[oid] = 2 if bright else 1
    return image, mask, labels


def test_fit_and_predict_a_volume(tmp_path):
    image, mask, labels = two_class_volume(1)
    clf = ObjectClassifier("filters", head_options={"n_estimators": 20})
    clf.fit(image, mask, labels, axes="ZYX")
    test_image, test_mask, truth = two_class_volume(2)
    pred = clf.predict(test_image, test_mask, axes="ZYX")
    assert pred.as_dict() == truth
    assert pred.class_image.shape == test_mask.shape
    for oid, cls in truth.items():
        assert np.all(pred.class_image[test_mask == oid] == cls)
    assert np.all(pred.class_image[test_mask == 0] == 0)
    assert clf.score(test_image, test_mask, truth, axes="ZYX") == 1.0
    # a class image (Z, Y, X) as labels, and a saved classifier, give the same
    class_image = np.zeros_like(mask)
    for oid, cls in labels.items():
        class_image[mask == oid] = cls
    other = ObjectClassifier("filters", head_options={"n_estimators": 20}).fit(image, mask, class_image, axes="ZYX")
    np.testing.assert_array_equal(other.predict_proba(test_image, test_mask, axes="ZYX")[1],
                                  clf.predict_proba(test_image, test_mask, axes="ZYX")[1])
    from vfm_features import load_classifier

    clf.save(tmp_path / "volume.vfmc")
    loaded = load_classifier(tmp_path / "volume.vfmc")
    np.testing.assert_array_equal(loaded.predict_proba(test_image, test_mask, axes="ZYX")[1],
                                  clf.predict_proba(test_image, test_mask, axes="ZYX")[1])


def test_volumes_of_any_depth_train_together_and_reduce():
    image, mask, labels = two_class_volume(3)
    clf = ObjectClassifier("filters", reduce=3, head_options={"n_estimators": 10})
    part_labels = {i: labels[i] for i in np.unique(mask[1:3][mask[1:3] > 0])}
    clf.fit([image, image[1:3]], [mask, mask[1:3]], [labels, part_labels], axes="ZYX")
    assert clf.n_features_in_ == 4  # 3 components + area
    assert clf.predict(image, mask, axes="ZYX").class_image.shape == mask.shape


def test_bad_volume_input():
    image, mask = volume_and_mask()
    clf = ObjectClassifier("filters")
    with pytest.raises(InputError, match=r"3D instance mask"):
        clf.object_features(image, mask[0], axes="ZYX")  # a 2D mask with a volume
    with pytest.raises(InputError, match=r"3D instance mask"):
        clf.object_features(image, mask[:3], axes="ZYX")  # one slice short
    with pytest.raises(InputError, match=r"shape"):
        clf.object_features(image[0], mask)  # a 3D mask with a 2D image
    with pytest.raises(InputError, match=r"one volume"):
        clf.object_features(image[None], mask[None], axes="TZYX")
    with pytest.raises(InputError, match=r"one volume"):
        clf.object_features(image, mask, axes="TYX")  # time points are not a volume
    with pytest.raises(InputError, match=r"negative"):
        clf.object_features(image, -mask, axes="ZYX")


def test_an_empty_volume_has_no_objects():
    image, _ = volume_and_mask()
    clf = ObjectClassifier("filters", stats=("mean", "max"))
    feats = clf.object_features(image, np.zeros(image.shape, np.int64), axes="ZYX")
    plane = clf.object_features(image[0], np.zeros(image.shape[1:], np.int64))
    assert feats.values.shape == plane.values.shape and feats.names == plane.names


def test_heads_reading_embeddings_refuse_volumes():
    pytest.importorskip("torch")
    image, mask, labels = two_class_volume(4)
    clf = ObjectClassifier("filters", head="obap", head_options={"dim": 8, "max_iter": 2})
    with pytest.raises(InputError, match=r"feature-row head"):
        clf.fit(image, mask, labels, axes="ZYX")


def test_regionprops_measures_3d_objects():
    from vfm_features import get_extractor

    image, mask = volume_and_mask()
    rp = get_extractor("regionprops")
    feats = rp.object_features(image, mask, axes="ZYX")
    assert feats.names == ["volume", "intensity_mean", "intensity_max", "intensity_min", "extent",
                           "axis_major_length", "axis_minor_length", "equivalent_diameter", "centroid_z",
                           "centroid_y", "centroid_x"]
    col = {name: k for k, name in enumerate(feats.names)}
    for row, i in zip(feats.values, feats.ids):
        sel = mask == i
        zz, yy, xx = np.nonzero(sel)
        assert row[col["volume"]] == sel.sum()
        np.testing.assert_allclose(row[col["intensity_mean"]], image[sel].astype(np.float64).mean(), rtol=1e-6)
        assert row[col["intensity_max"]] == image[sel].max()
        np.testing.assert_allclose(row[[col["centroid_z"], col["centroid_y"], col["centroid_x"]]],
                                   [zz.mean(), yy.mean(), xx.mean()], rtol=1e-6)
        np.testing.assert_allclose(row[col["equivalent_diameter"]], (6 * sel.sum() / np.pi) ** (1 / 3), rtol=1e-5)
        assert np.isfinite(row).all()
    box = mask == 2  # a 2 x 20 x 10 box: full extent
    assert feats.rows(np.array([2]))[0, col["extent"]] == 1.0 and box.sum() == 400
    # an object in one slice: the same volume, intensities and centroid as the 2D measure of that slice
    flat = rp.object_features(image[0], np.where(mask[0] == 1, 1, 0))
    flat_col = {name: k for k, name in enumerate(flat.names)}
    one = feats.rows(np.array([1]))[0]
    for name3, name2 in (("volume", "area"), ("intensity_mean", "intensity_mean"), ("centroid_y", "centroid_y"),
                         ("centroid_x", "centroid_x")):
        assert one[col[name3]] == flat.values[0, flat_col[name2]]
    # channels: per-channel intensities of a ZYXC volume
    two = np.stack([image, 10 * image], axis=-1)
    per = get_extractor("regionprops", channels="per_channel").object_features(two, mask, axes="ZYXC")
    assert "intensity_mean_ch1" in per.names
    np.testing.assert_allclose(per.values[:, per.names.index("intensity_mean_ch1")],
                               10 * feats.values[:, col["intensity_mean"]], rtol=1e-5)
    with pytest.raises(InputError, match=r"3D instance mask"):
        rp.object_features(image, mask[0], axes="ZYX")
    empty = rp.object_features(image, np.zeros_like(mask), axes="ZYX")
    assert empty.values.shape == (0, len(feats.names))


def test_object_classifier_with_regionprops_on_volumes():
    image, mask, labels = two_class_volume(5)
    clf = ObjectClassifier("regionprops", head_options={"n_estimators": 20}).fit(image, mask, labels, axes="ZYX")
    assert clf.feature_names_[0] == "volume"
    test_image, test_mask, truth = two_class_volume(6)
    assert clf.predict(test_image, test_mask, axes="ZYX").as_dict() == truth
    with pytest.raises(InputError, match=r"features per object"):  # trained on volumes, applied to a plane
        clf.predict(test_image[1], test_mask[1])


def test_object_extractors_without_volumes_refuse_them():
    from vfm_features.classifiers.object import volume_object_features

    class Flat:
        name = "flat"

    image, mask = volume_and_mask()
    with pytest.raises(InputError, match=r"2D objects only"):
        volume_object_features(Flat(), list(image[..., None]), mask)


def test_cli_trains_and_predicts_objects_of_volumes(tmp_path, capsys):
    import json

    import tifffile

    from vfm_features.cli import main

    image, mask, labels = two_class_volume(7)
    test_image, test_mask, truth = two_class_volume(8)
    files = {"img.tif": image, "mask.tif": mask.astype(np.uint16), "test.tif": test_image,
             "test_mask.tif": test_mask.astype(np.uint16)}
    for name, arr in files.items():
        tifffile.imwrite(tmp_path / name, arr)
    (tmp_path / "labels.json").write_text(json.dumps({str(k): v for k, v in labels.items()}))
    model = tmp_path / "volume.vfmc"
    assert main(["train", "objects", "-e", "filters", "--images", str(tmp_path / "img.tif"), "--masks",
                 str(tmp_path / "mask.tif"), "--labels", str(tmp_path / "labels.json"), "--axes", "ZYX",
                 "--trees", "20", "-o", str(model)]) == 0
    out = tmp_path / "out"
    assert main(["predict", str(model), "--images", str(tmp_path / "test.tif"), "--masks",
                 str(tmp_path / "test_mask.tif"), "--axes", "ZYX", "-o", str(out)]) == 0
    classes = tifffile.imread(out / "test_classes.tif")
    assert classes.shape == test_mask.shape
    for oid, cls in truth.items():
        assert np.all(classes[test_mask == oid] == cls)


def test_slices_are_embedded_once_through_the_cache(tmp_path):
    pytest.importorskip("zarr")
    from plugin_tools import counting_filters
    from vfm_features import EmbeddingCache

    image, mask, labels = two_class_volume(9)
    mask[3] = 0  # the last slice has no object: it is not embedded
    ext = counting_filters()
    cache = EmbeddingCache(tmp_path / "emb.zarr")
    clf = ObjectClassifier(ext, cache=cache, head_options={"n_estimators": 5})
    clf.fit(image, mask, {i: labels[i] for i in np.unique(mask[mask > 0])}, axes="ZYX")
    assert ext.calls == 3
    first = clf.predict_proba(image, mask, axes="ZYX")[1]
    assert ext.calls == 3  # every slice came from the cache
    np.testing.assert_array_equal(first, ObjectClassifier(ext, head_options={"n_estimators": 5}).fit(
        image, mask, {i: labels[i] for i in np.unique(mask[mask > 0])}, axes="ZYX").predict_proba(
        image, mask, axes="ZYX")[1])
