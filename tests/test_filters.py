"""The filters plugin: ilastik's definitions, analytic values, layout, options, registry and tiling.

Equality with ilastik's own filters is checked twice: against a float64 reference
written here with scipy (always), and against fastfilters2 itself where it installs.
Every test runs with both backends (numba, where it installs, and numpy).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

import vfm_features
from vfm_features import InputError
from vfm_features_filters import FilterExtractor
from vfm_features_filters.kernels import gaussian_kernel, kernel_radius

FILTERS = ("gaussian", "log", "gradient_magnitude", "dog", "structure_tensor", "hessian")
ILASTIK_SIGMAS = (0.3, 0.5, 0.7, 1.0, 1.6, 2.0, 3.5, 4.0, 5.0, 10.0)  # ilastik's scales and ours


@pytest.fixture(autouse=True, params=["numba", "numpy"])
def backend(request, monkeypatch):
    """Run the test with this backend as what ``backend="auto"`` picks."""
    import vfm_features_filters.extractor as module
    from vfm_features_filters.backends import compiled_problem

    if request.param == "numba" and compiled_problem() is not None:
        pytest.skip(f"the compiled filters do not work here: {compiled_problem()}")

    monkeypatch.setattr(module, "resolve_backend", lambda b: request.param if b == "auto" else b)
    return request.param


def filters(**options) -> FilterExtractor:
    return vfm_features.get_extractor("filters", **options)


def channel(emb, name: str) -> np.ndarray:
    return emb.data[emb.meta["feature_names"].index(name)]


def close_to_rounding(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to float32 rounding: within 1e-6 of each channel's range."""
    scale = np.ptp(b, axis=(-2, -1), keepdims=True)
    assert np.all(np.abs(a - b) <= 1e-6 * scale + 1e-30)


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


# -- ilastik's definitions -------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 2.5, 4.0])
def test_windows_are_ilastiks(sigma):
    # ceil(3 sigma) for smoothing, ceil(3.5 sigma) for first and ceil(4 sigma) for second derivatives
    for order, factor in ((0, 3.0), (1, 3.5), (2, 4.0)):
        assert kernel_radius(sigma, order) == math.ceil(factor * sigma)
        assert len(gaussian_kernel(sigma, order)) == 2 * math.ceil(factor * sigma) + 1


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 2.5, 4.0])
def test_kernels_are_exact_on_polynomials(sigma):
    for order, moment, value in ((0, 0, 1.0), (1, 1, 1.0), (2, 0, 0.0), (2, 2, 2.0)):
        w = gaussian_kernel(sigma, order)
        x = np.arange(len(w)) - (len(w) - 1) // 2
        assert np.sum(w * x**moment) == pytest.approx(value, abs=1e-12)
    w1 = gaussian_kernel(sigma, 1)
    assert w1[-1] > 0  # correlation weights: the derivative of an increasing ramp is positive


@pytest.mark.parametrize("sigma", [0.5, 1.0, 4.0])
def test_second_derivative_loses_its_dc_by_the_window_mean_as_vigra(sigma):
    r = math.ceil(4 * sigma)
    x = np.arange(-r, r + 1)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    shape = (x**2 / sigma**2 - 1) * g
    expected = shape - shape.mean()
    expected *= 2.0 / np.sum(x**2 * expected)
    np.testing.assert_allclose(gaussian_kernel(sigma, 2), expected, rtol=1e-12, atol=1e-15)


def reference(img: np.ndarray, sigma: float) -> dict[str, np.ndarray]:
    """ilastik's features in float64 with scipy's correlate1d (mirror = Vigra REFLECT), by definition."""
    img = img.astype(np.float64)

    def d(oy, ox, s=sigma):
        along_x = ndi.correlate1d(img, gaussian_kernel(s, ox), axis=1, mode="mirror")
        return ndi.correlate1d(along_x, gaussian_kernel(s, oy), axis=0, mode="mirror")

    def smooth(a, s):
        return ndi.correlate1d(ndi.correlate1d(a, gaussian_kernel(s, 0), axis=1, mode="mirror"),
                               gaussian_kernel(s, 0), axis=0, mode="mirror")

    def eig(a, b, c):
        mean, half = (a + c) / 2, np.hypot((a - c) / 2, b)
        return mean + half, mean - half

    gy, gx = d(1, 0), d(0, 1)
    st = eig(*(smooth(p, 0.5 * sigma) for p in (gy * gy, gy * gx, gx * gx)))
    he = eig(d(2, 0), d(1, 1), d(0, 2))
    return {"gaussian": d(0, 0), "log": d(2, 0) + d(0, 2), "gradient_magnitude": np.hypot(gy, gx),
            "dog": d(0, 0) - d(0, 0, 0.66 * sigma), "structure_tensor_ev0": st[0], "structure_tensor_ev1": st[1],
            "hessian_ev0": he[0], "hessian_ev1": he[1]}


@pytest.mark.parametrize("shape", [(37, 41), (5, 7), (2, 9), (9, 2), (2, 2), (64, 3)])
def test_every_feature_equals_the_float64_reference(shape):
    # odd shapes, images smaller than the kernels (several mirror reflections), two-pixel lines
    img = (np.random.default_rng(sum(shape)).random(shape) * 200).astype(np.float32)
    sigmas = (0.5, 1.0, 4.0)
    emb = filters(sigmas=sigmas).embed(img)
    for s in sigmas:
        expected = reference(img, s)
        for name in FILTERS:
            outs = [n for n in expected if n == name or n.startswith(name + "_ev")]
            want = np.stack([expected[n] for n in outs])
            got = np.stack([channel(emb, f"ch0_{n}_s{s}") for n in outs])
            # the filter's range (both eigenvalues together), plus float32 rounding of the values
            rounding = 4 * np.finfo(np.float32).eps * np.abs(img).max()  # DoG: a difference of two smoothings
            tolerance = 2e-5 * np.ptp(want) + 1e-6 * np.abs(want).max() + rounding
            assert np.abs(got - want).max() <= tolerance, (name, s)


@pytest.fixture(scope="module")
def fastfilters2():
    return pytest.importorskip("fastfilters2")


def test_features_equal_fastfilters2_for_every_filter_and_sigma(fastfilters2):
    # fastfilters2.compute_filters: gaussian, gradient magnitude, LoG, Hessian (2), structure tensor (2).
    # Its SIMD loops read 128 columns at a time (AVX-512), so the image is wider than that.
    rng = np.random.default_rng(0)
    img = ndi.gaussian_filter(rng.random((150, 192)) * 255, 1.5) + rng.random((150, 192)) * 40
    img = img.astype(np.float32)
    ours = filters(sigmas=ILASTIK_SIGMAS).embed(img)
    for s in ILASTIK_SIGMAS:
        ff = fastfilters2.compute_filters(img, s)
        ff_dog = ff[0] - fastfilters2.compute_filters(img, 0.66 * s)[0]
        groups = {"gaussian": ff[:1], "gradient_magnitude": ff[1:2], "log": ff[2:3], "hessian": ff[3:5],
                  "structure_tensor": ff[5:7], "dog": ff_dog[None]}
        for name, theirs in groups.items():
            outs = [f"ch0_{name}_s{s}"] if len(theirs) == 1 else [f"ch0_{name}_ev{i}_s{s}" for i in range(2)]
            got = np.stack([channel(ours, n) for n in outs])
            error = np.abs(got - theirs).max() / np.ptp(theirs)  # the filter's range, both eigenvalues together
            assert error < 1e-4, (name, s, error)
            for i, (one, theirs_one) in enumerate(zip(got, theirs)):
                if name == "structure_tensor" and i == 1 and s <= 0.5:
                    continue  # ev1 is float32 cancellation noise there, in both (docs/filters.md)
                rounding = 4 * np.finfo(np.float32).eps * np.abs(img).max()  # DoG: a difference of two smoothings
                assert np.abs(one - theirs_one).max() < 2e-5 * np.ptp(theirs_one) + rounding, (name, s, i)


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
    # large enough to be cut into several bands and wide-kernel chunks (sigma 4) per thread
    big = np.random.default_rng(4).random((301, 777)).astype(np.float32)
    np.testing.assert_array_equal(one.embed(big).data, two.embed(big).data)


def test_no_uninitialised_memory_is_read(monkeypatch):
    # every buffer starts as inf: a product that reads a cell the passes did not write makes
    # inf * 0 somewhere (most weights of a block are 0), which raises under errstate
    empty = np.empty

    def poisoned(*args, **kwargs):
        return np.full_like(empty(*args, **kwargs), np.inf)

    monkeypatch.setattr(np, "empty", poisoned)
    img = np.random.default_rng(9).random((70, 90)).astype(np.float32)
    with np.errstate(invalid="raise"):
        for n_threads in (1, 2):
            data = filters(sigmas=[0.5, 3.0], n_threads=n_threads).embed(img).data
            assert np.isfinite(data).all()


def test_blas_threads_are_restored_after_embedding():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    filters(n_threads=2, sigmas=[1.0]).embed(np.random.default_rng(8).random((40, 40)))
    assert [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"] == before


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
    close_to_rounding(tile[:, h:-h, h:-h], whole[:, 40:80, 40:80])
    g = h - 1  # one pixel less context is not enough
    short = ext.embed(img[40 - g:80 + g, 40 - g:80 + g]).data
    error = np.abs(short[:, g:-g, g:-g] - whole[:, 40:80, 40:80]).max(axis=(1, 2)) / np.ptp(whole, axis=(1, 2))
    assert error.max() > 1e-6  # above float32 rounding (only the tails of the widest kernels are missing)


def test_core_tiling_uses_the_halo_these_sigmas_need():
    img = np.random.default_rng(7).random((150, 140)).astype(np.float32)
    ext = filters(sigmas=[1.0, 6.0], features=["gaussian", "structure_tensor"], tile_shape=96)
    assert ext.options["halo"] == ext.halo > vfm_features.get_spec("filters").halo
    whole = filters(sigmas=[1.0, 6.0], features=["gaussian", "structure_tensor"]).embed(img).data
    close_to_rounding(ext.embed(img).data, whole)  # blocks of the matrix products differ: float rounding only
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
