import numpy as np
import pytest

from vfm_features.errors import InputError
from vfm_features.features.sampling import class_quotas, sample_balanced, sample_objects, sample_pixels


def test_quotas_water_fill():
    np.testing.assert_array_equal(class_quotas(np.array([1000, 10, 1000]), 300), [145, 10, 145])
    assert class_quotas(np.array([5, 5]), 100).tolist() == [5, 5]
    assert class_quotas(np.array([3, 3, 3]), 4).sum() == 4


def test_sample_pixels_balanced_and_deterministic():
    lab = np.zeros((100, 100), np.uint8)
    lab[:50] = 1
    lab[60:62, :10] = 2  # 20 pixels of a rare class
    lab[80:] = 3
    a = sample_pixels(lab, 200, random_state=3)
    b = sample_pixels(lab, 200, random_state=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    _, coords, cls = a
    assert len(cls) == 200
    assert np.bincount(cls).tolist() == [0, 90, 20, 90]
    assert np.all(lab[coords[:, 0], coords[:, 1]] == cls)
    assert len(np.unique(coords, axis=0)) == 200  # without replacement


def test_budget_larger_than_labels_uses_all_and_none_means_all():
    lab = np.zeros((10, 10), np.uint8)
    lab[0, :4] = 1
    lab[1, :3] = 2
    assert len(sample_pixels(lab, 10_000)[2]) == 7
    assert len(sample_pixels(lab, None)[2]) == 7


def test_multiple_images_carry_their_index():
    labs = [np.eye(4, dtype=np.uint8), 2 * np.eye(4, dtype=np.uint8)]
    idx, coords, cls = sample_pixels(labs, None)
    assert set(zip(idx.tolist(), cls.tolist())) == {(0, 1), (1, 2)}


def test_objects_budget():
    objs = {i: 1 + (i % 3 == 0) for i in range(1, 61)}
    picked = sample_objects(objs, 10, random_state=0)
    assert len(picked) == 10 and sorted(np.bincount(list(picked.values()))[1:]) == [5, 5]
    assert sample_objects(objs, None) == objs


@pytest.mark.parametrize("budget", [0, -5, 2.5])
def test_bad_budget(budget):
    with pytest.raises(InputError, match="budget"):
        sample_balanced(np.array([1, 2, 3]), budget)
