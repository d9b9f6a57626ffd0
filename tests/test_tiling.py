"""Tiling and stitching in embedding space (vfm_features.features.tiling)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from vfm_features import Embedding, EmbeddingGeometry, ExtractorSpec, FeatureExtractor, InputError
from vfm_features.errors import PluginValidationError
from vfm_features.features.tiling import Tiling, cell_pixels, embed_tiled, plan_tiles, tiling_for


# -- fake extractors --------------------------------------------------------------------------
def _local_features(plane: np.ndarray, patch: int, radius: int = 2) -> np.ndarray:
    """Mirror-pad to whole patches, local mean + local mean of squares, average-pool by ``patch``."""
    x = plane.astype(np.float64)
    h, w = x.shape[:2]
    H, W = -(-h // patch) * patch, -(-w // patch) * patch
    x = np.pad(x, ((0, H - h), (0, W - w), (0, 0)), mode="symmetric")
    size = (2 * radius + 1, 2 * radius + 1, 1)
    feats = np.concatenate([ndimage.uniform_filter(x, size, mode="reflect"),
                            ndimage.uniform_filter(x * x, size, mode="reflect")], axis=-1)
    pooled = feats.reshape(H // patch, patch, W // patch, patch, -1).mean(axis=(1, 3))
    return np.moveaxis(pooled, -1, 0).astype(np.float32)


class LocalPool(FeatureExtractor):
    """Local receptive field (radius 2 px), average-pooled by ``patch_size``; any input size."""

    def n_features_for(self, n_channels: int) -> int:
        return 2 * n_channels

    def _embed_plane(self, plane):
        self.calls = getattr(self, "calls", 0) + 1
        p = self.spec.patch_size
        return Embedding(_local_features(plane, p), EmbeddingGeometry(plane.shape[:2], (p, p)))


class GlobalMean(LocalPool):
    """LocalPool minus the image-wide mean of each channel: global context."""

    def _embed_plane(self, plane):
        emb = super()._embed_plane(plane)
        emb.data -= emb.data.mean(axis=(1, 2), keepdims=True)
        return emb


class ResizingPool(FeatureExtractor):
    """SAM-like: resize the longest side to ``input_size``, zero-pad to a square, pool by 8, crop."""

    def n_features_for(self, n_channels: int) -> int:
        return 2 * n_channels

    def _embed_plane(self, plane):
        size, p = self.spec.input_size, self.spec.patch_size
        h, w = plane.shape[:2]
        scale = size / max(h, w)
        x = plane.astype(np.float64)
        if scale != 1:
            x = ndimage.zoom(x, (scale, scale, 1), order=1)
        rh, rw = x.shape[:2]
        x = np.pad(x, ((0, size - rh), (0, size - rw), (0, 0)))
        emb = _local_features(x, p)[:, : -(-rh // p), : -(-rw // p)]
        return Embedding(emb, EmbeddingGeometry((h, w), (p / scale, p / scale)))


def local(patch=4, halo=4, **options):
    return LocalPool(ExtractorSpec("fake:local", factory=LocalPool, patch_size=patch, halo=halo), **options)


def global_mean(**options):
    spec = ExtractorSpec("fake:global", factory=GlobalMean, patch_size=4, halo=4, global_context=True)
    return GlobalMean(spec, **options)


def resizing(**options):
    spec = ExtractorSpec("fake:resize", factory=ResizingPool, patch_size=8, input_size=64, halo=8)
    return ResizingPool(spec, **options)


def image(shape=(150, 118), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    smooth = np.sin(y / 9.0) * np.cos(x / 13.0) + y / shape[0]
    return (smooth + 0.3 * rng.standard_normal(shape)).astype(np.float32)[..., None]


# -- planning -----------------------------------------------------------------------------------
@pytest.mark.parametrize("image_shape,tile,halo,cell", [
    ((150, 118), 48, 8, 4), ((1000, 333), 256, 16, 16), ((97, 64), 40, 3, 5), ((4096, 4096), 1024, 64, 16),
    ((61, 200), 32, 0, 1), ((50, 50), 64, 8, 4), ((130, 70), (64, 32), (8, 4), (8, 4)),
])
@pytest.mark.parametrize("edge", ["shrink", "pad"])
def test_plan_covers_image_with_aligned_disjoint_cores(image_shape, tile, halo, cell, edge):
    tiling = Tiling(tile, halo)
    tiles = plan_tiles(image_shape, tiling, cell, edge=edge)
    cover = np.zeros(image_shape, dtype=int)
    cells = (cell, cell) if isinstance(cell, int) else cell
    for t in tiles:
        (y0, y1), (x0, x1) = t.core
        cover[y0:y1, x0:x1] += 1
        for ax in range(2):
            L, T, h, c = image_shape[ax], tiling.tile_shape[ax], tiling.halo[ax], cells[ax]
            o, s, p = t.origin[ax], t.shape[ax], t.pad[ax]
            lo, hi = t.core[ax]
            assert o % c == 0 and lo % c == 0 and (hi % c == 0 or hi == L)
            assert s == min(T, L) if edge == "pad" or o + T <= L else s == L - o
            assert 0 <= o and o + s - p <= L and p < c  # inside the image, padded by < one cell
            assert o <= lo < hi <= o + s
            assert lo == 0 or lo - o >= h  # halo of context before the core ...
            assert hi == L or o + s - hi >= h  # ... and after it, except at image borders
    assert (cover == 1).all()


def test_small_image_gets_one_tile():
    (t,) = plan_tiles((50, 40), Tiling(64, 8), 4)
    assert t.origin == (0, 0) and t.shape == (50, 40) and t.core == ((0, 50), (0, 40))


def test_tiling_validates_its_arguments():
    assert Tiling(64, 8) == Tiling((64, 64), (8, 8))
    with pytest.raises(InputError, match="tile_shape"):
        Tiling("big")
    with pytest.raises(InputError, match="halo must be >= 0"):
        Tiling(64, -1)
    with pytest.raises(InputError, match="too small for a halo"):
        plan_tiles((200, 200), Tiling(32, 16), 16)


def test_cell_pixels_for_fractional_steps():
    assert cell_pixels(16.0) == 16
    assert cell_pixels(4.0) == 4
    assert cell_pixels(15.625) == 125  # 1000-px tiles resized to 1024: 8 cells = 125 px
    assert cell_pixels(8 / 3) == 8


# -- stitching ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(150, 118), (128, 96), (101, 77)])
def test_tiled_equals_untiled_for_a_local_extractor(shape):
    img = image(shape)
    whole = local().embed(img)
    tiled = local(tile_shape=48, halo=4).embed(img)
    assert tiled.data.shape == whole.data.shape == (2, -(-shape[0] // 4), -(-shape[1] // 4))
    assert tiled.geometry == EmbeddingGeometry(shape, (4.0, 4.0), (0.0, 0.0))
    assert tiled.meta["tiling"]["n_tiles"] > 4
    np.testing.assert_allclose(tiled.data, whole.data, rtol=1e-5, atol=1e-5)


def test_without_halo_only_cells_at_tile_borders_differ():
    img = image((150, 118))
    whole = local().embed(img).data
    tiled = local(tile_shape=48, halo=0).embed(img).data
    bad = np.abs(tiled - whole).max(axis=0) > 1e-5
    assert bad.any()
    near_border = np.zeros_like(bad)
    for t in plan_tiles((150, 118), Tiling(48, 0), 4):
        for ax in range(2):
            for b in t.core[ax]:
                idx = [slice(None), slice(None)]
                idx[ax] = slice(max(b // 4 - 1, 0), b // 4 + 1)
                near_border[tuple(idx)] = True
    assert not (bad & ~near_border).any()


def test_global_context_extractor_differs_and_warns():
    img = image((192, 192))
    whole = global_mean().embed(img).data
    with pytest.warns(UserWarning, match="global context"):
        tiled = global_mean(tile_shape=64, halo=8).embed(img).data
    diff = np.abs(tiled - whole) / whole.std(axis=(1, 2), keepdims=True)
    # Each tile subtracts its own mean instead of the image's: an offset per tile, everywhere.
    assert np.median(diff) > 0.05
    local_diff = np.abs(local(tile_shape=64, halo=8).embed(img).data - local().embed(img).data)
    assert local_diff.max() < 1e-5


def test_resizing_model_keeps_native_scale_on_a_large_image():
    img = image((150, 100))
    ex = resizing(tile_shape=64)  # tile = input size: no resize, step 8 everywhere
    emb = ex.embed(img)
    assert emb.geometry.step == (8.0, 8.0)
    assert emb.data.shape == (2, 19, 13)
    # Native scale: the same as pooling the whole image by 8 without a model input size.
    np.testing.assert_allclose(emb.data, local(patch=8).embed(img).data, rtol=1e-5, atol=1e-5)
    untiled = resizing().embed(img)  # the whole image shrunk to 64 px
    assert untiled.geometry.step[0] == pytest.approx(150 / 8)


def test_resized_tiles_with_a_fractional_step_are_aligned():
    img = image((200, 170))
    emb = resizing(tile_shape=48, halo=8).embed(img)  # 48 px -> 64: step 6
    assert emb.geometry.step == (6.0, 6.0)
    assert emb.data.shape == (2, -(-200 // 6), -(-170 // 6))
    assert np.isfinite(emb.data).all()


def test_progress_callback_and_hook_defaults():
    calls = []
    ex = local(tile_shape=48)
    assert tiling_for(ex) == Tiling(48, 4)  # halo from the spec
    assert tiling_for(local()) is None
    emb = ex.embed_plane(image((150, 118)), progress=lambda i, n: calls.append((i, n)))
    n = emb.meta["tiling"]["n_tiles"]
    assert calls == [(i, n) for i in range(1, n + 1)]
    assert ex.calls == n
    assert emb.extractor == "fake:local"


def test_image_smaller_than_a_tile_is_embedded_once():
    ex = local(tile_shape=256)
    emb = ex.embed(image((100, 90)))
    assert ex.calls == 1 and "tiling" not in emb.meta
    np.testing.assert_array_equal(emb.data, local().embed(image((100, 90))).data)


def test_inconsistent_tile_steps_are_refused():
    class Wobbly(LocalPool):
        def _embed_plane(self, plane):
            emb = super()._embed_plane(plane)
            self.n = getattr(self, "n", 0) + 1
            step = (4.0, 4.0) if self.n == 1 else (2.0, 2.0)
            return Embedding(emb.data, EmbeddingGeometry(plane.shape[:2], step))

    ex = Wobbly(ExtractorSpec("fake:wobbly", factory=Wobbly, patch_size=4), tile_shape=48)
    with pytest.raises(PluginValidationError, match="step"):
        ex.embed(image((150, 118)))


def test_embed_tiled_refuses_a_wrong_geometry():
    class Liar(LocalPool):
        def _embed_plane(self, plane):
            emb = super()._embed_plane(plane)
            return Embedding(emb.data, EmbeddingGeometry((1, 1), (4, 4)))

    ex = Liar(ExtractorSpec("fake:liar", factory=Liar, patch_size=4))
    with pytest.raises(PluginValidationError, match="image_shape"):
        embed_tiled(ex, image((150, 118)), Tiling(48, 4))


# -- stacks ---------------------------------------------------------------------------------
def test_stack_gives_one_embedding_per_slice():
    stack = np.stack([image((100, 90), seed=s)[..., 0] for s in range(3)])
    for ex in (local(), local(tile_shape=48, halo=4)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            embs = ex.embed_stack(stack, axes="ZYX")
        assert len(embs) == 3
        for z, emb in enumerate(embs):
            assert emb.geometry.image_shape == (100, 90)
            np.testing.assert_allclose(emb.data, local().embed(stack[z]).data, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="embed_stack"):
        local().embed(stack, axes="ZYX")


def test_shortened_last_tile_of_a_resizing_model_is_padded_instead():
    class Stretch(LocalPool):  # stretches any input to 64 x 64 but declares no input size
        def _embed_plane(self, plane):
            self.calls = getattr(self, "calls", 0) + 1
            h, w = plane.shape[:2]
            x = plane if (h, w) == (64, 64) else ndimage.zoom(plane, (64 / h, 64 / w, 1), order=1)
            return Embedding(_local_features(x, 8), EmbeddingGeometry((h, w), (8 * h / 64, 8 * w / 64)))

    img = image((150, 100))  # the last 64-px tiles would be 62 and 60 px: other steps
    ex = Stretch(ExtractorSpec("fake:stretch", factory=Stretch, patch_size=8, halo=8), tile_shape=64)
    emb = ex.embed(img)
    n = emb.meta["tiling"]["n_tiles"]
    rows, cols = 3, 2  # origins 0, 48, 88 (y) and 0, 40 (x)
    assert n == rows * cols and ex.calls == n + rows + cols - 1  # every shortened tile embedded twice
    assert emb.geometry.step == (8.0, 8.0)
    np.testing.assert_allclose(emb.data, local(patch=8).embed(img).data, rtol=1e-5, atol=1e-5)


def test_extractor_that_drops_partial_cells_is_matched():
    class Floor(LocalPool):
        def _embed_plane(self, plane):
            h, w = (s // 4 * 4 for s in plane.shape[:2])
            emb = super()._embed_plane(plane[:h, :w])
            return Embedding(emb.data, EmbeddingGeometry(plane.shape[:2], (4.0, 4.0)))

    spec = ExtractorSpec("fake:floor", factory=Floor, patch_size=4, halo=4)
    img = image((101, 77))
    whole = Floor(spec).embed(img)
    tiled = Floor(spec, tile_shape=48).embed(img)
    assert tiled.data.shape == whole.data.shape == (2, 25, 19)
    np.testing.assert_allclose(tiled.data, whole.data, rtol=1e-5, atol=1e-5)
