"""The filters plugin: analytic values, layout, options, registry and tiling."""

from __future__ import annotations

import math

import numpy as np
import pytest

import vfm_features
from vfm_features import InputError
from vfm_features_filters import FilterExtractor
from vfm_features_filters.kernels import gaussian_kernel


def filters(**options) -> FilterExtractor:
    return vfm_features.get_extractor("filters", **options)


def channel(emb, name: str) -> np.ndarray:
    return emb.data[emb.meta["feature_names"].index(name)]


def blob(size=65, b=3.0, amplitude=100.0) -> np.ndarray:
    y, x = np.mgrid[:size, :size] - size // 2
    return (amplitude * np.exp(-(x**2 + y**2) / (2 * b * b))).astype(np.float32)


# -- analytic values -----------------------------------------------------------
def test_constant_image_smooths_to_itself_and_has_no_structure():
    emb = filters().embed(np.full((40, 50), 7.5, np.float32))
    for s in (0.5, 1.0, 2.0, 4.0):
        np.testing.assert_allclose(channel(emb, f"ch0_gaussian_s{s}"), 7.5, rtol=1e-5)
        for name in ("dog", "log", "gradient_magnitude", "hessian_ev0", "hessian_ev1",
                     "structure_tensor_ev0", "structure_tensor_ev1"):
            np.testing.assert_allclose(channel(emb, f"ch0_{name}_s{s}"), 0.0, atol=1e-4)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_ramp_gradient_magnitude_is_slope_and_structure_tensor_is_slope_squared(sigma):
    slope, theta = 0.7, math.radians(30)
    y, x = np.mgrid[:96, :96].astype(np.float32)
    ramp = slope * (x * math.cos(theta) + y * math.sin(theta)) + 5
    ext = filters(sigmas=[sigma], features=["gradient_magnitude", "structure_tensor"])
    emb = ext.embed(ramp)
    inner = (slice(ext.halo, -ext.halo),) * 2
    np.testing.assert_allclose(channel(emb, f"ch0_gradient_magnitude_s{sigma}")[inner], slope, rtol=1e-4)
    np.testing.assert_allclose(channel(emb, f"ch0_structure_tensor_ev0_s{sigma}")[inner], slope**2, rtol=1e-3)
    np.testing.assert_allclose(channel(emb, f"ch0_structure_tensor_ev1_s{sigma}")[inner], 0.0, atol=1e-4)


def test_blob_log_and_hessian_match_analytic_values():
    # A Gaussian blob of std b smoothed at sigma is a Gaussian of variance s2 = b2 + sigma2 and
    # peak A = A0 b2 / s2; at its centre d2/dx2 = d2/dy2 = -A / s2, so LoG = -2 A / s2.
    b, sigma, a0 = 3.0, 2.0, 100.0
    s2 = b * b + sigma * sigma
    emb = filters(sigmas=[sigma]).embed(blob(b=b, amplitude=a0))
    c = (32, 32)
    peak = channel(emb, "ch0_gaussian_s2.0")[c]
    assert peak == pytest.approx(a0 * b * b / s2, rel=0.02)
    log = channel(emb, "ch0_log_s2.0")[c]
    assert log < 0
    assert log == pytest.approx(-2 * peak / s2, rel=0.03)
    for ev in ("hessian_ev0", "hessian_ev1"):
        assert channel(emb, f"ch0_{ev}_s2.0")[c] == pytest.approx(-peak / s2, rel=0.03)
    assert channel(emb, "ch0_dog_s2.0")[c] < 0  # G(sigma) - G(0.66 sigma) is negative on a bright peak
    assert channel(emb, "ch0_gradient_magnitude_s2.0")[c] == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 2.5])
def test_kernels_are_exact_on_polynomials(sigma):
    r = (len(gaussian_kernel(sigma, 0)) - 1) // 2
    x = np.arange(-r, r + 1)
    assert gaussian_kernel(sigma, 0).sum() == pytest.approx(1.0)
    assert (gaussian_kernel(sigma, 1) * x).sum() == pytest.approx(1.0)
    assert gaussian_kernel(sigma, 2).sum() == pytest.approx(0.0, abs=1e-12)
    assert (gaussian_kernel(sigma, 2) * x**2).sum() == pytest.approx(2.0)


def test_eigenvalues_are_sorted_descending():
    rng = np.random.default_rng(0)
    emb = filters(sigmas=[1.0, 2.0], features=["hessian", "structure_tensor"]).embed(rng.random((48, 48)))
    for f in ("hessian", "structure_tensor"):
        for s in (1.0, 2.0):
            assert np.all(channel(emb, f"ch0_{f}_ev0_s{s}") >= channel(emb, f"ch0_{f}_ev1_s{s}"))
    assert np.all(channel(emb, "ch0_structure_tensor_ev1_s1.0") >= -1e-6)  # positive semi-definite


# -- layout and options --------------------------------------------------------
def test_counts_and_names_for_one_and_three_channels():
    ext = filters()
    assert ext.n_features == ext.n_features_for(1) == 32
    assert ext.n_features_for(3) == 96
    names1, names3 = ext.feature_names(1), ext.feature_names(3)
    assert len(names1) == 32 and len(set(names3)) == 96
    assert names1[0] == "ch0_gaussian_s0.5" and "ch2_hessian_ev1_s4.0" in names3
    assert names3[:32] == names1


def test_multichannel_features_are_per_channel():
    rng = np.random.default_rng(1)
    rgb = (rng.random((40, 36, 3)) * 255).astype(np.uint8)
    ext = filters(sigmas=[1.0, 2.0])
    emb = ext.embed(rgb)
    n = ext.n_features_for(1)
    assert emb.data.shape == (3 * n, 40, 36) and emb.data.dtype == np.float32
    np.testing.assert_array_equal(emb.data[n:2 * n], ext.embed(rgb[..., 1]).data)


def test_subset_matches_full_bank_channels():
    rng = np.random.default_rng(2)
    img = rng.random((32, 40)).astype(np.float32)
    full = filters(sigmas=[1.0, 1.5]).embed(img)
    sub_ext = filters(sigmas=[1.5], features=["hessian", "dog"])
    sub = sub_ext.embed(img)
    assert sub_ext.feature_names() == ["ch0_hessian_ev0_s1.5", "ch0_hessian_ev1_s1.5", "ch0_dog_s1.5"]
    for i, name in enumerate(sub_ext.feature_names()):
        np.testing.assert_array_equal(sub.data[i], channel(full, name))


def test_threads_do_not_change_features_or_signature():
    img = np.random.default_rng(3).random((30, 30, 2)).astype(np.float32)
    one, two = filters(n_threads=1), filters(n_threads=2)
    np.testing.assert_array_equal(one.embed(img).data, two.embed(img).data)
    assert one.signature() == two.signature()
    assert one.signature() != filters(sigmas=[1.0]).signature()


def test_normalization_option():
    img = (np.random.default_rng(4).random((32, 32)) * 4000 + 1000).astype(np.uint16)
    emb = filters(normalization="minmax", features=["gaussian"]).embed(img)
    assert 0.0 <= emb.data.min() and emb.data.max() <= 1.0
    raw = filters(features=["gaussian"]).embed(img)
    assert raw.data.max() > 1000  # default: raw intensities, as ilastik
    with pytest.raises(InputError, match="normalization"):
        filters(normalization="zscore")


def test_tile_with_halo_reproduces_whole_image_features():
    img = np.random.default_rng(5).random((120, 120)).astype(np.float32)
    ext = filters(sigmas=[1.0, 3.0])
    h = ext.halo
    whole = ext.embed(img).data
    tile = ext.embed(img[40 - h:80 + h, 40 - h:80 + h]).data
    np.testing.assert_array_equal(tile[:, h:-h, h:-h], whole[:, 40:80, 40:80])  # exact: same arithmetic
    g = h - 1  # one pixel less context is not enough
    short = ext.embed(img[40 - g:80 + g, 40 - g:80 + g]).data
    assert not np.array_equal(short[:, g:-g, g:-g], whole[:, 40:80, 40:80])


def test_core_tiling_uses_the_halo_these_sigmas_need():
    img = np.random.default_rng(7).random((150, 140)).astype(np.float32)
    ext = filters(sigmas=[1.0, 6.0], features=["gaussian", "structure_tensor"], tile_shape=96)
    assert ext.options["halo"] == ext.halo > vfm_features.get_spec("filters").halo
    np.testing.assert_array_equal(ext.embed(img).data, filters(sigmas=[1.0, 6.0], features=["gaussian", "structure_tensor"]).embed(img).data)
    with pytest.warns(UserWarning, match="halo"):
        filters(tile_shape=96, halo=4)


@pytest.mark.parametrize("sigmas", [[0], [-1.0], [float("nan")], [float("inf")], [], ["big"], [1.0, 1.0]])
def test_bad_sigmas_are_rejected(sigmas):
    with pytest.raises(InputError, match="sigmas"):
        filters(sigmas=sigmas)


def test_unknown_feature_suggests_a_name():
    with pytest.raises(InputError, match="hessian"):
        filters(features=["hesian"])


# -- registry --------------------------------------------------------------------
def test_found_through_entry_point_and_embeds_2d_image():
    spec = vfm_features.get_spec("filters")
    assert spec.name == "filters:default" and spec.plugin == "filters" and spec.default
    assert spec.kind == "pixel" and spec.n_features is None and spec.halo >= 16
    ext = vfm_features.get_extractor("filters")
    assert isinstance(ext, FilterExtractor)
    img = (np.random.default_rng(6).random((50, 60)) * 255).astype(np.uint8)
    emb = ext.embed(img)
    assert emb.data.shape == (32, 50, 60) and emb.data.dtype == np.float32
    assert emb.geometry.is_identity and emb.image_shape == (50, 60)
    assert emb.extractor == "filters:default"
    feats = vfm_features.get_upsampler("bilinear").sparse(emb, img, np.array([[3, 4], [49, 59]]))
    np.testing.assert_array_equal(feats, emb.data[:, [3, 49], [4, 59]].T)
