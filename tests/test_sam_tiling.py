"""Tiled SAM embeddings: intensities scaled once per image, tiles stitched on the 16-px grid."""

import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore:.*global context")

pytest.importorskip("segment_anything")

from vfm_features import get_extractor  # noqa: E402
from vfm_features_sam import SamArchitecture  # noqa: E402

TINY = SamArchitecture("tiny", embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,),
                       img_size=128, window_size=4)


def sam(**options):
    return get_extractor("sam:vit_b", architecture=TINY, pretrained=False, **options)


def test_tiled_embedding_covers_a_large_image_at_native_scale():
    rng = np.random.default_rng(0)
    image = (rng.random((300, 260)) * 4000).astype(np.uint16)
    tiled = sam(tile_shape=128, halo=32).embed(image)
    assert tiled.geometry.step == (1.0 * 16, 1.0 * 16) or np.allclose(tiled.geometry.step, 16)
    assert tiled.data.shape == (256, int(np.ceil(300 / 16)), int(np.ceil(260 / 16)))
    assert np.isfinite(tiled.data).all()
    whole = sam().embed(image)  # untiled: resized to 128 -> 8x8 cells
    assert whole.data.shape[1:] == (8, 7)


def test_tiles_share_one_intensity_scaling():
    # a tile that holds only the dim half would be stretched by a per-tile min-max;
    # the plane is prepared (scaled to 0..1) once, so the dim half stays dim in every tile
    ext = sam(tile_shape=128, halo=32)
    image = np.zeros((256, 256), np.uint16)
    image[:, :128] = 100 + np.arange(256)[:, None]  # 100..355
    image[:, 128:] = 1000
    seen = []
    original = ext.embed_prepared

    def spy(tiles):
        seen.extend(float(t[..., 0].max()) for t in tiles)
        return original(tiles)

    ext.embed_prepared = spy
    ext.embed(image)
    assert max(seen) == pytest.approx(1.0)
    # a tile inside the dim half keeps the image's scaling (at most 355 -> 0.28), not its own (-> 1)
    assert min(seen) < 255 / 900 + 0.004


def test_stack_with_tiling_embeds_every_slice():
    image = np.random.default_rng(1).random((2, 200, 140)).astype(np.float32)
    embs = sam(tile_shape=128, halo=32).embed_stack(image, axes="ZYX")
    assert len(embs) == 2 and embs[0].data.shape[1:] == (13, 9)


def test_missing_mps_operation_falls_back_to_cpu_with_a_warning():
    import torch

    ext = sam()
    calls = []

    class FakeMPS(torch.nn.Module):
        """Raises like a missing MPS kernel while 'on mps', then works on the CPU."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))
            self.on_mps = True

        def forward(self, x):
            calls.append(self.on_mps)
            if self.on_mps:
                raise NotImplementedError("The operator 'aten::foo' is not currently implemented for the MPS device.")
            return x * self.w

        def to(self, *args, **kwargs):
            self.on_mps = False
            return super().to(*args, **kwargs)

    backend = ext.backend()
    backend._model, backend._device = FakeMPS(), "mps"  # as if loaded on an MPS device
    with pytest.warns(RuntimeWarning, match="MPS"):
        out = backend._forward(torch.ones(2))
    # the model is copied to the CPU once and runs there; the device model is kept as it is
    assert calls == [True, False] and out.tolist() == [1.0, 1.0]
    assert backend._cpu_model is not backend._model and backend._model.on_mps
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # later calls run on the CPU without warning again
        backend._forward(torch.ones(2))
    assert calls == [True, False, False]
    other = sam().backend()
    other._model, other._device = FakeMPS(), "cpu"
    with pytest.raises(NotImplementedError):  # on other devices the error is not hidden
        other._forward(torch.ones(1))


def test_tiles_are_batched_and_give_the_same_embedding():
    image = (np.random.default_rng(2).random((300, 260)) * 255).astype(np.uint8)
    one = sam(tile_shape=128, halo=32, batch_size=1)
    many = sam(tile_shape=128, halo=32, batch_size=4)
    sizes = []
    original = many.embed_prepared
    many.embed_prepared = lambda tiles: (sizes.append(len(tiles)), original(tiles))[1]
    a, b = one.embed(image), many.embed(image)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-4, atol=1e-4)
    assert max(sizes) == 4 and sum(sizes) == a.meta["tiling"]["n_tiles"]
