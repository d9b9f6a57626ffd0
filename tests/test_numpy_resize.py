"""numpy_resize reproduces torch's antialiased bilinear interpolation (the ONNX backend's preprocessing).

Documented agreement (src/vfm_features/models/numpy_resize.py): bit for bit when
enlarging or shrinking by less than 2; within RELATIVE_TOLERANCE of the largest
value (2 float32 ulps) when shrinking more.
"""

from __future__ import annotations

import numpy as np
import pytest

from vfm_features import InputError
from vfm_features.models.numpy_resize import RELATIVE_TOLERANCE, aa_taps, resize_bilinear_aa

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_resize(image: np.ndarray, shape) -> np.ndarray:
    t = torch.from_numpy(image).permute(2, 0, 1)[None]  # as the torch backend passes it
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False, antialias=True)[0].permute(
        1, 2, 0).numpy()


@pytest.mark.parametrize("src, dst", [((50, 70), (731, 1024)), ((96, 96), (1024, 1024)), ((300, 200), (1024, 683)),
                                      ((2000, 1500), (1024, 768)), ((1024, 1024), (518, 518)),
                                      ((130, 70), (200, 50)), ((7, 5), (7, 9))])
def test_bit_for_bit_when_enlarging_or_shrinking_less_than_twice(src, dst):
    image = np.random.default_rng(sum(src)).random(src + (3,), dtype=np.float32) * 255
    np.testing.assert_array_equal(resize_bilinear_aa(image, dst), torch_resize(image, dst))


@pytest.mark.parametrize("src, dst", [((333, 77), (64, 64)), ((1411, 1130), (238, 482)), ((224, 447), (12, 958)),
                                      ((90, 3000), (40, 1024))])
def test_within_two_ulps_when_shrinking_strongly(src, dst):
    image = np.random.default_rng(sum(src)).random(src + (3,), dtype=np.float32)
    got, want = resize_bilinear_aa(image, dst), torch_resize(image, dst)
    assert np.abs(got - want).max() <= RELATIVE_TOLERANCE * np.abs(want).max()
    assert np.mean(got == want) > 0.5  # most values are still identical


def test_random_shapes_stay_within_the_documented_tolerance():
    rng = np.random.default_rng(7)
    for _ in range(12):
        src = tuple(int(v) for v in rng.integers(2, 400, 2))
        dst = tuple(int(v) for v in rng.integers(2, 400, 2))
        image = rng.random(src + (3,), dtype=np.float32)
        got, want = resize_bilinear_aa(image, dst), torch_resize(image, dst)
        assert got.shape == dst + (3,) and got.dtype == np.float32
        assert np.abs(got - want).max() <= RELATIVE_TOLERANCE * np.abs(want).max(), (src, dst)


def test_weights_are_a_partition_of_unity_and_stay_inside_the_image():
    for n_in, n_out in [(70, 50), (50, 70), (1, 9), (9, 1), (3000, 1024)]:
        index, weights = aa_taps(n_in, n_out)
        assert index.min() >= 0 and index.max() < n_in
        np.testing.assert_allclose(weights.sum(1, dtype=np.float64), 1.0, atol=1e-6)


def test_constant_images_stay_constant_and_grey_images_work():
    grey = np.full((37, 91), 0.25, np.float32)
    out = resize_bilinear_aa(grey, (64, 128))
    assert out.shape == (64, 128)
    np.testing.assert_allclose(out, 0.25, rtol=1e-6)


def test_a_one_pixel_wide_image_is_resized_correctly_where_torch_is_not():
    # torch's antialiased kernel gives wrong rows for an input one pixel wide (it disagrees with the same
    # column given twice); numpy_resize gives the values of the two-column input
    column = np.random.default_rng(0).random((130, 1, 3), dtype=np.float32)
    twice = np.repeat(column, 2, axis=1)
    np.testing.assert_array_equal(resize_bilinear_aa(column, (200, 1)), torch_resize(twice, (200, 2))[:, :1])


def test_unchanged_size_returns_the_same_values():
    image = np.random.default_rng(1).random((20, 30, 3), dtype=np.float32)
    np.testing.assert_array_equal(resize_bilinear_aa(image, (20, 30)), image)


def test_bad_shapes_are_refused():
    with pytest.raises(InputError, match="at least 1"):
        resize_bilinear_aa(np.zeros((4, 4), np.float32), (0, 3))
    with pytest.raises(InputError, match=r"\(Y, X\) or \(Y, X, C\)"):
        resize_bilinear_aa(np.zeros((2, 4, 4, 3), np.float32), (8, 8))
