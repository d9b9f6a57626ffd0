"""The anyup upsampler: the authors' parameter names, their forward pass, sparse = dense, chunks, regions, files.

The expected parameter names and shapes below were read from the authors'
``anyup/model.py`` (wimmerth/anyup, ``AnyUp()`` with its defaults); a checkpoint
written with exactly these names loads. ``naive_anyup`` is a plain, whole-image
transcription of the published forward pass (full-resolution GroupNorm, a
query x cell window mask, multi-head attention weights averaged over heads and
applied to the features): the chunked, sparse implementation must agree with it.
No test touches the network: the weights cache is a temporary folder, offline.
"""

from __future__ import annotations

import pickle
import sys
import threading
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import vfm_features as vf  # noqa: E402
from vfm_features import (  # noqa: E402
    Embedding,
    EmbeddingGeometry,
    ExtractorMismatchError,
    ExtractorSpec,
    FeatureExtractor,
    InputError,
    WeightsError,
    hookimpl,
)

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore:The anyup upsampler runs with random weights")]

EXPECTED = [  # (name, shape) of every tensor of the authors' AnyUp() state dict, in their order
    ('image_encoder.0.weight', (128, 3, 1, 1)),
    ('image_encoder.1.block.0.weight', (128,)),
    ('image_encoder.1.block.0.bias', (128,)),
    ('image_encoder.1.block.2.weight', (128, 128, 1, 1)),
    ('image_encoder.1.block.3.weight', (128,)),
    ('image_encoder.1.block.3.bias', (128,)),
    ('image_encoder.1.block.5.weight', (128, 128, 1, 1)),
    ('image_encoder.2.block.0.weight', (128,)),
    ('image_encoder.2.block.0.bias', (128,)),
    ('image_encoder.2.block.2.weight', (128, 128, 1, 1)),
    ('image_encoder.2.block.3.weight', (128,)),
    ('image_encoder.2.block.3.bias', (128,)),
    ('image_encoder.2.block.5.weight', (128, 128, 1, 1)),
    ('key_encoder.0.weight', (128, 128, 1, 1)),
    ('key_encoder.1.block.0.weight', (128,)),
    ('key_encoder.1.block.0.bias', (128,)),
    ('key_encoder.1.block.2.weight', (128, 128, 1, 1)),
    ('key_encoder.1.block.3.weight', (128,)),
    ('key_encoder.1.block.3.bias', (128,)),
    ('key_encoder.1.block.5.weight', (128, 128, 1, 1)),
    ('key_encoder.2.block.0.weight', (128,)),
    ('key_encoder.2.block.0.bias', (128,)),
    ('key_encoder.2.block.2.weight', (128, 128, 1, 1)),
    ('key_encoder.2.block.3.weight', (128,)),
    ('key_encoder.2.block.3.bias', (128,)),
    ('key_encoder.2.block.5.weight', (128, 128, 1, 1)),
    ('query_encoder.0.weight', (128, 128, 1, 1)),
    ('query_encoder.1.block.0.weight', (128,)),
    ('query_encoder.1.block.0.bias', (128,)),
    ('query_encoder.1.block.2.weight', (128, 128, 1, 1)),
    ('query_encoder.1.block.3.weight', (128,)),
    ('query_encoder.1.block.3.bias', (128,)),
    ('query_encoder.1.block.5.weight', (128, 128, 1, 1)),
    ('query_encoder.2.block.0.weight', (128,)),
    ('query_encoder.2.block.0.bias', (128,)),
    ('query_encoder.2.block.2.weight', (128, 128, 1, 1)),
    ('query_encoder.2.block.3.weight', (128,)),
    ('query_encoder.2.block.3.bias', (128,)),
    ('query_encoder.2.block.5.weight', (128, 128, 1, 1)),
    ('key_features_encoder.0.basis', (128, 1, 5, 5)),
    ('key_features_encoder.1.block.0.weight', (128,)),
    ('key_features_encoder.1.block.0.bias', (128,)),
    ('key_features_encoder.1.block.2.weight', (128, 128, 1, 1)),
    ('key_features_encoder.1.block.3.weight', (128,)),
    ('key_features_encoder.1.block.3.bias', (128,)),
    ('key_features_encoder.1.block.5.weight', (128, 128, 1, 1)),
    ('key_features_encoder.2.block.0.weight', (128,)),
    ('key_features_encoder.2.block.0.bias', (128,)),
    ('key_features_encoder.2.block.2.weight', (128, 128, 1, 1)),
    ('key_features_encoder.2.block.3.weight', (128,)),
    ('key_features_encoder.2.block.3.bias', (128,)),
    ('key_features_encoder.2.block.5.weight', (128, 128, 1, 1)),
    ('cross_decode.cross_attn.norm_q.weight', (128,)),
    ('cross_decode.cross_attn.norm_k.weight', (128,)),
    ('cross_decode.cross_attn.attention.in_proj_weight', (384, 128)),
    ('cross_decode.cross_attn.attention.in_proj_bias', (384,)),
    ('cross_decode.cross_attn.attention.out_proj.weight', (128, 128)),
    ('cross_decode.cross_attn.attention.out_proj.bias', (128,)),
    ('cross_decode.conv2d.weight', (128, 128, 3, 3)),
    ('aggregation.0.weight', (128, 256, 3, 3)),
    ('aggregation.1.block.0.weight', (128,)),
    ('aggregation.1.block.0.bias', (128,)),
    ('aggregation.1.block.2.weight', (128, 128, 1, 1)),
    ('aggregation.1.block.3.weight', (128,)),
    ('aggregation.1.block.3.bias', (128,)),
    ('aggregation.1.block.5.weight', (128, 128, 1, 1)),
    ('aggregation.2.block.0.weight', (128,)),
    ('aggregation.2.block.0.bias', (128,)),
    ('aggregation.2.block.2.weight', (128, 128, 1, 1)),
    ('aggregation.2.block.3.weight', (128,)),
    ('aggregation.2.block.3.bias', (128,)),
    ('aggregation.2.block.5.weight', (128, 128, 1, 1)),
    ('rope.freqs', (2, 128)),

]


# -- a low-resolution extractor for the tests (block means and standard deviations) ------------------------------
class Blocks(FeatureExtractor):
    def __init__(self, spec, *, size: int = 8, tile_shape=None, halo=None):
        super().__init__(spec, size=size)

    def n_features_for(self, n_channels):
        return 2 * n_channels

    def _embed_plane(self, plane):
        s = self.options["size"]
        h, w = plane.shape[0] // s, plane.shape[1] // s
        x = plane[: s * h, : s * w].astype(np.float32).reshape(h, s, w, s, -1)
        data = np.concatenate([x.mean((1, 3)), x.std((1, 3))], axis=-1)
        return Embedding(np.ascontiguousarray(np.moveaxis(data, -1, 0)),
                         EmbeddingGeometry(plane.shape[:2], step=(s, s)))


@hookimpl
def vfm_features_extractors():
    return [ExtractorSpec("anyuptest:blocks", factory=Blocks, default=True, patch_size=8, options={"size": 8})]


@pytest.fixture(scope="module", autouse=True)
def blocks_plugin():
    vf.register_plugin(sys.modules[__name__], name="anyuptest")
    yield
    vf.unregister_plugin("anyuptest")


@pytest.fixture(autouse=True)
def offline_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("VFM_FEATURES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VFM_FEATURES_OFFLINE", "1")


def random_upsampler(**options):
    return vf.get_upsampler("anyup", pretrained=False, device="cpu", **options)


def case(H=40, W=52, h=5, w=7, C=6, seed=0, step=None):
    """A uint16 image with a bright rectangle and a (C, h, w) embedding whose cells span it (or ``step``)."""
    rng = np.random.default_rng(seed)
    image = (rng.random((H, W, 1)) * 500).astype(np.uint16)
    image[H // 4:H // 2, W // 3:2 * W // 3] += 2000
    feats = rng.standard_normal((C, h, w)).astype(np.float32)
    step = step or (H / h, W / w)
    return image, Embedding(feats, EmbeddingGeometry((H, W), step=step))


def close(a, b, scale=None):
    scale = float(np.abs(b).max()) if scale is None else scale
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-6 * max(scale, 1.0))


# -- the reference: the published forward pass, whole image at once ------------------------------------------
def naive_anyup(state, guide, feats, out_size):
    import torch.nn.functional as F

    P = {k: v.float() for k, v in state.items()}
    H, W = guide.shape[:2]
    C, h, w = feats.shape

    def blocks(x, prefix):
        for i in (1, 2):
            p = f"{prefix}.{i}.block"
            y = F.conv2d(F.silu(F.group_norm(x, 8, P[p + ".0.weight"], P[p + ".0.bias"], 1e-5)), P[p + ".2.weight"])
            y = F.conv2d(F.silu(F.group_norm(y, 8, P[p + ".3.weight"], P[p + ".3.bias"], 1e-5)), P[p + ".5.weight"])
            x = x + y
        return x

    enc = blocks(F.conv2d(torch.as_tensor(guide).permute(2, 0, 1)[None], P["image_encoder.0.weight"]), "image_encoder")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    angle = yy[..., None] * P["rope.freqs"][0] + xx[..., None] * P["rope.freqs"][1]
    e = enc[0].permute(1, 2, 0)
    e = e * torch.cos(angle) + torch.cat([-e[..., 64:], e[..., :64]], -1) * torch.sin(angle)
    enc = e.permute(2, 0, 1)[None]
    q = F.adaptive_avg_pool2d(blocks(F.conv2d(enc, P["query_encoder.0.weight"]), "query_encoder"), out_size)
    k = F.adaptive_avg_pool2d(blocks(F.conv2d(enc, P["key_encoder.0.weight"]), "key_encoder"), (h, w))
    f = F.normalize(torch.as_tensor(feats)[None], dim=1)
    resp = F.conv2d(F.pad(f, (2, 2, 2, 2)), P["key_features_encoder.0.basis"].repeat(C, 1, 1, 1), groups=C)
    count = F.conv2d(F.pad(torch.ones(1, 1, h, w), (2, 2, 2, 2)), torch.ones(1, 1, 5, 5))
    unified = F.softmax((resp / count).view(1, 128, C, h, w), dim=1).mean(dim=2)
    k = torch.cat([k, blocks(unified, "key_features_encoder")], dim=1)
    k = blocks(F.conv2d(F.pad(k, (1, 1, 1, 1), mode="reflect"), P["aggregation.0.weight"]), "aggregation")
    q = F.conv2d(q, P["cross_decode.conv2d.weight"], padding=1)
    q = F.rms_norm(q[0].permute(1, 2, 0).reshape(-1, 128), (128,), P["cross_decode.cross_attn.norm_q.weight"])
    k = F.rms_norm(k[0].permute(1, 2, 0).reshape(-1, 128), (128,), P["cross_decode.cross_attn.norm_k.weight"])
    wq, wk, _ = P["cross_decode.cross_attn.attention.in_proj_weight"].chunk(3)
    bq, bk, _ = P["cross_decode.cross_attn.attention.in_proj_bias"].chunk(3)
    qh = (q @ wq.T + bq).view(-1, 4, 32).transpose(0, 1) * (1 / 32) ** 0.5
    kh = (k @ wk.T + bk).view(-1, 4, 32).transpose(0, 1)
    Ho, Wo = out_size

    def allowed(n_out, n_cells):
        pos = (torch.arange(n_out, dtype=torch.float32) + 0.5) / n_out
        lo = ((pos - 0.1).clamp(0, 1) * n_cells).floor()
        hi = ((pos + 0.1).clamp(0, 1) * n_cells).ceil()
        cells = torch.arange(n_cells)
        return (cells >= lo[:, None]) & (cells < hi[:, None])

    mask = (allowed(Ho, h)[:, None, :, None] & allowed(Wo, w)[None, :, None, :]).reshape(Ho * Wo, h * w)
    weights = torch.softmax((qh @ kh.transpose(1, 2)).masked_fill(~mask, float("-inf")), -1).mean(0)
    out = weights @ torch.as_tensor(feats).reshape(C, -1).T
    return out.T.reshape(C, Ho, Wo).numpy()


def _guide(image):
    from vfm_features_anyup._guidance import guidance

    return guidance(image, "sum", "auto")


# -- the checkpoint ------------------------------------------------------------------------------------------
def test_the_network_has_exactly_the_authors_parameter_names_and_shapes():
    from vfm_features_anyup._network import build_network

    state = build_network(0).state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == EXPECTED
    assert sum(v.numel() for v in state.values()) == 878_080  # "about 0.9 M parameters"


def test_a_checkpoint_with_the_authors_names_loads_and_is_used(tmp_path):
    gen = torch.Generator().manual_seed(7)
    state = {name: torch.randn(shape, generator=gen) * 0.1 for name, shape in EXPECTED}
    state["rope.freqs"] = torch.randn(2, 128, generator=gen)
    path = tmp_path / "anyup_like.pth"
    torch.save(state, path)
    up = vf.get_upsampler("anyup", weights=path, device="cpu")
    image, emb = case()
    got = up.dense(emb, image)
    close(got, naive_anyup(state, _guide(image), emb.data, image.shape[:2]))
    from vfm_features.models.weights import file_hash

    assert up.weights_hash == "sha256:" + file_hash(path, "sha256")
    assert up.signature()["weights_hash"] == up.weights_hash and "weights" not in up.saved_options()


def test_random_weights_warn_that_features_are_meaningless():
    from vfm_features_anyup._upsampler import RandomWeightsWarning

    image, emb = case()
    up = vf.get_upsampler("anyup", pretrained=False, device="cpu")
    with pytest.warns(RandomWeightsWarning, match="meaningless"):
        up.load()
    assert up.weights_hash == "random-init:seed=0"


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.pop("rope.freqs"), r"missing \(rope.freqs\)"),
    (lambda s: s.update(extra=torch.zeros(1)), r"unknown one\(s\) \(extra\)"),
    (lambda s: s.update({"cross_decode.conv2d.weight": torch.zeros(64, 128, 3, 3)}), "other shapes"),
    (lambda s: s.clear() or s.update({"conv.weight": torch.zeros(8, 3, 3, 3)}), "73 AnyUp parameter"),
    (lambda s: s.update({"rope.freqs": torch.full((2, 128), float("nan"))}), "not finite"),
])
def test_a_checkpoint_of_another_architecture_is_refused_clearly(tmp_path, edit, match):
    state = {name: torch.zeros(shape) for name, shape in EXPECTED}
    edit(state)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    up = vf.get_upsampler("anyup", weights=path, device="cpu")
    image, emb = case()
    with pytest.raises(WeightsError, match=match) as err:
        up.dense(emb, image)
    assert "not an AnyUp checkpoint" in str(err.value) or "damaged" in str(err.value)


def test_default_weights_come_from_the_cache_trust_on_first_use_and_offline_rules(tmp_path):
    from vfm_features.models.weights import cache_dir

    up = vf.get_upsampler("anyup", device="cpu")
    with pytest.raises(WeightsError, match="offline mode is on.*anyup_paper.pth"):
        up.weights_hash
    from vfm_features_anyup._network import build_network

    cache_dir().mkdir(parents=True)
    target = cache_dir() / "anyup_paper.pth"
    torch.save(build_network(3).state_dict(), target)
    up = vf.get_upsampler("anyup", device="cpu")
    image, emb = case()
    close(up.dense(emb, image), random_upsampler(seed=3).dense(emb, image))
    assert (cache_dir() / "anyup_paper.pth.sha256").is_file()  # recorded on first use
    torch.save(build_network(4).state_dict(), target)  # the file changes behind our back
    with pytest.raises(WeightsError, match="sha256"):
        vf.get_upsampler("anyup", device="cpu").weights_hash


# -- agreement with the published forward pass ------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(32, 40, 4, 5), (33, 30, 4, 6)])
def test_dense_equals_the_published_forward_pass(shape):
    from vfm_features_anyup._network import build_network

    H, W, h, w = shape
    image, emb = case(H, W, h, w)
    state = build_network(5).state_dict()
    ref = naive_anyup(state, _guide(image), emb.data, (H, W))
    close(random_upsampler(seed=5).dense(emb, image), ref)


def test_the_grid_route_equals_the_published_forward_pass_at_that_output_size():
    from vfm_features_anyup._network import build_network

    image, emb = case(32, 40, 4, 5)
    up = random_upsampler(seed=5, grid=(16, 20))
    ref = naive_anyup(build_network(5).state_dict(), _guide(image), emb.data, (16, 20))
    close(up.dense(emb, image, out_shape=(16, 20)), ref)  # a grid read at its own cell centres


def test_a_float_image_with_many_values_takes_the_streamed_path_and_agrees():
    from vfm_features_anyup._network import build_network

    image, emb = case(36, 40, 4, 5)
    image = image.astype(np.float32) + np.random.default_rng(1).random(image.shape).astype(np.float32)
    ref = naive_anyup(build_network(2).state_dict(), _guide(image), emb.data, (36, 40))
    close(random_upsampler(seed=2).dense(emb, image), ref)


# -- sparse, chunks, regions -------------------------------------------------------------------------------------
def test_sparse_at_pixels_equals_dense_at_the_same_pixels():
    image, emb = case()
    up = random_upsampler()
    dense = up.dense(emb, image)
    rng = np.random.default_rng(3)
    coords = np.stack([rng.integers(0, 40, 300), rng.integers(0, 52, 300)], 1)
    coords = np.concatenate([coords, [[0, 0], [39, 51], [0, 51], [39, 0]]])  # corners: the zero-padded conv
    close(up.sparse(emb, image, coords), dense[:, coords[:, 0], coords[:, 1]].T)
    close(up.sparse(emb, image, coords[:1]), dense[:, coords[0, 0], coords[0, 1]][None])


def test_dense_is_the_same_whatever_the_chunk_size():
    image, emb = case(24, 30, 4, 5)
    whole = random_upsampler().dense(emb, image)
    for chunk in (61, 250):  # tiles of 7 x 8 and 15 x 16 pixels with their halos, against one tile
        close(random_upsampler(chunk_size=chunk).dense(emb, image), whole)
    sparse = random_upsampler(chunk_size=100).sparse(emb, image, np.argwhere(np.ones((24, 30))))
    close(sparse.T.reshape(whole.shape), whole)


@pytest.mark.parametrize("out_shape", [None, (20, 26), (13, 17)])
def test_regions_equal_the_whole(out_shape):
    image, emb = case()
    up = random_upsampler()
    whole = up.dense(emb, image, out_shape)
    rows, cols = slice(3, 11), slice(5, 16)
    close(up.dense(emb, image, out_shape, (rows, cols)), whole[:, rows, cols])
    close(up.dense(emb, image, out_shape, slice(4, 9)), whole[:, 4:9])


def test_a_coarser_grid_reads_the_pixel_nearest_each_grid_point():
    image, emb = case()
    up = random_upsampler()
    full = up.dense(emb, image)
    coarse = up.dense(emb, image, (20, 13))
    ys = np.clip(np.floor((np.arange(20) + 0.5) * 2 - 0.5 + 0.5), 0, 39).astype(int)
    xs = np.clip(np.floor((np.arange(13) + 0.5) * 4 - 0.5 + 0.5), 0, 51).astype(int)
    close(coarse, full[:, ys][:, :, xs])


def test_the_grid_route_reads_its_grid_bilinearly_sparse_equals_dense():
    image, emb = case()
    up = random_upsampler(grid=16)
    dense = up.dense(emb, image)
    coords = np.argwhere(np.random.default_rng(0).random((40, 52)) < 0.1)
    close(up.sparse(emb, image, coords), dense[:, coords[:, 0], coords[:, 1]].T)
    close(up.dense(emb, image, None, (slice(10, 30), slice(0, 20))), dense[:, 10:30, :20])


def test_geometry_that_does_not_span_the_image_works_and_stays_consistent():
    image, emb = case(40, 50, 3, 4, step=(16.0, 16.0))  # the last cells reach past the image, as SAM's do
    up = random_upsampler()
    dense = up.dense(emb, image)
    coords = np.argwhere(np.ones((40, 50)))[::7]
    close(up.sparse(emb, image, coords), dense[:, coords[:, 0], coords[:, 1]].T)
    assert dense.shape == (6, 40, 50) and np.isfinite(dense).all()


def test_sparse_never_builds_the_dense_map(monkeypatch):
    import vfm_features_anyup._routes as routes

    def refuse(*args, **kwargs):
        raise AssertionError("sparse built a dense block")

    monkeypatch.setattr(routes, "pixel_block", refuse)
    image, emb = case()
    out = random_upsampler().sparse(emb, image, [[1, 2], [30, 40]])
    assert out.shape == (2, 6)


def test_the_output_keeps_the_channel_count_and_is_a_weighted_mean_of_the_features():
    image, emb = case(C=3)
    emb.data[:] = np.array([1.0, -2.0, 5.0], np.float32)[:, None, None]  # constant features
    out = random_upsampler().dense(emb, image)
    assert out.shape == (3, 40, 52)
    close(out, np.broadcast_to(emb.data[:, :1, :1], out.shape), scale=5)


# -- bad input -----------------------------------------------------------------------------------------------------
def test_bad_input_is_refused_with_clear_errors():
    image, emb = case()
    up = random_upsampler()
    with pytest.raises(InputError, match="40 x 52 image"):
        up.dense(emb, image[:30])
    with pytest.raises(InputError, match="guided by the image"):
        up.sparse(emb, None, [[0, 0]])
    big = Embedding(np.zeros((2, 300, 300), np.float32), EmbeddingGeometry((300, 300)))
    with pytest.raises(InputError, match="bilinear"):
        up.dense(big, np.zeros((300, 300)))
    with pytest.raises(InputError, match="channel rule"):
        vf.get_upsampler("anyup", channels="per_channel")
    with pytest.raises(InputError, match="pretrained=False"):
        vf.get_upsampler("anyup", pretrained=False, weights="x.pth")
    with pytest.raises(vf.UnknownOptionError):
        vf.get_upsampler("anyup", q_chunk=3)


# -- threads and pickling ---------------------------------------------------------------------------------------
def test_one_instance_serves_two_threads_with_identical_results():
    cases = [case(seed=1), case(36, 44, 4, 5, seed=2)]
    serial = [random_upsampler().dense(emb, image) for image, emb in cases]
    up = random_upsampler()  # loads lazily, under its lock, while both threads ask
    out, errors = [None, None], []

    def run(i):
        try:
            out[i] = up.dense(cases[i][1], cases[i][0])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got, want in zip(out, serial):
        np.testing.assert_array_equal(got, want)


def test_it_pickles_without_its_network():
    image, emb = case()
    up = random_upsampler(grid=12)
    before = up.dense(emb, image)
    blob = pickle.dumps(up)
    assert len(blob) < 5_000
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.dense(emb, image), before)


# -- classifiers and files -------------------------------------------------------------------------------------------
def _training(n=1, shape=(40, 48)):
    data = vf.make_synthetic(n + 1, shape, random_state=0)
    return data, [d.image for d in data[:n]], [d.scribbles(0.05, random_state=i) for i, d in enumerate(data[:n])]


def test_a_classifier_with_anyup_saves_and_loads_without_the_weights_path(tmp_path):
    data, images, labels = _training()
    clf = vf.PixelClassifier("anyuptest", upsampler="anyup", upsampler_options={"pretrained": False, "device": "cpu"},
                             head_options={"n_estimators": 5}).fit(images, labels)
    assert clf.n_features_in_ == 2 and clf.signature_["upsampler"]["weights_hash"] == "random-init:seed=0"
    path = clf.save(tmp_path / "a.vfmc")
    again = vf.load_classifier(path)
    np.testing.assert_array_equal(again.predict(data[-1].image), clf.predict(data[-1].image))
    small = vf.PixelClassifier("anyuptest", upsampler="anyup", working_shape=(24, 28),
                               upsampler_options={"pretrained": False, "device": "cpu"},
                               head_options={"n_estimators": 5}).fit(images, labels)
    assert small.predict(data[-1].image).shape == data[-1].image.shape


def test_a_classifier_trained_with_weights_a_refuses_weights_b(tmp_path):
    from vfm_features_anyup._network import build_network

    a, b = tmp_path / "weights_a.pth", tmp_path / "weights_b.pth"
    torch.save(build_network(1).state_dict(), a)
    torch.save(build_network(2).state_dict(), b)
    data, images, labels = _training()
    clf = vf.PixelClassifier("anyuptest", upsampler="anyup", upsampler_options={"weights": str(a), "device": "cpu"},
                             head_options={"n_estimators": 5}).fit(images, labels)
    path = clf.save(tmp_path / "a.vfmc")
    with zipfile.ZipFile(path) as zf:
        raw = b"".join(zf.read(n) for n in zf.namelist())
    assert b"weights_a" not in raw and str(tmp_path).encode() not in raw  # the file never holds the path
    assert "weights" not in vf.read_metadata(path)["upsampler"]["options"]
    with pytest.raises(ExtractorMismatchError, match="weights_hash"):
        vf.load_classifier(path, upsampler_options={"weights": str(b)})
    again = vf.load_classifier(path, upsampler_options={"weights": str(a)})
    np.testing.assert_array_equal(again.predict(data[-1].image), clf.predict(data[-1].image))


def test_a_file_cannot_set_the_anyup_weights(tmp_path):
    import json

    data, images, labels = _training()
    clf = vf.PixelClassifier("anyuptest", upsampler="anyup", upsampler_options={"pretrained": False, "device": "cpu"},
                             head_options={"n_estimators": 3}).fit(images, labels)
    path = clf.save(tmp_path / "a.vfmc")
    with zipfile.ZipFile(path) as zf:
        content = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(content["metadata.json"])
    meta["upsampler"]["options"]["weights"] = "/tmp/evil.pth"
    content["metadata.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(tmp_path / "b.vfmc", "w") as zf:
        for n, v in content.items():
            zf.writestr(n, v)
    with pytest.raises(InputError, match="may not set them"):
        vf.load_classifier(tmp_path / "b.vfmc")


def test_channel_reduction_composes_with_anyup(tmp_path):
    data, images, labels = _training()
    clf = vf.PixelClassifier("anyuptest", upsampler="anyup", reduce=1, head_options={"n_estimators": 3},
                             upsampler_options={"pretrained": False, "device": "cpu"}).fit(images, labels)
    assert clf.n_features_in_ == 1 and clf.signature_["reduce"]["n_components"] == 1
    again = vf.load_classifier(clf.save(tmp_path / "r.vfmc"))
    np.testing.assert_array_equal(again.predict(data[-1].image), clf.predict(data[-1].image))
