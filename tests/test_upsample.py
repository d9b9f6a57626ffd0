import numpy as np
import pytest

from vfm_features import Embedding, EmbeddingGeometry
from vfm_features.errors import InputError
from vfm_features.features.upsample import BilinearUpsampler, get_upsampler, grid_coords


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
    np.testing.assert_array_equal(BilinearUpsampler().sparse(emb, coords), data[:, coords[:, 0], coords[:, 1]].T)


def test_sparse_linear_is_exact_inside():
    emb = ramp_embedding()
    coords = np.array([[5.0, 7.0], [10.25, 20.5], [25.0, 30.0]])
    got = BilinearUpsampler().sparse(emb, coords)
    np.testing.assert_allclose(got[:, 0], coords[:, 0] + 2 * coords[:, 1], rtol=1e-5)
    np.testing.assert_allclose(got[:, 1], -got[:, 0])


def test_dense_matches_sparse_and_bands():
    emb = ramp_embedding()
    up = BilinearUpsampler()
    dense = up.dense(emb)
    assert dense.shape == (2, 32, 40)
    yy, xx = np.mgrid[0:32, 0:40]
    sparse = up.sparse(emb, np.stack([yy.ravel(), xx.ravel()], 1))
    np.testing.assert_allclose(dense.reshape(2, -1).T, sparse, rtol=1e-5, atol=1e-4)
    bands = np.concatenate([up.dense(emb, rows=slice(r, r + 7)) for r in range(0, 32, 7)], axis=1)
    np.testing.assert_allclose(bands, dense)


def test_dense_on_coarser_grid():
    emb = ramp_embedding()
    out = BilinearUpsampler().dense(emb, (16, 20))
    ys, xs = grid_coords(32, 16), grid_coords(40, 20)
    np.testing.assert_allclose(out[0, 5, 5], ys[5] + 2 * xs[5], rtol=1e-5)


def test_bad_coords_and_name():
    with pytest.raises(InputError, match=r"\(N, 2\)"):
        BilinearUpsampler().sparse(ramp_embedding(), np.zeros(3))
    with pytest.raises(InputError, match="bilinear"):
        get_upsampler("nearest-ish")
