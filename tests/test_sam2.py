"""The sam2 plugin: specs, preprocessing, geometry, checkpoints, configs and errors, with tiny Hiera encoders.

No test downloads anything: weights come from files the tests write, or
``pretrained=False``; the cache is a temporary folder and offline mode is on.
Configs are data: crafted ones must be refused before anything runs.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest
import yaml

import vfm_features as vf
from vfm_features import InputError, WeightsError

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from vfm_features_sam2._config import build_image_encoder, read_config  # noqa: E402

_HIERA = "sam2.modeling.backbones.hieradet.Hiera"
_NECK = "sam2.modeling.backbones.image_encoder.FpnNeck"
_SINE = "sam2.modeling.position_encoding.PositionEmbeddingSine"

# A tiny SAM2 image encoder: 4 Hiera stages (one global-attention block), 16-channel FPN.
TINY = {"model": {"image_size": 256, "image_encoder": {
    "_target_": "sam2.modeling.backbones.image_encoder.ImageEncoder",
    "scalp": 1,
    "trunk": {"_target_": _HIERA, "embed_dim": 8, "num_heads": 1, "stages": [1, 1, 2, 1],
              "global_att_blocks": [3], "window_pos_embed_bkg_spatial_size": [4, 4], "window_spec": [8, 4, 4, 2]},
    "neck": {"_target_": _NECK, "d_model": 16, "backbone_channel_list": [64, 32, 16, 8],
             "fpn_top_down_levels": [2, 3], "fpn_interp_model": "nearest",
             "position_encoding": {"_target_": _SINE, "num_pos_feats": 16, "normalize": True, "temperature": 10000}},
}}}


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VFM_FEATURES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VFM_FEATURES_OFFLINE", "1")


def tiny(**options):
    options.setdefault("config", TINY)
    if "weights" not in options:
        options.setdefault("pretrained", False)
    return vf.get_extractor("sam2:hiera_t", device="cpu", **options)


def tiny_encoder(config=TINY, seed=1):
    torch.manual_seed(seed)
    return build_image_encoder(read_config(config)[0]).eval()


def reference_features(encoder, image01, size=256, level=16):
    """SAM2's predictor transform (resize to size x size, ImageNet mean/std) and the encoder, by hand."""
    import torch.nn.functional as F

    x = torch.from_numpy(image01).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        fpn = encoder((x - mean) / std)["backbone_fpn"]
    return next(f for f in fpn if f.shape[-1] * level == size)[0].numpy()


# -- specs ---------------------------------------------------------------------
def test_specs_and_default():
    names = vf.list_extractors("sam2")
    sizes = ["hiera_t", "hiera_s", "hiera_b+", "hiera_l"]
    assert set(names) == {f"sam2:{s}" for s in sizes} | {f"sam2:{s}_v2.0" for s in sizes}
    assert vf.get_spec("sam2").name == "sam2:hiera_l"
    for name in names:
        spec = vf.get_spec(name)
        assert spec.license == "Apache-2.0" and not spec.gated and spec.weights_hash is None
        assert spec.weights_url.startswith("https://dl.fbaipublicfiles.com/segment_anything_2/")
        assert spec.weights_url.endswith(spec.weights_file)
        assert (spec.patch_size, spec.input_size, spec.n_features) == (16, 1024, 256)
    assert vf.get_spec("sam2:hiera_l").weights_file == "sam2.1_hiera_large.pt"
    assert "/092824/" in vf.get_spec("sam2:hiera_t").weights_url
    assert "/072824/sam2_hiera_tiny.pt" in vf.get_spec("sam2:hiera_t_v2.0").weights_url


def test_listing_imports_no_torch():
    code = ("import sys, vfm_features as vf; vf.list_extractors('sam2'); vf.get_spec('sam2');"
            "assert not {'torch', 'sam2', 'hydra'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_table_matches_packaged_configs():
    """The table holds the numbers of sam2's own YAML files (read here, never at run time)."""
    import importlib.resources

    import yaml

    from vfm_features_sam2 import MODELS
    from vfm_features_sam2._models import ARCHITECTURES

    for model in MODELS.values():
        text = importlib.resources.files("sam2").joinpath(model.config).read_text()
        assert read_config(yaml.safe_load(text)) == (ARCHITECTURES[model.architecture], 1024), model.variant


@pytest.mark.parametrize("which", ["tiny", "hiera_t"])
def test_builder_matches_hydra_instantiate(which):
    """Without hydra, the same modules, in the same order (same seed -> same weights), and the same outputs."""
    import importlib.resources

    pytest.importorskip("hydra")
    from hydra.utils import instantiate  # only as the reference, on trusted configs
    from omegaconf import OmegaConf

    from vfm_features_sam2 import MODELS
    from vfm_features_sam2._models import ARCHITECTURES

    if which == "tiny":
        node, arch = OmegaConf.create(TINY).model.image_encoder, read_config(TINY)[0]
    else:
        text = importlib.resources.files("sam2").joinpath(MODELS["hiera_t"].config).read_text()
        node, arch = OmegaConf.create(text).model.image_encoder, ARCHITECTURES["hiera_t"]
    torch.manual_seed(3)
    theirs = instantiate(node).eval()
    torch.manual_seed(3)
    ours = build_image_encoder(arch).eval()
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for p, q in zip(theirs(x)["backbone_fpn"], ours(x)["backbone_fpn"]):
            assert torch.equal(p, q)


# -- shapes and geometry ---------------------------------------------------------
def test_non_square_geometry_maps_cells_back():
    ex = tiny()
    image = np.random.default_rng(0).random((100, 150)).astype(np.float32)
    emb = ex.embed(image)
    assert emb.data.shape == (16, 16, 16) and emb.data.dtype == np.float32
    assert emb.extractor == "sam2:hiera_t"
    geom = emb.geometry
    assert geom.image_shape == (100, 150)
    assert geom.step == pytest.approx((100 / 16, 150 / 16))  # non-uniform resize: anisotropic cells
    # the centre of cell (i, j) in image pixels reads exactly that cell
    ii, jj = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    centres = np.stack([(ii.ravel() + 0.5) * geom.step[0] - 0.5, (jj.ravel() + 0.5) * geom.step[1] - 0.5], 1)
    np.testing.assert_allclose(geom.cell_coords(centres), np.stack([ii.ravel(), jj.ravel()], 1), atol=1e-9)
    up = vf.get_upsampler("bilinear")
    feats = up.sparse(emb, image, centres)
    np.testing.assert_allclose(feats, emb.data.reshape(16, -1).T, rtol=1e-5, atol=1e-6)
    # the image corners lie in the corner cells
    corners = geom.cell_coords(np.array([[0, 0], [99, 149]]))
    assert np.all(corners[0] < 0.5) and np.all(corners[1] > 14.5)
    assert up.dense(emb, image).shape == (16, 100, 150)


@pytest.mark.parametrize("rows, cols", [((60, 90), (225, 300)), ((0, 30), (0, 75)), ((30, 60), (100, 150))])
def test_content_lands_in_the_right_cells(rows, cols):
    """A bright block in a 120 x 300 image changes most the features of the cells over it."""
    ex = tiny()
    base = np.zeros((120, 300), np.float32)
    base[0, 0] = 1.0  # fixes the min-max scaling
    block = base.copy()
    block[slice(*rows), slice(*cols)] = 1.0
    diff = np.abs(ex.embed(block).data - ex.embed(base).data).sum(0)
    step_y, step_x = 120 / 16, 300 / 16
    top = np.array(np.unravel_index(np.argsort(diff.ravel())[::-1][:6], diff.shape)).T
    assert np.all(top[:, 0] >= rows[0] // step_y) and np.all(top[:, 0] < np.ceil(rows[1] / step_y))
    assert np.all(top[:, 1] >= cols[0] // step_x) and np.all(top[:, 1] < np.ceil(cols[1] / step_x))


@pytest.mark.parametrize("level, cells", [(16, 16), (8, 32), (4, 64)])
def test_levels(level, cells):
    emb = tiny(level=level).embed(np.random.default_rng(1).random((90, 60)).astype(np.float32))
    assert emb.data.shape == (16, cells, cells)
    assert emb.geometry.step == pytest.approx((90 / cells, 60 / cells))
    assert emb.meta["level"] == level


def test_input_size_option():
    emb = tiny(input_size=128).embed(np.ones((50, 70), np.float32))
    assert emb.data.shape == (16, 8, 8) and emb.meta["input_size"] == 128


def test_channels_modes():
    rng = np.random.default_rng(2)
    image = rng.random((64, 80, 3)).astype(np.float32)
    per = tiny(channels="per_channel", batch_size=2)
    emb = per.embed(image)
    assert emb.data.shape == (48, 16, 16) == (per.n_features_for(3), 16, 16)
    # each channel block equals that channel embedded alone
    single = tiny()
    for c in range(3):
        np.testing.assert_allclose(emb.data[16 * c:16 * (c + 1)], single.embed(image[..., c]).data, atol=1e-5)
    assert tiny(channels=[0, 2]).embed(image).data.shape == (16, 16, 16)
    assert tiny(channels="rgb").n_features_for(3) == 16
    summed = tiny().embed(image).data
    np.testing.assert_allclose(summed, single.embed(image.sum(-1)).data, atol=1e-5)


def test_stack_is_batched_and_equal_to_single_planes():
    stack = np.random.default_rng(3).random((3, 40, 56)).astype(np.float32)
    ex = tiny(batch_size=2)
    embs = ex.embed_stack(stack, axes="ZYX")
    assert len(embs) == 3
    for plane, emb in zip(stack, embs):
        np.testing.assert_allclose(emb.data, ex.embed(plane).data, atol=1e-5)


def test_random_init_is_reproducible_and_seeded():
    image = np.random.default_rng(4).random((32, 32)).astype(np.float32)
    a, b = tiny().embed(image).data, tiny().embed(image).data
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, tiny(seed=1).embed(image).data)
    assert tiny().weights_hash == "random-init:hiera_t:seed=0"


def test_released_architecture_builds_at_small_input():
    """The packaged SAM2.1 hiera_t config (real architecture, random weights) at a small input size."""
    ex = vf.get_extractor("sam2:hiera_t", pretrained=False, device="cpu", input_size=128)
    emb = ex.embed(np.ones((30, 40), np.float32))
    assert emb.data.shape == (256, 8, 8) and ex.n_features == 256


# -- checkpoints ---------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["meta", "plain"])
def test_checkpoint_round_trip(tmp_path, layout):
    encoder = tiny_encoder()
    state = {f"image_encoder.{k}": v for k, v in encoder.state_dict().items()}
    state["sam_mask_decoder.conv_s0.weight"] = torch.zeros(2, 2)  # other parts of SAM2 are ignored
    path = tmp_path / "tiny_sam2.pt"
    torch.save({"model": state} if layout == "meta" else state, path)

    rng = np.random.default_rng(5)
    image = (rng.random((70, 110)) * 4000).astype(np.uint16)
    ex = tiny(weights=path)
    emb = ex.embed(image)
    grey = (image - image.min()) / (image.max() - image.min())
    ref = reference_features(encoder, np.repeat(grey[..., None], 3, -1).astype(np.float32))
    np.testing.assert_allclose(emb.data, ref, rtol=1e-4, atol=1e-5)
    assert not np.allclose(emb.data, tiny().embed(image).data)  # the weights were used
    assert ex.weights_hash.startswith("sha256:") and len(ex.weights_hash) == 7 + 64
    assert "weights" not in ex.signature()["options"] and "device" not in ex.signature()["options"]


def test_checkpoint_from_cache_is_pinned_on_first_use(tmp_path):
    from vfm_features.models.weights import cache_dir

    encoder = tiny_encoder()
    target = cache_dir() / vf.get_spec("sam2:hiera_t").weights_file
    target.parent.mkdir(parents=True)
    torch.save({"model": {f"image_encoder.{k}": v for k, v in encoder.state_dict().items()}}, target)
    ex = tiny(pretrained=True)
    assert ex.weights_hash.startswith("sha256:")
    ex.embed(np.ones((20, 20), np.float32))
    assert target.with_name(target.name + ".sha256").is_file()


def test_not_a_sam2_checkpoint(tmp_path):
    path = tmp_path / "sam1.pth"
    torch.save({"image_encoder_x.weight": torch.zeros(1), "mask_decoder.w": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="not a SAM2 checkpoint"):
        tiny(weights=path).embed(np.ones((20, 20), np.float32))


def test_checkpoint_of_another_size(tmp_path):
    other = copy.deepcopy(TINY)
    other["model"]["image_encoder"]["trunk"]["embed_dim"] = 16
    other["model"]["image_encoder"]["neck"]["backbone_channel_list"] = [128, 64, 32, 16]
    encoder = tiny_encoder(other)
    path = tmp_path / "bigger.pt"
    torch.save({"model": {f"image_encoder.{k}": v for k, v in encoder.state_dict().items()}}, path)
    with pytest.raises(WeightsError, match="does not fit.*sam2:hiera_b\\+"):
        tiny(weights=path).load()


def test_garbage_file(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError):
        tiny(weights=path).load()


def test_offline_without_weights_explains():
    ex = vf.get_extractor("sam2:hiera_t", device="cpu")
    with pytest.raises(WeightsError) as info:
        ex.embed(np.ones((20, 20), np.float32))
    msg = str(info.value)
    assert "offline" in msg and "sam2.1_hiera_tiny.pt" in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in msg
    assert "weights=PATH" in msg


def test_tiling_scales_intensities_once_and_stitches():
    rng = np.random.default_rng(7)
    image = rng.random((600, 500)).astype(np.float32) * 1000
    ex = tiny(tile_shape=256, halo=32)
    with pytest.warns(UserWarning, match="global context"):
        emb = ex.embed(image)
    assert emb.data.shape == (16, 38, 32) and emb.geometry.step == (16.0, 16.0)
    assert emb.meta["tiling"]["n_tiles"] == 9
    assert "tile_shape" in ex.signature()["options"] and "tile_shape" not in tiny().signature()["options"]
    # the top-left tile core equals the untiled embedding of the same crop, scaled like the whole image
    crop = (image[:256, :256] - image.min()) / (image.max() - image.min())
    expected = tiny(normalization="none").embed(crop).data
    core = int(224 // 16.0)
    np.testing.assert_allclose(emb.data[:, :core, :core], expected[:, :core, :core], rtol=1e-4, atol=1e-5)


# -- options ---------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"level": 32}, {"level": 2}, {"input_size": 100}, {"input_size": 32}, {"channels": "mean"},
    {"channels": []}, {"batch_size": 0}, {"precision": "int8"}, {"normalization": "zscore"},
    {"pretrained": False, "weights": "x.pt"},
])
def test_bad_options(options):
    with pytest.raises(InputError):
        vf.get_extractor("sam2:hiera_t", **options)


def test_unknown_option():
    with pytest.raises(InputError):
        vf.get_extractor("sam2:hiera_t", stride=8)


def _crafted(canary):
    """Configs that would run code (each payload creates ``canary``) or that break the schema."""
    make = f"open({str(canary)!r}, 'w').write('ran')"
    touch = {"_target_": "os.system", "command": f"touch {canary}"}

    def with_trunk(**changes):
        evil = copy.deepcopy(TINY)
        evil["model"]["image_encoder"]["trunk"].update(changes)
        return evil

    # passes a 'sam2.modeling.' prefix check, and hydra's instantiate would exec the string (creating the canary)
    runstring = copy.deepcopy(TINY)
    runstring["model"]["image_encoder"]["trunk"] = {
        "_target_": "sam2.modeling.sam2_utils.np.testing._private.utils.runstring", "astr": make, "dict": None}
    system = copy.deepcopy(TINY)
    system["model"]["image_encoder"]["_target_"] = "os.system"
    system["model"]["image_encoder"]["command"] = f"touch {canary}"
    in_neck = copy.deepcopy(TINY)
    in_neck["model"]["image_encoder"]["neck"]["position_encoding"] = touch
    return {
        "runstring target": (runstring, r"trunk\._target_='sam2\.modeling\.sam2_utils\.np\.testing.*runstring' "
                                        r"is refused.*only build sam2\.modeling\.backbones\.hieradet\.Hiera"),
        "os.system target": (system, r"image_encoder\._target_='os\.system' is refused"),
        "target in a nested section": (in_neck, r"position_encoding\._target_='os\.system' is refused"),
        "target inside a list": (with_trunk(stages=[1, touch, 2, 1]),
                                 r"trunk\.stages\[1\] must be an integer; got a mapping with _target_='os\.system'"),
        "target where a number belongs": (with_trunk(embed_dim=touch), r"trunk\.embed_dim must be an integer"),
        "unknown key": (with_trunk(weights_path=str(canary)), r"unknown key\(s\) \['weights_path'\]; Hiera takes"),
        "hydra's own keys": (with_trunk(_args_=[make]), r"unknown key\(s\) \['_args_'\]"),
        "text for a number": (with_trunk(embed_dim="8"), r"trunk\.embed_dim must be an integer; got str '8'"),
        "flag for a number": (with_trunk(num_heads=True), r"trunk\.num_heads must be an integer; got bool"),
    }


@pytest.mark.parametrize("case", ["runstring target", "os.system target", "target in a nested section",
                                  "target inside a list", "target where a number belongs", "unknown key",
                                  "hydra's own keys", "text for a number", "flag for a number"])
def test_crafted_config_is_refused_and_runs_nothing(tmp_path, case):
    canary = tmp_path / "canary"
    config, match = _crafted(canary)[case]
    with pytest.raises(InputError, match=match):
        tiny(config=config).load()
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(InputError, match=match):  # the same from a YAML file
        tiny(config=str(path)).load()
    assert not canary.exists()


def test_yaml_with_python_tags_is_not_executed(tmp_path):
    canary = tmp_path / "canary"
    path = tmp_path / "evil.yaml"
    path.write_text(f"model:\n  image_encoder: !!python/object/apply:os.system ['touch {canary}']\n")
    with pytest.raises(InputError, match="not valid YAML"):
        tiny(config=str(path))
    assert not canary.exists()


def test_interpolations_are_not_resolved(monkeypatch):
    from omegaconf import OmegaConf

    monkeypatch.setenv("VFM_TEST_EMBED_DIM", "8")
    evil = copy.deepcopy(TINY)
    evil["model"]["image_encoder"]["trunk"]["embed_dim"] = "${oc.env:VFM_TEST_EMBED_DIM}"
    with pytest.raises(InputError, match=r"embed_dim must be an integer; got str '\$\{oc\.env"):
        tiny(config=OmegaConf.create(evil))


@pytest.mark.parametrize("change, match", [
    ({"fpn_interp_model": "nearest-exact"}, r"fpn_interp_model must be one of \['bicubic', 'bilinear', 'nearest'\]"),
    ({"d_model": None}, r"neck\.d_model must be an integer; got NoneType"),
    ({"backbone_channel_list": [64, 32, 16, 9]}, "does not make a working image encoder.*backbone_channel_list"),
])
def test_config_values_are_checked(change, match):
    config = copy.deepcopy(TINY)
    config["model"]["image_encoder"]["neck"].update(change)
    with pytest.raises(InputError, match=match):
        tiny(config=config).load()


@pytest.mark.parametrize("config, match", [
    ({"model": {"image_size": 256}}, "'model' section has no image_encoder"),
    ({"trunk_and_neck": {}}, "has no image encoder"),
    ({"model": {"image_size": 100, "image_encoder": TINY["model"]["image_encoder"]}}, "multiple of 32"),
    ({"image_encoder": {"trunk": {}}}, "image_encoder lacks neck"),
])
def test_config_layout_errors(config, match):
    with pytest.raises(InputError, match=match):
        tiny(config=config)


def test_config_layouts_and_optional_targets():
    """The official layout, the image_encoder section alone, and sections without _target_ build one model."""
    encoder = TINY["model"]["image_encoder"]
    bare = copy.deepcopy(encoder)
    for section in (bare, bare["trunk"], bare["neck"], bare["neck"]["position_encoding"]):
        del section["_target_"]
    image = np.random.default_rng(8).random((40, 40)).astype(np.float32)
    expected = tiny().embed(image).data
    for config in ({"image_encoder": encoder}, encoder, bare):
        np.testing.assert_array_equal(tiny(config=config, input_size=256).embed(image).data, expected)


def test_omegaconf_config_gives_a_plain_signature():
    import json

    from omegaconf import OmegaConf

    ex = tiny(config=OmegaConf.create(TINY))
    assert json.loads(json.dumps(ex.signature()))["options"]["config"] == TINY
    assert ex.n_features == 16  # read from the config's neck.d_model without building the model


def test_config_from_yaml_file(tmp_path):
    from omegaconf import OmegaConf

    path = tmp_path / "tiny.yaml"
    OmegaConf.save(OmegaConf.create(TINY), path)
    ex = tiny(config=str(path))
    assert ex.embed(np.ones((24, 24), np.float32)).data.shape == (16, 16, 16)
    # the signature records what the file says, not where it lies
    moved = tmp_path / "moved.yaml"
    moved.write_text(path.read_text())
    assert tiny(config=str(moved)).signature() == ex.signature()
    assert "/" not in str(ex.signature()["options"]["config"])


def test_full_packaged_config_file_is_read():
    """A whole SAM2 model YAML (memory attention, decoder ...) gives its image encoder; the rest is ignored."""
    import importlib.resources

    from vfm_features_sam2 import MODELS

    path = importlib.resources.files("sam2").joinpath(MODELS["hiera_s"].config)
    ex = vf.get_extractor("sam2:hiera_t", config=str(path), pretrained=False, device="cpu")
    assert ex.n_features == 256 and ex.input_contract().size == 1024
    assert ex.signature()["options"]["config"]["model"]["image_encoder"]["trunk"]["stages"] == [1, 2, 11, 2]


# -- pickling and threads ----------------------------------------------------------
def test_pickled_extractor_embeds_the_same():
    ex = tiny()
    image = np.random.default_rng(9).random((40, 50)).astype(np.float32)
    expected = ex.embed(image).data  # loaded: the network is not pickled, the copy builds its own
    copy_ = pickle.loads(pickle.dumps(ex))
    assert copy_._backend is None and copy_.signature() == ex.signature()
    np.testing.assert_array_equal(copy_.embed(image).data, expected)


# -- the official predictor -------------------------------------------------------
@pytest.mark.slow
def test_matches_official_image_predictor(tmp_path):
    """Same image embedding as sam2's SAM2ImagePredictor (minus its constant no_mem_embed)."""
    pytest.importorskip("torchvision")
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    path = tmp_path / "sam2.1_random.pt"
    torch.save({"model": model.state_dict()}, path)
    image = (np.random.default_rng(6).random((300, 420, 3)) * 255).astype(np.uint8)
    predictor = SAM2ImagePredictor(model)
    predictor.set_image(image)
    expected = predictor._features["image_embed"][0].numpy() - model.no_mem_embed.detach().numpy().reshape(-1, 1, 1)
    emb = vf.get_extractor("sam2:hiera_t", weights=path, channels="rgb", device="cpu").embed(image)
    np.testing.assert_allclose(emb.data, expected, atol=1e-4)
    assert emb.geometry.step == pytest.approx((300 / 64, 420 / 64))
