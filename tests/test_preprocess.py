import numpy as np
import pytest

from vfm_features.errors import InputError
from vfm_features.preprocess import normalize_intensity, select_channels, to_planes, to_rgb
from vfm_features.validation import check_image


def test_axes_inference_and_errors():
    assert check_image(np.zeros((10, 12)))[1] == "YX"
    assert check_image(np.zeros((10, 12, 3)))[1] == "YXC"
    assert check_image(np.zeros((2, 10, 12)))[1] == "CYX"
    with pytest.raises(InputError, match="ambiguous"):
        check_image(np.zeros((8, 10, 12)))
    with pytest.raises(InputError, match="axes"):
        check_image(np.zeros((8, 10, 12, 2)))
    with pytest.raises(InputError, match="does not fit"):
        check_image(np.zeros((8, 10)), axes="ZYX")
    with pytest.raises(InputError, match="infinite"):
        check_image(np.array([[0, np.inf], [1, 2]]))
    with pytest.raises(InputError, match="dtype"):
        check_image(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(InputError, match="smaller"):
        check_image(np.zeros((1, 5)))


def test_planes_from_stacks():
    stack = np.random.default_rng(0).random((2, 3, 16, 20, 2))
    planes, stack_shape = to_planes(stack, "TZYXC")
    assert stack_shape == (2, 3) and len(planes) == 6 and planes[4].shape == (16, 20, 2)
    np.testing.assert_array_equal(planes[4], stack[1, 1])
    planes, _ = to_planes(np.moveaxis(stack[0, 0], -1, 0), "CYX")
    np.testing.assert_array_equal(planes[0], stack[0, 0])


def test_channels_and_rgb():
    plane = np.ones((4, 5, 3), np.float32) * np.array([1, 2, 3], np.float32)
    assert select_channels(plane, "sum")[0, 0, 0] == 6
    assert select_channels(plane, [2])[0, 0, 0] == 3
    with pytest.raises(InputError, match="channel"):
        select_channels(plane, [5])
    assert to_rgb(plane[..., :1]).shape == (4, 5, 3)
    assert to_rgb(plane[..., :2])[0, 0].tolist() == [3, 3, 3]


def test_normalization():
    u8 = np.array([[0, 255]], np.uint8)
    assert normalize_intensity(u8).tolist() == [[0.0, 1.0]]
    u16 = np.array([[100, 300]], np.uint16)
    assert normalize_intensity(u16).tolist() == [[0.0, 1.0]]
    assert normalize_intensity(u16, "dtype").max() < 0.01
    assert normalize_intensity(np.full((2, 2), 7.0)).max() == 0
    with pytest.raises(InputError, match="normalization"):
        normalize_intensity(u8, "zscore")
