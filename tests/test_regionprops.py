"""The regionprops plugin: known shapes, id order, channels, empty and invalid masks."""

from __future__ import annotations

import numpy as np
import pytest

import vfm_features
from vfm_features import InputError
from vfm_features_regionprops import RegionpropsExtractor


def regionprops(**options) -> RegionpropsExtractor:
    return vfm_features.get_extractor("regionprops", **options)


def squares_and_disc():
    mask = np.zeros((64, 64), np.int32)
    img = np.zeros((64, 64), np.float32)
    mask[10:20, 30:40] = 9  # 10 x 10 square, centre (14.5, 34.5)
    img[10:20, 30:40] = 2.0
    mask[40:44, 5:9] = 2  # 4 x 4 square, centre (41.5, 6.5)
    img[40:44, 5:9] = 5.0
    img[40, 5] = 1.0
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 45) ** 2 + (xx - 45) ** 2 <= 8**2
    mask[disc] = 4
    img[disc] = 3.0
    return img, mask, disc


def column(feats, name):
    return feats.values[:, feats.names.index(name)]


def test_known_squares_and_disc():
    img, mask, disc = squares_and_disc()
    feats = regionprops().object_features(img, mask)
    np.testing.assert_array_equal(feats.ids, [2, 4, 9])
    assert feats.values.dtype == np.float32 and feats.values.shape == (3, 13)
    np.testing.assert_allclose(column(feats, "area"), [16, disc.sum(), 100])
    np.testing.assert_allclose(column(feats, "intensity_mean"), [(15 * 5 + 1) / 16, 3, 2], rtol=1e-6)
    np.testing.assert_allclose(column(feats, "intensity_min"), [1, 3, 2])
    np.testing.assert_allclose(column(feats, "intensity_max"), [5, 3, 2])
    np.testing.assert_allclose(column(feats, "centroid_y"), [41.5, 45, 14.5])
    np.testing.assert_allclose(column(feats, "centroid_x"), [6.5, 45, 34.5])
    np.testing.assert_allclose(column(feats, "extent")[[0, 2]], 1.0)
    assert column(feats, "eccentricity")[1] < 0.1  # a disc is round
    assert column(feats, "axis_major_length")[1] == pytest.approx(2 * 8, rel=0.05)


def test_channels_sum_and_per_channel():
    img, mask, _ = squares_and_disc()
    two = np.stack([img, 10 * img], axis=-1)
    summed = regionprops().object_features(two, mask)
    np.testing.assert_allclose(column(summed, "intensity_mean"), 11 * column(regionprops().object_features(img, mask), "intensity_mean"), rtol=1e-6)
    per = regionprops(channels="per_channel").object_features(two, mask)
    assert per.names == regionprops(channels="per_channel").feature_names(2)
    assert "intensity_mean_ch1" in per.names and per.values.shape == (3, 16)
    np.testing.assert_allclose(column(per, "intensity_max_ch1"), 10 * column(per, "intensity_max_ch0"))
    one = regionprops(channels=[1]).object_features(two, mask)
    np.testing.assert_allclose(column(one, "intensity_mean_ch1"), column(per, "intensity_mean_ch1"))


def test_empty_mask_gives_zero_rows():
    feats = regionprops().object_features(np.ones((16, 16)), np.zeros((16, 16), np.uint8))
    assert feats.ids.shape == (0,) and feats.values.shape == (0, 13) and len(feats.names) == 13


def test_invalid_masks_and_options_are_rejected():
    img = np.ones((16, 16))
    mask = np.zeros((16, 16), np.int32)
    mask[2, 2] = -3
    with pytest.raises(InputError, match="negative"):
        regionprops().object_features(img, mask)
    with pytest.raises(InputError, match="shape"):
        regionprops().object_features(img, np.zeros((8, 8), np.int32))
    with pytest.raises(InputError, match="channels"):
        regionprops(channels="mean")
    with pytest.raises(InputError):
        regionprops(channels=[5]).object_features(np.ones((16, 16, 2)), np.ones((16, 16), np.int32))


def test_found_through_entry_point():
    spec = vfm_features.get_spec("regionprops")
    assert spec.name == "regionprops:default" and spec.kind == "object" and spec.default
    assert spec.plugin == "regionprops"
    assert isinstance(regionprops(), RegionpropsExtractor)
    assert "regionprops:default" in vfm_features.list_extractors(kind="object")
