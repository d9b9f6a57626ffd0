"""The dinov3 plugin: specs, architecture table, patch grid, register tokens, weights and errors.

Tiny ``DINOv3ViTConfig`` models only; no test downloads anything (the cache is a
temporary folder and offline mode is on, so the hub is never asked).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

import vfm_features as vf
from vfm_features import InputError, WeightsError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from transformers import DINOv3ViTConfig, DINOv3ViTModel  # noqa: E402

from vfm_features_dinov3 import ARCHITECTURES, MODELS  # noqa: E402
from vfm_features_dinov3._extractor import convert_meta_state_dict  # noqa: E402
from vfm_features_dinov3._models import ACCESS_URL, SAT_MEAN, SAT_STD  # noqa: E402

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_register_tokens": 4}


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VFM_FEATURES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VFM_FEATURES_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def tiny(**options):
    options.setdefault("input_size", 128)
    if "weights" not in options:
        options.setdefault("config", TINY)
        options.setdefault("pretrained", False)
    return vf.get_extractor("dinov3:vits16", device="cpu", **options)


def tiny_model(seed=1, **overrides):
    torch.manual_seed(seed)
    config = DINOv3ViTConfig(**{**ARCHITECTURES["vits16"], **TINY, **overrides})
    model = DINOv3ViTModel(config).eval()
    with torch.no_grad():  # layer scale starts at 1e-5: make every block matter
        for name, p in model.named_parameters():
            if "lambda1" in name:
                p.fill_(0.5)
    return model


def model_input(image01, size):
    import torch.nn.functional as F

    x = torch.from_numpy(image01).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def grey01(image):
    g = (image - image.min()) / (image.max() - image.min())
    return np.repeat(g[..., None], 3, -1).astype(np.float32)


def to_meta_layout(model):
    """A state dict in the layout of Meta's original checkpoints (fused qkv, storage_tokens, ls1.gamma …)."""
    out, cfg = {}, model.config
    for key, value in model.state_dict().items():
        m = re.match(r"model\.layer\.(\d+)\.(.+)$", key)
        if key == "embeddings.cls_token":
            out["cls_token"] = value
        elif key == "embeddings.register_tokens":
            out["storage_tokens"] = value
        elif key == "embeddings.mask_token":
            out["mask_token"] = value.reshape(1, -1)
        elif key.startswith("embeddings.patch_embeddings."):
            out["patch_embed.proj." + key.rsplit(".", 1)[1]] = value
        elif m is None:
            out[key] = value
        else:
            block, rest = f"blocks.{m.group(1)}.", m.group(2)
            renames = {"attention.o_proj.": "attn.proj.", "layer_scale1.lambda1": "ls1.gamma", "norm1.": "norm1.",
                       "norm2.": "norm2.",
                       "layer_scale2.lambda1": "ls2.gamma", "mlp.up_proj.": "mlp.fc1.", "mlp.down_proj.": "mlp.fc2."}
            for new, old in renames.items():
                if rest.startswith(new):
                    out[block + old + rest[len(new):]] = value
    sd = model.state_dict()
    for i in range(cfg.num_hidden_layers):
        p = f"model.layer.{i}.attention."
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([sd[p + f"{n}_proj.weight"] for n in "qkv"])
        k_bias = torch.randn(cfg.hidden_size)  # masked to zero in the original: must be dropped
        out[f"blocks.{i}.attn.qkv.bias"] = torch.cat([sd[p + "q_proj.bias"], k_bias, sd[p + "v_proj.bias"]])
        out[f"blocks.{i}.attn.qkv.bias_mask"] = torch.cat(
            [torch.ones(cfg.hidden_size), torch.zeros(cfg.hidden_size), torch.ones(cfg.hidden_size)])
    out["rope_embed.periods"] = torch.ones(cfg.hidden_size // cfg.num_attention_heads // 4)
    return out


# -- specs and architecture table ----------------------------------------------------------
def test_specs_and_default():
    names = vf.list_extractors("dinov3")
    expected = {"vits16", "vits16plus", "vitb16", "vitl16", "vith16plus", "vit7b16", "vitl16_sat", "vit7b16_sat"}
    assert set(names) == {f"dinov3:{v}" for v in expected}
    assert vf.get_spec("dinov3").name == "dinov3:vitb16"
    widths = {"vits16": 384, "vits16plus": 384, "vitb16": 768, "vitl16": 1024, "vith16plus": 1280,
              "vit7b16": 4096, "vitl16_sat": 1024, "vit7b16_sat": 4096}
    for variant, width in widths.items():
        spec = vf.get_spec(f"dinov3:{variant}")
        assert spec.gated and spec.license == "DINOv3 License" and spec.weights_hash is None
        assert (spec.n_features, spec.patch_size, spec.input_size) == (width, 16, 1024)
        assert spec.weights_file == MODELS[variant].checkpoint and spec.weights_file.endswith(".pth")
        assert MODELS[variant].hf_id.startswith("facebook/dinov3-")
    assert MODELS["vitl16_sat"].mean == SAT_MEAN and MODELS["vitl16_sat"].std == SAT_STD
    assert vf.get_extractor("dinov3:vitl16_sat", pretrained=False).mean == SAT_MEAN


def test_listing_imports_no_torch():
    code = ("import sys, vfm_features as vf; vf.list_extractors('dinov3'); vf.get_spec('dinov3');"
            "assert not {'torch', 'transformers'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("variant", ["vits16", "vits16plus", "vitb16", "vitl16", "vith16plus", "vit7b16"])
def test_architecture_table_matches_published_sizes(variant):
    """Parameter counts of the table's configs (built on the meta device) against DINOv3's README."""
    with torch.device("meta"):
        model = DINOv3ViTModel(DINOv3ViTConfig(**ARCHITECTURES[variant]))
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert n == pytest.approx(MODELS[variant].params_m, rel=0.05)  # the README rounds (21.6M -> "21M")
    assert model.config.num_register_tokens == 4 and model.config.patch_size == 16


# -- patch grid, registers, geometry ------------------------------------------------
def test_non_square_geometry_maps_cells_back():
    ex = tiny()
    image = np.random.default_rng(0).random((100, 150)).astype(np.float32)
    emb = ex.embed(image)
    assert emb.data.shape == (32, 8, 8) and emb.data.dtype == np.float32
    geom = emb.geometry
    assert geom.image_shape == (100, 150) and geom.step == pytest.approx((100 / 8, 150 / 8))
    ii, jj = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    centres = np.stack([(ii.ravel() + 0.5) * geom.step[0] - 0.5, (jj.ravel() + 0.5) * geom.step[1] - 0.5], 1)
    up = vf.get_upsampler("bilinear")
    np.testing.assert_allclose(up.sparse(emb, image, centres), emb.data.reshape(32, -1).T, rtol=1e-5, atol=1e-6)
    assert up.dense(emb, image, (50, 75)).shape == (32, 50, 75)


@pytest.mark.parametrize("registers", [0, 4])
def test_register_count_is_read_from_the_config(tmp_path, registers):
    model = tiny_model(num_register_tokens=registers)
    model.save_pretrained(tmp_path)
    image = np.random.default_rng(1).random((48, 80)).astype(np.float32)
    emb = tiny(weights=tmp_path, input_size=64).embed(image)
    assert emb.meta["n_register_tokens"] == registers
    with torch.no_grad():
        tokens = model(pixel_values=model_input(grey01(image), (64, 64))).last_hidden_state
    assert tokens.shape[1] == 1 + registers + 16
    expected = tokens[0, 1 + registers:].reshape(4, 4, 32).permute(2, 0, 1).numpy()
    np.testing.assert_allclose(emb.data, expected, rtol=1e-4, atol=1e-5)


def test_native_input_size_keeps_the_aspect():
    ex = tiny(input_size=None)
    emb = ex.embed(np.random.default_rng(2).random((100, 150)).astype(np.float32))
    assert emb.data.shape == (32, 6, 9)  # 96 x 144 pixels
    assert emb.geometry.step == pytest.approx((100 / 6, 150 / 9))
    layout = ex.input_contract().layout((100, 150))
    assert layout.padded == layout.resized == (96, 144) and layout.geometry == emb.geometry


def test_channels_and_batched_stack():
    rng = np.random.default_rng(3)
    image = rng.random((40, 60, 2)).astype(np.float32)
    per = tiny(channels="per_channel", batch_size=2)
    emb = per.embed(image)
    assert emb.data.shape == (64, 8, 8) and per.n_features_for(2) == 64
    single = tiny()
    np.testing.assert_allclose(emb.data[32:], single.embed(image[..., 1]).data, atol=1e-5)
    stack = rng.random((3, 40, 60)).astype(np.float32)
    embs = tiny(batch_size=2).embed_stack(stack, axes="ZYX")
    for plane, e in zip(stack, embs):
        np.testing.assert_allclose(e.data, single.embed(plane).data, atol=1e-5)


def test_random_init_is_reproducible():
    image = np.random.default_rng(4).random((32, 32)).astype(np.float32)
    np.testing.assert_array_equal(tiny().embed(image).data, tiny().embed(image).data)
    assert not np.allclose(tiny().embed(image).data, tiny(seed=2).embed(image).data)
    assert tiny().weights_hash == "random-init:vits16:seed=0"


def test_pickled_extractor_embeds_the_same():
    ex = tiny(input_size=64)
    image = np.random.default_rng(8).random((40, 50)).astype(np.float32)
    expected = ex.embed(image)
    assert ex._net is not None and expected.meta["n_register_tokens"] == 4
    copy = pickle.loads(pickle.dumps(ex))  # the loaded network and the lock stay behind
    assert copy._net is None and copy.signature() == ex.signature()
    again = copy.embed(image)
    np.testing.assert_array_equal(again.data, expected.data)
    assert again.meta == expected.meta


def test_tiling_scales_intensities_once_and_stitches():
    rng = np.random.default_rng(7)
    image = rng.random((600, 500)).astype(np.float32) * 1000
    ex = tiny(tile_shape=256, halo=32)
    with pytest.warns(UserWarning, match="global context"):
        emb = ex.embed(image)
    assert emb.data.shape == (32, 19, 16) and emb.geometry.step == (32.0, 32.0)
    assert emb.meta["tiling"]["n_tiles"] == 9
    assert "tile_shape" in ex.signature()["options"] and "tile_shape" not in tiny().signature()["options"]
    # the top-left tile core equals the untiled embedding of the same crop, scaled like the whole image
    crop = (image[:256, :256] - image.min()) / (image.max() - image.min())
    expected = tiny(normalization="none").embed(crop).data
    core = int(224 // 32.0)
    np.testing.assert_allclose(emb.data[:, :core, :core], expected[:, :core, :core], rtol=1e-4, atol=1e-5)


# -- weights -----------------------------------------------------------------------------
def test_transformers_folder_round_trip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    image = (np.random.default_rng(5).random((70, 90)) * 255).astype(np.uint8)
    ex = tiny(weights=tmp_path)
    emb = ex.embed(image)
    with torch.no_grad():
        rgb = np.repeat(image[..., None], 3, -1).astype(np.float32) / 255  # uint8: divided by 255
        tokens = model(pixel_values=model_input(rgb, (128, 128))).last_hidden_state
    np.testing.assert_allclose(emb.data, tokens[0, 5:].reshape(8, 8, 32).permute(2, 0, 1).numpy(), atol=1e-5)
    digest = hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    assert ex.weights_hash == f"sha256:{digest}"
    assert "weights" not in ex.signature()["options"]


def test_width_of_a_folder_is_known_before_loading(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    ex = vf.get_extractor("dinov3:vitb16", weights=tmp_path, channels="per_channel")
    assert ex.n_features_for(2) == 64 and ex._net is None


def test_folder_in_the_cache_is_found(tmp_path):
    from vfm_features.models.weights import cache_dir

    folder = cache_dir() / "dinov3-vits16-pretrain-lvd1689m"
    tiny_model().save_pretrained(folder)
    ex = vf.get_extractor("dinov3:vits16", device="cpu", input_size=64)
    assert ex.embed(np.ones((20, 20), np.float32)).data.shape == (32, 4, 4)


@pytest.mark.parametrize("where", ["file", "cache"])
def test_meta_checkpoint_round_trip(tmp_path, where):
    from vfm_features.models.weights import cache_dir

    model = tiny_model()
    name = MODELS["vits16"].checkpoint
    path = (tmp_path / name) if where == "file" else (cache_dir() / name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(to_meta_layout(model), path)
    image = np.random.default_rng(6).random((64, 64)).astype(np.float32)
    ex = tiny(weights=path if where == "file" else None, config=TINY)
    emb = ex.embed(image)
    with torch.no_grad():
        tokens = model(pixel_values=model_input(grey01(image), (128, 128))).last_hidden_state
    np.testing.assert_allclose(emb.data, tokens[0, 5:].reshape(8, 8, 32).permute(2, 0, 1).numpy(), atol=1e-5)
    assert ex.weights_hash == f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    if where == "cache":
        assert path.with_name(path.name + ".sha256").is_file()  # trust on first use


def test_not_a_dinov3_checkpoint(tmp_path):
    path = tmp_path / "sam.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="not a DINOv3 ViT checkpoint"):
        tiny(weights=path, config=TINY).load()


def test_checkpoint_of_another_size(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(to_meta_layout(tiny_model(hidden_size=48, num_attention_heads=4)), path)
    with pytest.raises(WeightsError, match="does not fit"):
        tiny(weights=path, config=TINY).load()


def test_folder_of_another_model(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)) \
        .save_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="'vit' model"):
        tiny(weights=tmp_path).load()


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(WeightsError, match="neither config.json"):
        tiny(weights=tmp_path).load()
    with pytest.raises(WeightsError, match="does not exist"):
        tiny(weights=tmp_path / "nothing" / "here.pth").load()


@pytest.mark.parametrize("weights", [None, "facebook/dinov3-vits16-pretrain-lvd1689m"])
def test_offline_without_weights_explains(weights):
    ex = vf.get_extractor("dinov3:vits16", weights=weights, device="cpu")
    with pytest.raises(WeightsError) as info:
        ex.embed(np.ones((20, 20), np.float32))
    msg = str(info.value)
    assert "gated" in msg and ACCESS_URL in msg and "Offline mode is on" in msg
    assert "hf download facebook/dinov3-vits16-pretrain-lvd1689m" in msg and "hf auth login" in msg
    assert "dinov3_vits16_pretrain_lvd1689m-08c60483.pth" in msg and "pretrained=False" in msg


# -- options ---------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"input_size": 100}, {"input_size": 0}, {"channels": "mean"}, {"batch_size": 0},
    {"precision": "int8"}, {"normalization": "zscore"}, {"pretrained": False, "weights": "x"},
    {"config": "hidden_size=32"},
])
def test_bad_options(options):
    with pytest.raises(InputError):
        vf.get_extractor("dinov3:vits16", **options)


def test_config_overrides_refused_with_a_transformers_folder(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    with pytest.raises(InputError, match="config"):
        tiny(weights=tmp_path, config=TINY).load()


# -- Meta's original code ---------------------------------------------------------------
@pytest.mark.parametrize("ffn, ratio, qkv_bias", [("mlp", 4, True), ("swiglu", 6, True), ("swiglu64", 3, False)])
def test_conversion_matches_meta_original_code(ffn, ratio, qkv_bias):
    """Meta's DinoVisionTransformer and the converted transformers model agree (needs the dinov3 repo on the path)."""
    backbones = pytest.importorskip("dinov3.hub.backbones")
    from vfm_features_dinov3._models import _arch

    torch.manual_seed(0)
    dim = 128 if ffn == "swiglu64" else 64
    orig = backbones._make_dinov3_vit(
        patch_size=16, pos_embed_rope_base=100, pos_embed_rope_normalize_coords="separate",
        pos_embed_rope_rescale_coords=2, layerscale_init=1e-5, norm_layer="layernormbf16", embed_dim=dim, depth=2,
        num_heads=4, ffn_ratio=ratio, ffn_layer=ffn, qkv_bias=qkv_bias, n_storage_tokens=4, mask_k_bias=True,
        pretrained=False).eval()
    with torch.no_grad():
        for _, p in orig.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    extra = {} if qkv_bias else {"query_bias": False, "value_bias": False}
    hf = DINOv3ViTModel(DINOv3ViTConfig(**_arch(dim, 2, 4, ratio, ffn, **extra))).eval()
    hf.load_state_dict(convert_meta_state_dict(orig.state_dict()), strict=True)
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        expected = orig.forward_features(x)["x_norm_patchtokens"]
        got = hf(pixel_values=x).last_hidden_state[:, 5:]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
