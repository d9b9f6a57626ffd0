"""The sam plugin (SAM, µSAM, PathoSAM): model table, geometry, preprocessing, checkpoint loading.

Fast tests use a tiny ImageEncoderViT (SamArchitecture with img_size 128, depth 2,
embed dim 32) or a patch-mean stand-in for the encoder, registered as test-only
specs in a private Registry. No test downloads weights.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest

import vfm_features as vf
from vfm_features.models import weights as W
from vfm_features.models.contract import longest_side_shape
from vfm_features import ExtractorSpec, InputError, Registry, WeightsError, hookimpl

pytest.importorskip("torch")
pytest.importorskip("segment_anything")

import torch  # noqa: E402
from vfm_features_sam import ARCHITECTURES, SPECS, SamArchitecture  # noqa: E402
from vfm_features_sam._checkpoint import check_architecture, describe, encoder_state  # noqa: E402
from vfm_features_sam._extractor import SamExtractor, _build_encoder  # noqa: E402
from vfm_features_sam._models import PIXEL_MEAN, PIXEL_STD  # noqa: E402

TINY = SamArchitecture("tiny", embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,),
                       img_size=128, window_size=4)
OTHER = SamArchitecture("other", embed_dim=48, depth=3, num_heads=2, global_attn_indexes=(2,),
                        img_size=128, window_size=4)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("VFM_FEATURES_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VFM_FEATURES_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


class PatchMeanSam(SamExtractor):
    """SAM preprocessing and geometry with a stand-in encoder: each cell = mean of its 16x16 input patch."""

    def load_model(self, device):
        arch = self.architecture
        pool = torch.nn.AvgPool2d(arch.patch_size)
        self._layout = "patch mean"
        return lambda x: pool(x)[:, :1].expand(-1, arch.out_chans, -1, -1)


def layout(shape, arch=ARCHITECTURES["vit_b"]):
    """Where the core puts an image of ``shape`` in the input of a SAM encoder ``arch``, and its geometry."""
    return vf.get_extractor("sam:vit_b", architecture=arch, pretrained=False).input_contract().layout(shape)


UP = vf.get_upsampler("bilinear")


class _TestPlugin:
    @hookimpl
    def vfm_features_extractors(self):
        return [
            ExtractorSpec("samtest:tiny", factory=SamExtractor, weights_file="tiny.pt",
                          weights_url="https://example.org/tiny.pt", options={"architecture": TINY}),
            ExtractorSpec("samtest:patchmean", factory=PatchMeanSam, options={"architecture": "vit_b"}),
        ]


@pytest.fixture(scope="module")
def registry():
    reg = Registry(entry_point_group=None)
    reg.register(_TestPlugin(), name="samtest")
    return reg


def _tiny_checkpoint(arch=TINY, seed=1):
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in _build_encoder(arch).state_dict().items()}


# -- model table -----------------------------------------------------------------
FAMILIES = {"sam": "sam:vit_b", "musam": "musam:vit_b_lm", "pathosam": "pathosam:vit_b_histopathology"}


def test_every_variant_is_listed_with_url_hash_licence():
    names = vf.list_extractors()
    for spec in SPECS:
        assert spec.name in names
        listed = vf.get_spec(spec.name)
        assert listed.weights_url.startswith("https://")
        algo, digest = spec.weights_hash.split(":")
        assert algo == "xxh128" and len(digest) == 32 and int(digest, 16) >= 0
        assert spec.license and spec.weights_file and spec.description
        assert spec.options["architecture"] in ARCHITECTURES
        assert spec.requires == ("torch", "segment_anything")
        details = listed.details()
        assert details["hash"] == spec.weights_hash and details["license"] == spec.license
    assert len({s.weights_file for s in SPECS}) == len(SPECS)
    assert {s.family for s in SPECS} == set(FAMILIES)


@pytest.mark.parametrize("family, default", FAMILIES.items())
def test_family_defaults(family, default):
    assert vf.get_spec(family).name == default
    assert sum(s.default for s in SPECS if s.family == family) == 1


def test_listing_and_construction_do_not_import_torch():
    code = ("import sys, vfm_features as vf; names = vf.list_extractors('sam*'); "
            "[vf.get_spec(n).details() for n in names]; "
            "ex = vf.get_extractor('musam:vit_b_lm'); ex.n_features; "
            "assert 'torch' not in sys.modules and 'segment_anything' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_official_architectures_match_segment_anything(monkeypatch):
    """Our encoder gets the same ImageEncoderViT arguments as segment_anything's own builders."""
    import importlib

    build = importlib.import_module("segment_anything.build_sam")
    image_encoder = importlib.import_module("segment_anything.modeling.image_encoder")

    class Captured(Exception):
        pass

    def capture(**kwargs):
        raise Captured(kwargs)

    def args_of(fn):
        with pytest.raises(Captured) as got:
            fn()
        kwargs = got.value.args[0]
        norm = kwargs.pop("norm_layer")
        return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}, norm(8).eps

    for name, arch in ARCHITECTURES.items():
        monkeypatch.setattr(build, "ImageEncoderViT", capture)
        theirs = args_of(build.sam_model_registry[name])
        monkeypatch.setattr(image_encoder, "ImageEncoderViT", capture)
        ours = args_of(lambda arch=arch: _build_encoder(arch))
        assert ours == theirs, name
        assert arch.img_size == 1024 and arch.patch_size == 16 and arch.grid == 64


# -- geometry --------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1024, 1024), (50, 120), (120, 50), (333, 1000), (7, 3000), (2048, 1536),
                                   (1000, 999), (17, 17)])
def test_geometry_covers_image_and_drops_padding(shape):
    H, W = shape
    lay = layout(shape)
    h, w = lay.resized
    assert (h, w) == longest_side_shape(H, W, 1024) and max(h, w) == 1024 and lay.padded == (1024, 1024)
    geom, (rows, cols) = lay.geometry, lay.cells
    # every valid cell holds image content, and together they cover the resized image
    assert (rows - 1) * 16 < h <= rows * 16 and (cols - 1) * 16 < w <= cols * 16
    assert geom.image_shape == (H, W) and geom.origin == (0.0, 0.0)
    # the image's outer edges map to the edges of the resized content: -0.5 and h/16 - 0.5 in cell units
    edges = geom.cell_coords(np.array([[-0.5, -0.5], [H - 0.5, W - 0.5]]))
    np.testing.assert_allclose(edges, [[-0.5, -0.5], [h / 16 - 0.5, w / 16 - 0.5]], atol=1e-9)


def test_resized_shape_matches_segment_anything():
    from segment_anything.utils.transforms import ResizeLongestSide

    for H, W in [(50, 120), (333, 1000), (7, 3000), (1000, 999), (513, 700)]:
        assert longest_side_shape(H, W, 1024) == ResizeLongestSide.get_preprocess_shape(H, W, 1024)


@pytest.mark.parametrize("shape", [(512, 512), (171, 256), (300, 700), (1500, 900)])
def test_model_input_matches_segment_anything(shape):
    """Resize, normalisation and padding agree with ResizeLongestSide + Sam.preprocess to within
    one grey level (SAM rounds the resized image to uint8; we stay in float)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img = np.stack([(xx * 7 + yy) % 256, rng.integers(0, 256, shape), (yy * 3) % 256], -1).astype(np.uint8)
    ex = vf.get_extractor("sam:vit_b", pretrained=False, channels="rgb")
    contract = ex.input_contract()
    backend = ex.backend()  # not loaded: building a model input needs only the device
    backend._device = "cpu"
    ours = backend._model_input(ex.prepare(img), contract.layout(shape), contract)[0]
    resized = torch.as_tensor(ResizeLongestSide(1024).apply_image(img)).permute(2, 0, 1).float()
    theirs = (resized - torch.tensor(PIXEL_MEAN).view(3, 1, 1)) / torch.tensor(PIXEL_STD).view(3, 1, 1)
    theirs = torch.nn.functional.pad(theirs, (0, 1024 - theirs.shape[2], 0, 1024 - theirs.shape[1]))
    assert ours.shape == theirs.shape == (3, 1024, 1024)
    assert float((ours - theirs).abs().max()) * min(PIXEL_STD) < 1.01


def test_patch_mean_features_land_on_the_right_pixels(registry):
    """With an encoder that averages each 16x16 input patch, features read back at a pixel
    must equal the (normalised) intensity at that pixel for a linear ramp: any error in
    resizing, padding, cropping or step shows up as an offset."""
    H, W = 300, 700
    yy, xx = np.mgrid[0:H, 0:W]
    for ramp, axis in ((xx, 1), (yy, 0)):
        image = ramp.astype(np.float32)
        ex = registry.get("samtest:patchmean", normalization="none")
        emb = ex.embed(image / image.max())
        lay = layout((H, W))
        assert emb.data.shape == (256, *lay.cells) and emb.geometry == lay.geometry
        # interior pixels (more than a cell from the border, where bilinear reads clamp)
        rng = np.random.default_rng(0)
        coords = np.stack([rng.uniform(30, H - 30, 200), rng.uniform(30, W - 30, 200)], 1)
        got = UP.sparse(emb, None, coords)[:, 0] * PIXEL_STD[0] + PIXEL_MEAN[0]
        expected = 255 * coords[:, axis] / image.max()
        np.testing.assert_allclose(got, expected, atol=0.35)  # 0.35 of 255: about a tenth of a pixel


def test_padding_is_cropped(registry):
    """A wide image: the padded rows below the content are not in the embedding."""
    ex = registry.get("samtest:patchmean", normalization="none")
    emb = ex.embed(np.ones((100, 1000), np.float32))
    rows = int(np.ceil(longest_side_shape(100, 1000, 1024)[0] / 16))
    assert emb.data.shape[1:] == (rows, 64) and rows == 7
    value = (255 - PIXEL_MEAN[0]) / PIXEL_STD[0]
    # every cell but the last row (partly padding) is pure image
    np.testing.assert_allclose(emb.data[0, :-1], value, rtol=1e-5)
    assert np.all(emb.data[0, -1] < value)


# -- tiny real encoder: options ----------------------------------------------------
def test_tiny_random_encoder_shapes_and_options(registry):
    ex = registry.get("samtest:tiny", pretrained=False)
    img = np.random.default_rng(0).random((40, 90, 3)).astype(np.float32)
    emb = ex.embed(img)
    lay = layout((40, 90), TINY)
    assert emb.data.shape == (256, *lay.cells) and emb.geometry == lay.geometry and emb.data.dtype == np.float32
    assert emb.extractor == "samtest:tiny"
    assert UP.sparse(emb, img, np.array([[0, 0], [39, 89], [20.5, 44.2]])).shape == (3, 256)
    assert UP.dense(emb, img).shape == (256, 40, 90)
    assert ex.weights_hash == "random-init:tiny:seed=0" and ex.weights_layout == "random initialisation"
    # the same seed gives the same features; another seed changes them and the signature
    again = registry.get("samtest:tiny", pretrained=False).embed(img)
    np.testing.assert_array_equal(emb.data, again.data)
    other = registry.get("samtest:tiny", pretrained=False, seed=1)
    assert other.signature() != ex.signature()
    assert "device" not in ex.signature()["options"]

    per = registry.get("samtest:tiny", pretrained=False, channels="per_channel")
    assert per.n_features_for(3) == 768 and per.embed(img).data.shape[0] == 768
    assert registry.get("samtest:tiny", pretrained=False, channels=[0, 2]).embed(img).data.shape[0] == 256
    assert ex.n_features_for(3) == 256


def test_custom_architecture_is_kept_as_plain_data(registry):
    """Options (and so signatures and classifier files) hold a custom architecture as plain data."""
    ex = registry.get("samtest:tiny", pretrained=False)
    assert ex.options["architecture"] == TINY.as_dict() and ex.architecture == TINY
    again = registry.get("samtest:tiny", pretrained=False, architecture=TINY.as_dict())
    assert again.signature() == ex.signature()
    assert vf.get_extractor("sam:vit_l", architecture=ARCHITECTURES["vit_l"]).options["architecture"] == "vit_l"
    image = np.random.default_rng(5).random((30, 40)).astype(np.float32)
    np.testing.assert_array_equal(again.embed(image).data, ex.embed(image).data)


def test_channel_rules(registry):
    """prepare() gives the model images side by side in 0..1; SAM's 0..255 is the contract's value range."""
    ex = registry.get("samtest:tiny", pretrained=False)
    assert ex.input_contract().value_range == 255
    rgb = np.random.default_rng(1).integers(0, 255, (32, 48, 3)).astype(np.uint8)
    summed = ex.prepare(rgb)
    assert summed.shape == (32, 48, 3) and summed.dtype == np.float32
    np.testing.assert_array_equal(summed[..., 0], summed[..., 2])
    assert summed.min() == 0 and summed.max() == 1
    kept = registry.get("samtest:tiny", pretrained=False, channels="rgb").prepare(rgb)
    np.testing.assert_array_equal(kept, rgb.astype(np.float32) / np.float32(255))  # uint8 colour: only / 255
    per = registry.get("samtest:tiny", pretrained=False, channels="per_channel").prepare(rgb)
    assert per.shape == (32, 48, 9)  # three model images


def test_stack_batching_matches_single_planes(registry):
    stack = np.random.default_rng(2).random((3, 40, 60)).astype(np.float32)
    single = registry.get("samtest:tiny", pretrained=False)
    batched = registry.get("samtest:tiny", pretrained=False, batch_size=2)
    embs = batched.embed_stack(stack, axes="ZYX")
    assert len(embs) == 3
    for plane, emb in zip(stack, embs):
        np.testing.assert_allclose(emb.data, single.embed(plane).data, atol=1e-5)


def test_bfloat16_precision_on_cpu(registry):
    img = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    full = registry.get("samtest:tiny", pretrained=False).embed(img).data
    half = registry.get("samtest:tiny", pretrained=False, precision="bf16").embed(img).data
    assert half.dtype == np.float32
    assert np.corrcoef(full.ravel(), half.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("bad, match", [({"channels": "mean"}, "channels"), ({"channels": []}, "channels"),
                                        ({"batch_size": 0}, "batch_size"), ({"precision": "int8"}, "precision"),
                                        ({"normalization": "zscore"}, "normalization"),
                                        ({"architecture": "vit_x"}, "architecture"),
                                        ({"architecture": {"name": "x"}}, "missing.*embed_dim"),
                                        ({"architecture": {**TINY.as_dict(), "depth": "2"}}, "depth='2'"),
                                        ({"architecture": {**TINY.as_dict(), "code": 1}}, r"unknown.*\['code'\]"),
                                        ({"pretrained": False, "weights": "x.pt"}, "pretrained")])
def test_bad_options(registry, bad, match):
    with pytest.raises(InputError, match=match):
        registry.get("samtest:tiny", **bad)
    with pytest.raises(TypeError):
        registry.get("samtest:tiny", colour="red")


# -- pickling and threads ----------------------------------------------------------
def test_pickled_extractor_embeds_the_same(registry):
    ex = registry.get("samtest:tiny", pretrained=False)
    image = np.random.default_rng(6).random((40, 50)).astype(np.float32)
    expected = ex.embed(image).data
    assert ex.backend()._model is not None
    copy = pickle.loads(pickle.dumps(ex))  # the loaded network and the lock stay behind
    assert copy._backend is None and copy.signature() == ex.signature()
    np.testing.assert_array_equal(copy.embed(image).data, expected)


def test_one_instance_embeds_from_two_threads_at_once(registry):
    ex = registry.get("samtest:tiny", pretrained=False)
    builds = []
    load_model = ex.load_model
    ex.load_model = lambda device: (builds.append(device), load_model(device))[1]
    image = np.random.default_rng(7).random((60, 45)).astype(np.float32)
    start = threading.Barrier(2)
    results, errors = [None, None], []

    def work(i):
        try:
            start.wait(timeout=30)  # both threads ask before the model exists
            results[i] = ex.embed(image).data
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(builds) == 1  # the network was built once
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], registry.get("samtest:tiny", pretrained=False).embed(image).data)


# -- checkpoints -----------------------------------------------------------------
def _embed_with(registry, path, **options):
    ex = registry.get("samtest:tiny", weights=path, **options)
    ex.embed(np.random.default_rng(4).random((32, 32)).astype(np.float32))
    return ex


def _assert_loaded(ex, state):
    loaded = ex.backend()._model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v)


def test_plain_sam_checkpoint(registry, tmp_path):
    state = _tiny_checkpoint()
    path = tmp_path / "sam.pth"
    torch.save({**{f"image_encoder.{k}": v for k, v in state.items()},
                "mask_decoder.output_upscaling.0.weight": torch.zeros(2, 2),
                "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": torch.zeros(2, 3)}, path)
    ex = _embed_with(registry, path)
    _assert_loaded(ex, state)
    assert ex.weights_layout == "SAM state dict"
    assert ex.weights_hash == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_micro_sam_checkpoint(registry, tmp_path, caplog):
    state = _tiny_checkpoint(seed=2)
    path = tmp_path / "vit_b_lm.pt"
    torch.save({"model_state": {**{f"sam.image_encoder.{k}": v for k, v in state.items()},
                                "sam.mask_decoder.iou_token.weight": torch.zeros(1, 4)},
                "decoder_state": {"base.0.weight": torch.zeros(1)}}, path)
    with caplog.at_level("INFO", logger="vfm_features_sam"):
        ex = _embed_with(registry, path)
    _assert_loaded(ex, state)
    assert ex.weights_layout == "micro-sam checkpoint (model_state) with 'sam.' prefix"
    assert "micro-sam checkpoint" in caplog.text


def test_pickled_training_checkpoint_needs_trust(registry, tmp_path):
    state = _tiny_checkpoint(seed=3)
    path = tmp_path / "training.pt"
    torch.save({"model_state": {f"sam.image_encoder.{k}": v for k, v in state.items()},
                "init": argparse.Namespace(model_type="vit_b")}, path)
    with pytest.raises(WeightsError, match="trust_checkpoint=True"):
        _embed_with(registry, path)
    _assert_loaded(_embed_with(registry, path, trust_checkpoint=True), state)


def test_wrong_architecture_file(registry, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({f"image_encoder.{k}": v for k, v in _tiny_checkpoint(OTHER).items()}, path)
    with pytest.raises(WeightsError) as err:
        _embed_with(registry, path)
    msg = str(err.value)
    assert "embed dim 48" in msg and "3 blocks" in msg and "builds tiny" in msg and str(path) in msg


@pytest.mark.parametrize("extractor, suggestion", [("sam:vit_b", "'sam:vit_l'"),
                                                   ("musam:vit_b_lm", "'musam:vit_l_lm' or 'musam:vit_l_em_organelles'")])
def test_wrong_official_architecture_is_named(extractor, suggestion):
    meta = {"device": "meta"}
    vit_l = ARCHITECTURES["vit_l"]
    fake = {"patch_embed.proj.weight": torch.empty(vit_l.embed_dim, 3, 16, 16, **meta),
            "pos_embed": torch.empty(1, 64, 64, vit_l.embed_dim, **meta),
            **{f"blocks.{i}.norm1.weight": torch.empty(vit_l.embed_dim, **meta) for i in range(vit_l.depth)}}
    assert describe(fake) == {"embed_dim": 1024, "depth": 24, "patch_size": 16, "img_size": 1024}
    with pytest.raises(WeightsError, match=f"looks like vit_l.*builds vit_b.*Use {suggestion}"):
        check_architecture(fake, ARCHITECTURES["vit_b"], path="f.pt", extractor=extractor)
    check_architecture(fake, vit_l, path="f.pt", extractor=extractor)  # the right one passes


def test_checkpoint_without_encoder(tmp_path):
    with pytest.raises(WeightsError, match="no SAM image-encoder weights.*found model.0.weight"):
        encoder_state({"model.0.weight": torch.zeros(1)}, "x.pt")
    enc, layout = encoder_state({"patch_embed.proj.weight": torch.zeros(1)}, "x.pt")
    assert layout == "image-encoder state dict" and list(enc) == ["patch_embed.proj.weight"]


def test_cached_file_is_verified(tmp_path):
    """Cache hit with the right checksum loads; a corrupted cache file raises before torch.load."""
    state = _tiny_checkpoint(seed=5)
    good = tmp_path / "good.pt"
    torch.save({f"image_encoder.{k}": v for k, v in state.items()}, good)
    sha = hashlib.sha256(good.read_bytes()).hexdigest()

    class Plugin:
        @hookimpl
        def vfm_features_extractors(self):
            return [ExtractorSpec("samtest:hashed", factory=SamExtractor, weights_file="tiny.pt",
                                  weights_url="https://example.org/tiny.pt", weights_hash=f"sha256:{sha}",
                                  options={"architecture": TINY})]

    reg = Registry(entry_point_group=None)
    reg.register(Plugin())
    cache = W.cache_dir()
    cache.mkdir(parents=True)
    (cache / "tiny.pt").write_bytes(good.read_bytes())
    ex = reg.get("samtest:hashed")
    assert ex.weights_hash == f"sha256:{sha}"
    ex.embed(np.zeros((20, 20), np.float32))
    _assert_loaded(ex, state)

    (cache / "tiny.pt").write_bytes(good.read_bytes()[:-10] + b"corrupted!")
    with pytest.raises(WeightsError, match=f"Checksum mismatch.*tiny.pt.*{sha}"):
        reg.get("samtest:hashed").embed(np.zeros((20, 20), np.float32))


@pytest.mark.parametrize("name", ["sam:vit_b", "musam:vit_b_lm", "pathosam:vit_h_histopathology"])
def test_offline_without_weights_explains(monkeypatch, name):
    monkeypatch.setenv("VFM_FEATURES_OFFLINE", "1")
    spec = vf.get_spec(name)
    ex = vf.get_extractor(name)
    with pytest.raises(WeightsError) as err:
        ex.embed(np.zeros((32, 32), np.float32))
    msg = str(err.value)
    assert "offline" in msg and spec.weights_url in msg and "weights=PATH" in msg
    assert str(W.cache_dir() / spec.weights_file) in msg


# -- real size -------------------------------------------------------------------
@pytest.mark.slow
def test_vit_b_random_weights_one_image():
    """The real ViT-B graph (random weights): 25-40 s per image on 2 CPU cores."""
    ex = vf.get_extractor("sam:vit_b", pretrained=False)
    emb = ex.embed(np.random.default_rng(0).random((96, 128)).astype(np.float32))
    assert emb.data.shape == (256, 48, 64)
    assert emb.geometry.step == (2.0, 2.0)
    assert np.isfinite(emb.data).all()
