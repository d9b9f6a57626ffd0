import numpy as np
import pytest

from vfm_features import Embedding, EmbeddingGeometry
from vfm_features.features.aggregate import aggregate_embedding
from vfm_features.errors import InputError


def brute_force(data, mask, stat):
    out = []
    for i in np.unique(mask[mask > 0]):
        v = data[:, mask == i]
        out.append({"mean": v.mean(1), "std": v.std(1), "min": v.min(1), "max": v.max(1)}[stat])
    return np.array(out)


def test_matches_brute_force_across_bands(rng):
    data = rng.random((5, 40, 50)).astype(np.float32)
    mask = rng.integers(0, 7, (40, 50))
    emb = Embedding(data, EmbeddingGeometry((40, 50)))
    feats = aggregate_embedding(emb, mask, stats=("mean", "std", "min", "max"), band_rows=7)
    assert feats.ids.tolist() == list(range(1, 7))
    C = 5
    for k, stat in enumerate(("mean", "std", "min", "max")):
        np.testing.assert_allclose(feats.values[:, k * C:(k + 1) * C], brute_force(data, mask, stat), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(feats.values[:, -1], np.bincount(mask.ravel())[1:])
    assert feats.names[-1] == "area" and feats.names[0] == "mean_0"


def test_low_resolution_embedding_constant_objects():
    # a 4x coarser embedding whose cells are constant per object reads back that constant inside objects
    data = np.zeros((1, 8, 8), np.float32)
    data[0, :4, :4] = 3.0
    emb = Embedding(data, EmbeddingGeometry((32, 32), step=(4.0, 4.0)))
    mask = np.zeros((32, 32), int)
    mask[2:12, 2:12] = 5
    feats = aggregate_embedding(emb, mask, include_area=False)
    assert feats.ids.tolist() == [5]
    np.testing.assert_allclose(feats.values[0, 0], 3.0, rtol=1e-6)


def test_empty_mask_and_bad_input():
    emb = Embedding(np.ones((2, 4, 4), np.float32), EmbeddingGeometry((4, 4)))
    feats = aggregate_embedding(emb, np.zeros((4, 4), int))
    assert feats.values.shape == (0, 3)
    with pytest.raises(InputError, match="negative"):
        aggregate_embedding(emb, -np.ones((4, 4), int))
    with pytest.raises(InputError, match="shape"):
        aggregate_embedding(emb, np.ones((5, 4), int))
    with pytest.raises(InputError, match="stats"):
        aggregate_embedding(emb, np.ones((4, 4), int), stats=("median",))


@pytest.mark.parametrize("stats", [("mean",), ("mean", "std", "min", "max")])
def test_coarse_embedding_means_equal_the_upsampled_map(rng, stats):
    # the sparse-weights mean of the bilinear upsampler equals averaging the upsampled map itself
    from vfm_features.features.upsample import bilinear_dense

    data = rng.standard_normal((6, 9, 11)).astype(np.float32)
    emb = Embedding(data, EmbeddingGeometry((72, 99), step=(8.0, 9.0)))
    mask = np.zeros((72, 99), np.int64)
    mask[3:20, 5:40] = 4
    mask[30:71, 60:98] = 9
    mask[50:52, 2:3] = 2  # a two-pixel object between cell centres
    full = bilinear_dense(emb)
    feats = aggregate_embedding(emb, mask, stats=stats, band_rows=13)
    assert feats.ids.tolist() == [2, 4, 9]
    for k, stat in enumerate(stats):
        np.testing.assert_allclose(feats.values[:, k * 6:(k + 1) * 6], brute_force(full, mask, stat),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(feats.values[:, -1], [2, 17 * 35, 41 * 38])


def test_other_upsamplers_take_the_banded_path(rng, monkeypatch):
    from vfm_features.features import aggregate as agg

    data = rng.standard_normal((3, 6, 6)).astype(np.float32)
    emb = Embedding(data, EmbeddingGeometry((24, 24), step=(4.0, 4.0)))
    mask = rng.integers(0, 4, (24, 24))
    expected = aggregate_embedding(emb, mask)
    monkeypatch.setattr(agg, "bilinear_sums", lambda *a: pytest.fail("only the bilinear upsampler is linear"))
    monkeypatch.setattr(agg, "BilinearUpsampler", type("NotBilinear", (), {}))
    np.testing.assert_allclose(aggregate_embedding(emb, mask).values, expected.values, rtol=1e-5)
