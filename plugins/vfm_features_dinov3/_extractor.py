"""Dinov3Extractor: last-layer patch tokens of a DINOv3 ViT (transformers ``DINOv3ViTModel``).

torch and transformers are imported inside methods: building the extractor only
stores options; the model is built on first use (or by :meth:`Dinov3Extractor.load`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vfm_features import InputError, WeightsError
from vfm_features.models.base import ModelExtractor, load_strict
from vfm_features.models.contract import InputContract

from ._models import ACCESS_URL, ARCHITECTURES, DEFAULT_INPUT_SIZE, MODELS, PATCH_SIZE, Dinov3Model

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_MODEL_TYPE = "dinov3_vit"


class Dinov3Extractor(ModelExtractor):
    """Features from a DINOv3 vision transformer: one vector per 16 x 16 patch.

    The image is scaled to 0..1, resized to ``input_size`` x ``input_size``
    (1024 by default: 64 x 64 patches, the grid of the sam/sam2 extractors; the
    aspect ratio is not kept) and normalised with ImageNet mean/std (SAT-493M
    statistics for the ``*_sat`` variants). The output is the final, layer-normed
    patch tokens reshaped to the patch grid; the CLS token and the register tokens
    (their number is read from the model config) are dropped.

    Weights are gated (licence approval by Meta). Options (keyword-only):

    - ``weights``: a transformers model folder (``config.json`` + ``*.safetensors``,
      e.g. from ``hf download facebook/dinov3-vits16-pretrain-lvd1689m --local-dir DIR``),
      Meta's original checkpoint file (``dinov3_vits16_pretrain_lvd1689m-08c60483.pth``,
      from the e-mailed download link; converted on load), or a Hugging Face hub id.
      Default: Meta's file in the weights cache if present, else the folder
      ``<cache>/dinov3-…-pretrain-…``, else the hub repository, downloaded with your
      own Hugging Face token (``hf auth login`` or ``HF_TOKEN``) unless offline mode
      is on (then only the Hugging Face cache is used).
    - ``pretrained``: False builds a randomly initialised model from the variant's
      architecture table (seeded, reproducible), needing no weights.
    - ``trust_checkpoint``: allow a checkpoint that pickles Python objects (runs code from the file).
    - ``device``: 'auto' (cuda, then mps, then cpu) or an explicit device.
    - ``precision``: 'float32' (default), 'bfloat16' or 'float16' (autocast).
    - ``batch_size``: model inputs per forward pass (planes of a stack, or channels).
    - ``channels``: 'sum' (all channels summed to grey, replicated to RGB; the
      default), 'rgb' (a 3-channel image kept as colour; other counts summed),
      'per_channel' (each channel embedded on its own, features concatenated:
      width x C) or a list of channel indices (that subset, then as 'rgb').
    - ``normalization``: intensity scaling to 0..1 before the mean/std (see
      :func:`vfm_features.preprocess.normalize_intensity`); clipped to 0..1.
    - ``input_size``: side of the square model input, a multiple of 16 (default
      1024), or None to keep the image's own size rounded to a multiple of 16
      (aspect kept, one patch per 16 pixels).
    - ``config``: overrides of the ``DINOv3ViTConfig`` arguments of the variant's
      architecture table (random init or Meta's file); not allowed with a
      transformers folder or hub id, whose ``config.json`` decides.
    - ``seed``: seed of the random initialisation (``pretrained=False``); default 0.
    - ``progress``: accepted like the other extractors' option; gated weights are never
      downloaded by vfm-features (transformers shows its own progress for the hub).
    - ``tile_shape``, ``halo``: embed large planes tile by tile (see
      :mod:`vfm_features.features.tiling`); intensities are scaled once for the whole plane.
    """

    def __init__(self, spec, *, input_size: int | None = DEFAULT_INPUT_SIZE, config: Mapping | None = None,
                 **options: Any) -> None:
        if spec.variant not in MODELS:
            raise InputError(f"{spec.name} is not a released DINOv3 ViT; known: "
                             f"{', '.join('dinov3:' + v for v in MODELS)}.")
        if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer))
                                       or input_size < PATCH_SIZE or input_size % PATCH_SIZE):
            raise InputError(f"input_size must be a positive multiple of {PATCH_SIZE} (the patch size) or None "
                             f"(the image's own size); got {input_size!r}.")
        if config is not None and not isinstance(config, Mapping):
            raise InputError(f"config must be a mapping of DINOv3ViTConfig arguments; got {type(config).__name__}.")
        super().__init__(spec, input_size=None if input_size is None else int(input_size),
                         config=None if config is None else dict(config), **options)
        self._model_record: Dinov3Model = MODELS[spec.variant]
        self._source: tuple[str, Any, bool] | None = None  # (kind, path or hub id, local only)
        self._hash: str | None = None

    @property
    def _net(self) -> Any:
        """The loaded model, or None before the first use."""
        return self._backend._model if self._backend is not None else None

    # -- description ---------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        """Feature channels per model image (the ViT's width)."""
        if self._net is not None:
            return int(self._net.config.hidden_size)
        if self.options["config"] and "hidden_size" in self.options["config"]:
            return int(self.options["config"]["hidden_size"])
        folder = Path(self.options["weights"]).expanduser() if self.options["weights"] else None
        if folder is not None and (folder / "config.json").is_file():  # a transformers folder decides
            try:
                return int(json.loads((folder / "config.json").read_text())["hidden_size"])
            except (ValueError, KeyError, TypeError, OSError):
                pass  # reported properly when the model loads
        return self._model_record.hidden_size

    @property
    def features_per_image(self) -> int:
        return self.hidden_size

    @property
    def mean(self) -> tuple[float, float, float]:
        return self._model_record.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self._model_record.std

    @property
    def weights_hash(self) -> str:
        """Checksum ("algo:hexdigest") of the weights in use, resolving them without building the model.

        Meta's file: its sha256 (trust on first use in the cache). A transformers
        folder: the sha256 of its safetensors file (of the sorted "name sha256" lines
        when sharded). A hub id is downloaded (loaded) first. Random weights report
        ``random-init:<variant>:seed=<seed>``.
        """
        if not self.options["pretrained"]:
            return f"random-init:{self.spec.variant}:seed={self.options['seed']}"
        if self._hash is None:
            kind, where, _ = self._weights_source()
            if kind == "meta":
                self._hash = self._meta_file()[1]
            elif Path(where).is_dir():
                self._hash = _folder_digest(Path(where))
            else:
                self.load()  # a hub id: the files are known once downloaded
        return self._hash

    # -- model ---------------------------------------------------------------
    def load_model(self, device: str) -> Any:
        """The DINOv3 ViT with its weights (random ones, seeded, if ``pretrained`` is False), float32."""
        if not self.options["pretrained"]:
            net = self._random_model()
        else:
            kind, where, local_only = self._weights_source()
            if kind == "meta":
                net = self._meta_model()
            else:
                net = self._transformers_model(where, local_only)
        return net.float()

    def input_contract(self) -> InputContract:
        patch = int((self.options["config"] or {}).get("patch_size", PATCH_SIZE))
        return InputContract(size=self.options["input_size"], resize="stretch", stride=patch, mean=self.mean,
                             std=self.std, multiple=patch)

    def forward(self, model: Any, batch: Any) -> Any:
        """Last-layer patch tokens as a (N, C, h, w) grid; the CLS and register tokens are dropped."""
        patch = model.config.patch_size
        patch = int(patch if isinstance(patch, int) else patch[0])
        n_prefix = 1 + int(model.config.num_register_tokens)  # CLS + registers, read from the config
        tokens = model(pixel_values=batch).last_hidden_state
        gh, gw = batch.shape[-2] // patch, batch.shape[-1] // patch
        if tokens.shape[1] != n_prefix + gh * gw:
            raise RuntimeError(f"DINOv3 returned {tokens.shape[1]} tokens for a {gh} x {gw} patch grid "
                               f"and {n_prefix} prefix tokens.")
        return tokens[:, n_prefix:, :].reshape(len(batch), gh, gw, -1).permute(0, 3, 1, 2)

    def embedding_meta(self) -> dict[str, Any]:
        net = self._net
        return {"n_register_tokens": int(net.config.num_register_tokens) if net is not None else None}

    def _table_config(self) -> Any:
        from transformers import DINOv3ViTConfig

        args = {**ARCHITECTURES[self._model_record.architecture], **(self.options["config"] or {})}
        try:
            return DINOv3ViTConfig(**args)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"config={self.options['config']!r} does not make a valid DINOv3ViTConfig: {exc}") from None

    def _random_model(self) -> Any:
        import torch
        from transformers import DINOv3ViTModel

        config = self._table_config()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.options["seed"])
            return DINOv3ViTModel(config)

    def _weights_source(self) -> tuple[str, Any, bool]:
        """Where the weights come from: ('meta', file, True) or ('hf', folder or hub id, local only)."""
        if self._source is not None:
            return self._source
        from vfm_features.models import weights as W

        record, user = self._model_record, self.options["weights"]
        if user is not None:
            path = Path(user).expanduser()
            if path.is_dir():
                if (path / "config.json").is_file():
                    source = ("hf", str(path), True)
                elif (path / record.checkpoint).is_file():
                    source = ("meta", str(path / record.checkpoint), True)
                else:
                    raise WeightsError(
                        f"weights={user!r} is a folder with neither config.json (a transformers model folder) nor "
                        f"{record.checkpoint} (Meta's checkpoint). " + self._access_help())
            elif path.is_file():
                source = ("meta", str(path), True)
            elif _HUB_ID.match(str(user)) and not str(user).startswith((".", "~")):
                source = ("hf", str(user), W.is_offline())
            else:
                raise WeightsError(f"weights={user!r} does not exist. " + self._access_help())
        else:
            cached_file = W.cache_dir() / record.checkpoint
            cached_folder = W.cache_dir() / record.hf_id.split("/", 1)[1]
            if cached_file.is_file():
                source = ("meta", str(cached_file), True)
            elif (cached_folder / "config.json").is_file():
                source = ("hf", str(cached_folder), True)
            else:
                source = ("hf", record.hf_id, W.is_offline())
        if source[0] == "hf" and self.options["config"] is not None:
            raise InputError("config=… overrides the architecture table and cannot be combined with a transformers "
                             "model folder or hub id, whose config.json decides. Leave config unset.")
        self._source = source
        return source

    def _access_help(self) -> str:
        from vfm_features.models import weights as W

        record = self._model_record
        folder = W.cache_dir() / record.hf_id.split("/", 1)[1]
        return (
            f"DINOv3 weights are gated: request access at {ACCESS_URL} (Meta's files) or accept the licence on "
            f"{record.hub_url}. Then either (1) log in with 'hf auth login' (or set HF_TOKEN) and run without offline "
            f"mode, which downloads {record.hf_id} into the Hugging Face cache; (2) download the folder with "
            f"'hf download {record.hf_id} --local-dir DIR' and pass weights=DIR (or use {folder} as DIR); or "
            f"(3) save Meta's file {record.checkpoint} as {W.cache_dir() / record.checkpoint} or pass "
            "weights=PATH_TO_FILE. Without weights, pretrained=False gives a random-init baseline.")

    def _meta_file(self) -> tuple[Path, str]:
        """Meta's checkpoint file and its verified checksum (trust on first use in the cache)."""
        from vfm_features.models.weights import fetch_weights

        _, where, _ = self._weights_source()
        user = self.options["weights"]
        path, digest = fetch_weights(self.spec, where if user is not None else None,
                                     progress=self.options["progress"])
        self._hash = digest
        return path, digest

    def _meta_model(self) -> Any:
        from transformers import DINOv3ViTModel

        from vfm_features.models.weights import load_state_dict

        path = self._meta_file()[0]
        state = load_state_dict(path, trust_checkpoint=self.options["trust_checkpoint"])
        if not any(isinstance(k, str) and k.startswith("blocks.") for k in state):
            sample = ", ".join(repr(k) for k in list(state)[:4]) or "none"
            raise WeightsError(
                f"Weights file {path} is not a DINOv3 ViT checkpoint: it has no 'blocks.*' keys (found {len(state)} "
                f"keys such as {sample}). Pass Meta's file ({self._model_record.checkpoint} for {self.spec.name}) "
                "or a transformers model folder.")
        config = self._table_config()
        with _skip_init():  # every parameter is overwritten by the strict load below
            net = DINOv3ViTModel(config)
        # transformers 5 nests the blocks as "model.layer.N"; earlier releases used "layer.N"
        prefix = "model.layer." if any(k.startswith("model.layer.") for k in net.state_dict()) else "layer."
        converted = convert_meta_state_dict(state, layer_prefix=prefix)
        names = ", ".join(f"dinov3:{v}" for v in MODELS)
        load_strict(net, converted, what=f"Weights file {path} does not fit {self.spec.name}",
                    hint=f"It is probably the checkpoint of another DINOv3 model: pick the matching variant ({names}).")
        return net

    def _transformers_model(self, where: str, local_only: bool) -> Any:
        import torch
        from transformers import DINOv3ViTConfig, DINOv3ViTModel

        try:
            config_dict, _ = DINOv3ViTConfig.get_config_dict(where, local_files_only=local_only)
        except Exception as exc:  # noqa: BLE001 - hub errors come in many types (gated, 401, offline, missing)
            why = _first_line(exc)
            hub = "" if Path(where).is_dir() else " (not a local path, so tried as a Hugging Face hub id)"
            offline = " Offline mode is on, so only the Hugging Face cache was searched." if local_only else ""
            raise WeightsError(f"Could not load DINOv3 weights {where!r}{hub} for {self.spec.name}: {why}.{offline} "
                               + self._access_help()) from None
        model_type = config_dict.get("model_type")
        if model_type != _MODEL_TYPE:
            raise WeightsError(f"{where!r} holds a {model_type!r} model, not a DINOv3 ViT ({_MODEL_TYPE!r}); pass the "
                               f"folder of {self._model_record.hf_id} or of another DINOv3 ViT.")
        try:
            net, info = DINOv3ViTModel.from_pretrained(where, local_files_only=local_only, dtype=torch.float32,
                                                       output_loading_info=True)
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"Could not load DINOv3 weights {where!r} for {self.spec.name}: "
                               f"{_first_line(exc)}. " + self._access_help()) from None
        missing = list(info.get("missing_keys") or []) + list(info.get("mismatched_keys") or [])
        if missing:
            raise WeightsError(f"DINOv3 weights {where!r} lack {len(missing)} tensor(s) of the model "
                               f"(e.g. {missing[:3]}); the files are incomplete or of another model.")
        self._hash = _folder_digest(Path(where)) if Path(where).is_dir() else _hub_digest(net)
        return net


# -- Meta's checkpoints ----------------------------------------------------------
_BLOCK_RENAMES = {
    "attn.proj.": "attention.o_proj.",
    "ls1.gamma": "layer_scale1.lambda1",
    "ls2.gamma": "layer_scale2.lambda1",
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "mlp.fc1.": "mlp.up_proj.",  # plain MLP
    "mlp.fc2.": "mlp.down_proj.",
    "mlp.w1.": "mlp.gate_proj.",  # SwiGLU: silu(w1 x) * (w2 x), then w3
    "mlp.w2.": "mlp.up_proj.",
    "mlp.w3.": "mlp.down_proj.",
}
_DROPPED = ("rope_embed.", "local_cls_norm.")  # recomputed buffer; a norm used in training only


def convert_meta_state_dict(state: Mapping[str, Any], layer_prefix: str = "model.layer.") -> dict[str, Any]:
    """Rename a state dict of Meta's ``DinoVisionTransformer`` to ``DINOv3ViTModel`` names.

    The fused ``qkv`` projection is split into q/k/v; the key bias is dropped (it is
    masked to zero by ``bias_mask`` in the original, and transformers has none).
    Keys it does not know are kept as they are, so a strict load names them.
    ``layer_prefix`` is where the model keeps its blocks (transformers 5: ``model.layer.``).
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(key, str) or key.startswith(_DROPPED) or key.endswith("qkv.bias_mask"):
            continue
        if key == "cls_token":
            out["embeddings.cls_token"] = value
        elif key == "storage_tokens":
            out["embeddings.register_tokens"] = value
        elif key == "mask_token":
            out["embeddings.mask_token"] = value.reshape(1, 1, -1)
        elif key.startswith("patch_embed.proj."):
            out["embeddings.patch_embeddings." + key[len("patch_embed.proj."):]] = value
        elif (m := re.match(r"blocks\.(\d+)\.(.+)$", key)) is not None:
            prefix, rest = f"{layer_prefix}{m.group(1)}.", m.group(2)
            if rest in ("attn.qkv.weight", "attn.qkv.bias"):
                kind = rest.rsplit(".", 1)[1]
                q, k, v = value.chunk(3, dim=0)
                out[f"{prefix}attention.q_proj.{kind}"] = q
                if kind == "weight":
                    out[f"{prefix}attention.k_proj.weight"] = k
                out[f"{prefix}attention.v_proj.{kind}"] = v
                continue
            for old, new in _BLOCK_RENAMES.items():
                if rest.startswith(old):
                    out[prefix + new + rest[len(old):]] = value
                    break
            else:
                out[key] = value
        else:
            out[key] = value  # "norm.*" keeps its name; anything else is reported by the strict load
    return out


# -- helpers -------------------------------------------------------------------
def _skip_init() -> Any:
    """transformers' ``no_init_weights`` context (skips the random initialisation), or a no-op."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older/newer layout: initialise normally, only slower
        import contextlib

        return contextlib.nullcontext()
    return no_init_weights()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def _file_sha256(path: Path) -> str:
    """sha256 of a file; a Hugging Face cache blob is named by it already (no need to read it)."""
    real = Path(os.path.realpath(path))
    if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name):
        return real.name
    from vfm_features.models import weights as W

    return W.file_hash(real, "sha256")


def _folder_digest(folder: Path) -> str:
    """``sha256:…`` of a transformers folder's weight file, or of the sorted 'name sha256' lines when sharded."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise WeightsError(f"Model folder {folder} has a config.json but no *.safetensors weights.")
    if len(files) == 1:
        return f"sha256:{_file_sha256(files[0])}"
    lines = "".join(f"{f.name} {_file_sha256(f)}\n" for f in files)
    return f"sha256:{hashlib.sha256(lines.encode()).hexdigest()}"


def _hub_digest(net: Any) -> str:
    """Digest of a model loaded by hub id: from the cached files when they can be found, else of the config."""
    path = getattr(net, "name_or_path", None) or getattr(net.config, "_name_or_path", "")
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(path), local_files_only=True,
                                        allow_patterns=["*.safetensors", "*.json"]))
        return _folder_digest(folder)
    except Exception:  # noqa: BLE001 - fall back to a digest of the architecture
        text = json.dumps(net.config.to_dict(), sort_keys=True, default=str)
        return f"config-sha256:{hashlib.sha256(text.encode()).hexdigest()}"
