import numpy as np
import pytest

from vfm_features import Embedding, EmbeddingGeometry
from vfm_features.errors import InputError
from vfm_features import get_upsampler
from vfm_features.features.bilinear import BilinearUpsampler
from vfm_features.features.upsample import grid_coords, resize_probabilities


def ramp_embedding(step=4.0, h=8, w=10):
    # value = y + 2x of each cell centre in image coordinates, so bilinear reading is exact inside
    geom = EmbeddingGeometry((int(h * step), int(w * step)), step=(step, step))
    cy = (np.arange(h) + 0.5) * step - 0.5
    cx = (np.arange(w) + 0.5) * step - 0.5
    data = (cy[:, None] + 2 * cx[None, :])[None].astype(np.float32)
    return Embedding(np.concatenate([data, -data]), geom)


def test_sparse_identity_returns_cells():
    data = np.random.default_rng(0).random((3, 5, 6)).astype(np.float32)
    emb = Embedding(data, EmbeddingGeometry((5, 6)))
    coords = np.array([[0, 0], [4, 5], [2, 3]])
    np.testing.assert_array_equal(BilinearUpsampler().sparse(emb, None, coords), data[:, coords[:, 0], coords[:, 1]].T)


def test_sparse_linear_is_exact_inside():
    emb = ramp_embedding()
    coords = np.array([[5.0, 7.0], [10.25, 20.5], [25.0, 30.0]])
    got = BilinearUpsampler().sparse(emb, None, coords)
    np.testing.assert_allclose(got[:, 0], coords[:, 0] + 2 * coords[:, 1], rtol=1e-5)
    np.testing.assert_allclose(got[:, 1], -got[:, 0])


def test_dense_matches_sparse_and_bands():
    emb = ramp_embedding()
    up = BilinearUpsampler()
    dense = up.dense(emb)
    assert dense.shape == (2, 32, 40)
    yy, xx = np.mgrid[0:32, 0:40]
    sparse = up.sparse(emb, None, np.stack([yy.ravel(), xx.ravel()], 1))
    np.testing.assert_allclose(dense.reshape(2, -1).T, sparse, rtol=1e-5, atol=1e-4)
    bands = np.concatenate([up.dense(emb, None, None, slice(r, r + 7)) for r in range(0, 32, 7)], axis=1)
    np.testing.assert_allclose(bands, dense)


def test_dense_on_coarser_grid():
    emb = ramp_embedding()
    out = BilinearUpsampler().dense(emb, None, (16, 20))
    ys, xs = grid_coords(32, 16), grid_coords(40, 20)
    np.testing.assert_allclose(out[0, 5, 5], ys[5] + 2 * xs[5], rtol=1e-5)


def test_bad_coords_and_name():
    with pytest.raises(InputError, match=r"\(N, 2\)"):
        BilinearUpsampler().sparse(ramp_embedding(), None, np.zeros(3))
    with pytest.raises(InputError, match="bilinear"):
        get_upsampler("nearest-ish")


def test_blocks_match_the_whole_grid():
    emb = ramp_embedding()
    up = get_upsampler("bilinear")
    whole = up.dense(emb, None, (24, 30))
    block = up.dense(emb, None, (24, 30), (slice(5, 17), slice(3, 29)))
    np.testing.assert_array_equal(block, whole[:, 5:17, 3:29])


def test_registered_bilinear_has_provenance_and_signature():
    up = get_upsampler("bilinear")
    assert isinstance(up, BilinearUpsampler)
    sig = up.signature()
    assert sig["upsampler"] == "bilinear" and sig["plugin"] == {"distribution": "vfm-features", "version": "1"}
    assert BilinearUpsampler().signature() == sig  # built directly or by the registry: one signature


def test_resize_probabilities_keeps_sums_and_shape():
    proba = np.random.default_rng(0).dirichlet([1, 1, 1], size=(6, 8)).transpose(2, 0, 1).astype(np.float32)
    out = resize_probabilities(proba, (24, 32))
    assert out.shape == (3, 24, 32)
    np.testing.assert_allclose(out.sum(0), 1, rtol=1e-5)
    assert resize_probabilities(proba, (6, 8)) is proba


def _old_dense(emb, out_shape, rows):
    """The dense read before issue 12: two matrix products with interpolation matrices (reference arithmetic)."""
    from vfm_features.features.upsample import interp_matrix

    geom = emb.geometry
    H, W = geom.image_shape
    ys, xs = grid_coords(H, out_shape[0])[rows], grid_coords(W, out_shape[1])
    wy = interp_matrix(geom.cell_coords(np.stack([ys, np.zeros_like(ys)], 1))[:, 0], emb.data.shape[1])
    wx = interp_matrix(geom.cell_coords(np.stack([np.zeros_like(xs), xs], 1))[:, 1], emb.data.shape[2])
    return np.matmul(wy, np.matmul(emb.data, wx.T))


@pytest.mark.parametrize("shape, step, grid", [((12, 20, 17), (16.0, 16.0), (150, 200)),  # coarse, upsampled
                                                ((5, 64, 48), (1.0, 1.0), (30, 20)),  # full resolution, coarser grid
                                                ((3, 9, 7), (4.5, 6.0), (40, 42))])
def test_dense_equals_sparse_bit_for_bit_and_the_old_read(shape, step, grid):
    rng = np.random.default_rng(1)
    C, h, w = shape
    emb = Embedding(rng.standard_normal(shape).astype(np.float32),
                    EmbeddingGeometry((round(h * step[0]), round(w * step[1])), step=step))
    rows = slice(3, grid[0] - 2)
    dense = BilinearUpsampler().dense(emb, None, grid, rows)
    pixel_major = np.moveaxis(dense, 0, -1)
    assert dense.dtype == np.float32 and pixel_major.flags.c_contiguous
    ys = grid_coords(emb.image_shape[0], grid[0])[rows]
    xs = grid_coords(emb.image_shape[1], grid[1])
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    sparse = BilinearUpsampler().sparse(emb, None, np.stack([yy.ravel(), xx.ravel()], 1))
    np.testing.assert_array_equal(pixel_major.reshape(-1, C), sparse)  # same pixels, same arithmetic
    old = _old_dense(emb, grid, rows)
    np.testing.assert_allclose(dense, old, rtol=1e-5, atol=1e-5 * np.abs(old).max())


def test_dense_region_columns_and_empty_regions():
    emb = ramp_embedding()
    up = BilinearUpsampler()
    whole = up.dense(emb, None, (24, 30))
    np.testing.assert_array_equal(up.dense(emb, None, (24, 30), (slice(4, 9), slice(7, 8))), whole[:, 4:9, 7:8])
    assert up.dense(emb, None, (24, 30), (slice(5, 5), slice(None))).shape == (2, 0, 30)


def test_resize_probabilities_matches_the_old_arithmetic():
    proba = np.random.default_rng(2).dirichlet([1, 1, 1, 1], size=(20, 30)).transpose(2, 0, 1).astype(np.float32)
    out = resize_probabilities(proba, (50, 64))
    coarse = Embedding(proba, EmbeddingGeometry((50, 64), step=(50 / 20, 64 / 30)))
    np.testing.assert_allclose(out, _old_dense(coarse, (50, 64), slice(None)), rtol=1e-5, atol=1e-6)
