"""The filter bank's two backends: numba (compiled streaming passes) and numpy compute the same features.

Definitions are tested once per backend in test_filters.py; here: the backends agree
with each other on awkward inputs, the compiled one gives the same bits for any band
split and thread count, and the option is checked, resolved and kept out of signatures.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import vfm_features
from vfm_features import InputError

pytest.importorskip("numba")
from vfm_features_filters import backends, stream  # noqa: E402

if backends.compiled_problem() is not None:
    pytest.skip(f"the compiled filters do not work here: {backends.compiled_problem()}", allow_module_level=True)

FILTERS = ("gaussian", "log", "gradient_magnitude", "dog", "structure_tensor", "hessian")


def assert_backends_agree(image, **options):
    compiled = vfm_features.get_extractor("filters", backend="numba", **options)
    plain = vfm_features.get_extractor("filters", backend="numpy", **options)
    a, b = compiled.embed(image).data, plain.embed(image).data
    assert a.shape == b.shape and a.dtype == np.float32
    # float32 rounding: relative to each feature's values, and to the image's (squared for the tensor,
    # a product of gradients) where a feature is flat (tiny images, large sigmas)
    top = float(np.abs(np.asarray(image, dtype=np.float64)).max())
    for name, x, y in zip(plain.feature_names(np.shape(image)[2] if np.ndim(image) == 3 else 1), a, b):
        floor = top * top if "structure_tensor" in name else top
        tolerance = 1e-5 * (np.ptp(y) + np.abs(y).max() + floor)
        assert np.abs(x - y).max() <= tolerance, (name, float(np.abs(x - y).max()), tolerance)


def embed(image, **options):
    return vfm_features.get_extractor("filters", **options).embed(image).data


@pytest.mark.parametrize("shape", [(2, 2), (2, 17), (17, 2), (3, 50), (50, 3), (37, 41), (130, 67)])
def test_backends_agree_on_odd_and_tiny_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    assert_backends_agree((rng.random(shape) * 300).astype(np.float32), sigmas=(0.3, 0.5, 1.0, 4.0, 10.0))


@pytest.mark.parametrize("features", [("gaussian",), ("structure_tensor",), ("hessian", "dog"),
                                      ("gradient_magnitude", "structure_tensor"), ("log", "gaussian"), FILTERS])
def test_backends_agree_on_every_subset_and_order(features):
    image = np.random.default_rng(1).random((40, 52)).astype(np.float32)
    assert_backends_agree(image, features=features, sigmas=(0.7, 2.0))


def test_backends_agree_on_multichannel_integer_and_strided_inputs():
    rng = np.random.default_rng(2)
    rgb = (rng.random((30, 44, 3)) * 255).astype(np.uint8)
    assert_backends_agree(rgb, sigmas=(1.0, 3.5))
    wide = rng.random((40, 90)).astype(np.float64)
    assert_backends_agree(wide[::2, ::3], sigmas=(1.0,))  # non-contiguous float64 view


def test_compiled_bands_give_the_same_bits_for_any_split_and_thread_count(monkeypatch):
    image = (np.random.default_rng(3).random((203, 70)) * 50).astype(np.float32)
    whole = embed(image, backend="numba", n_threads=1)
    monkeypatch.setattr(stream, "MIN_BAND_ROWS", 5)
    for n_threads in (2, 3, 7):
        np.testing.assert_array_equal(embed(image, backend="numba", n_threads=n_threads), whole)


def test_bands_narrower_than_their_context_read_only_what_they_wrote(monkeypatch):
    # bands of 2-3 rows, thinner than the rows of context each needs (up to 22 at sigma 4), on
    # scratch buffers that start as NaN: any read of a row or column not written would show
    image = (np.random.default_rng(6).random((40, 33)) * 9).astype(np.float32)
    whole = embed(image, backend="numba", n_threads=1)
    monkeypatch.setattr(stream, "MIN_BAND_ROWS", 1)
    assert max(y1 - y0 for y0, y1 in stream.bands(40, 7)) <= 3
    made = stream.Scratch.__init__

    def poisoned(self, *args):
        made(self, *args)
        for buffer in self.arguments():
            buffer.fill(np.nan)

    monkeypatch.setattr(stream.Scratch, "__init__", poisoned)
    np.testing.assert_array_equal(embed(image, backend="numba", n_threads=7), whole)


def test_read_only_and_strided_inputs_use_the_one_compiled_version():
    from vfm_features_filters.compiled import scale_band

    image = np.random.default_rng(7).random((30, 40)).astype(np.float32)
    frozen = image.copy()
    frozen.setflags(write=False)
    expected = embed(image, backend="numba")
    np.testing.assert_array_equal(embed(frozen, backend="numba"), expected)
    np.testing.assert_array_equal(embed(np.asfortranarray(image), backend="numba"), expected)
    assert len(scale_band.signatures) == 1  # no second compilation (about 20 s) for other array types


def test_compiled_bands_cover_every_row_once():
    for height in (1, 5, 64, 129, 1000):
        for n_threads in (1, 2, 3):
            rows = [y for y0, y1 in stream.bands(height, n_threads) for y in range(y0, y1)]
            assert rows == list(range(height))


def test_filter_plane_fills_only_the_planned_slots():
    image = np.random.default_rng(4).random((33, 35)).astype(np.float32)
    plans = [stream.ScalePlan(1.0, ("dog", "hessian"), lambda name: {"dog": range(3, 4), "hessian": range(0, 2)}[name])]
    out = np.full((5, 33, 35), np.nan, dtype=np.float32)
    with ThreadPoolExecutor(2) as pool:
        stream.filter_plane(image, plans, out, pool, 2)
    assert np.isfinite(out[[0, 1, 3]]).all() and np.isnan(out[[2, 4]]).all()


def test_backend_option_is_checked_and_resolved(monkeypatch):
    with pytest.raises(InputError, match="backend='fortran' is unknown"):
        vfm_features.get_extractor("filters", backend="fortran")
    assert vfm_features.get_extractor("filters").backend == "numba"
    assert vfm_features.get_extractor("filters", backend="numpy").backend == "numpy"
    monkeypatch.setattr(backends, "numba_installed", lambda: False)
    assert vfm_features.get_extractor("filters").backend == "numpy"  # auto falls back where numba is missing
    with pytest.raises(InputError, match=r"vfm-features\[fast\]"):
        vfm_features.get_extractor("filters", backend="numba")


def test_the_load_check_reports_a_numba_that_does_not_import(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    monkeypatch.delitem(sys.modules, "vfm_features_filters.compiled")
    backends.compiled_problem.cache_clear()
    try:
        assert "import of numba halted" in backends.compiled_problem()  # ModuleNotFoundError: an ImportError
    finally:
        backends.compiled_problem.cache_clear()


def test_a_numba_that_does_not_load_falls_back_to_numpy_or_says_why(monkeypatch):
    monkeypatch.setattr(backends, "compiled_problem", lambda: "ImportError: Numba needs NumPy 2.3 or less")
    backends._warn_once.cache_clear()
    image = np.random.default_rng(5).random((20, 24)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="the filters use numpy"):
        data = embed(image)
    np.testing.assert_array_equal(data, embed(image, backend="numpy"))
    with pytest.raises(InputError, match="do not load here .*NumPy 2.3"):
        vfm_features.get_extractor("filters", backend="numba").embed(image)
    backends._warn_once.cache_clear()


def test_backend_changes_neither_signature_nor_saved_options():
    compiled = vfm_features.get_extractor("filters", backend="numba", n_threads=1)
    plain = vfm_features.get_extractor("filters", backend="numpy", n_threads=2)
    assert compiled.signature() == plain.signature()
    assert "backend" not in compiled.saved_options() and "n_threads" not in compiled.saved_options()


def test_the_first_compile_on_a_machine_is_announced_once(tmp_path, monkeypatch, caplog):
    class Kernel:  # numba's cache index of a kernel that has not been compiled here yet
        class _cache:
            class _cache_file:
                _index_path = str(tmp_path / "compiled.scale_band-1.py311.nbi")

    monkeypatch.setattr(stream, "_announced", stream.threading.Event())
    with caplog.at_level("WARNING", logger="vfm_features_filters.stream"):
        stream.announce_first_compile(Kernel)
        stream.announce_first_compile(Kernel)
    assert [r.getMessage() for r in caplog.records] == [
        f"Compiling the filter bank for this machine (numba, once: about 20 s); later runs load it from {tmp_path}."]
    caplog.clear()
    monkeypatch.setattr(stream, "_announced", stream.threading.Event())
    (tmp_path / "compiled.scale_band-1.py311.nbi").write_bytes(b"")
    with caplog.at_level("WARNING", logger="vfm_features_filters.stream"):
        stream.announce_first_compile(Kernel)  # cached: nothing to say
    assert not caplog.records
