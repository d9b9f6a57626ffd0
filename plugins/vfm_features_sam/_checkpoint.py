"""Finding the image-encoder weights in SAM and micro-sam checkpoints (no torch import needed).

Layouts understood:

- SAM: the whole model's state dict, keys ``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``;
- micro-sam / torch_em: ``{"model_state": {...}, ...}`` whose keys carry a ``sam.`` prefix;
- an image-encoder state dict (keys ``patch_embed.*``, ``blocks.*``, ``neck.*``).
"""

from __future__ import annotations

from os import PathLike
from typing import Any, Mapping

from vfm_features import WeightsError

from ._models import ARCHITECTURES, SPECS, SamArchitecture

ENCODER_PREFIX = "image_encoder."


def encoder_state(checkpoint: Mapping[str, Any], path: str | PathLike = "checkpoint") -> tuple[dict, str]:
    """The image-encoder part of ``checkpoint`` (keys without prefix) and a name for the layout found."""
    state: Mapping[str, Any] = checkpoint
    layout = "SAM state dict"
    if isinstance(checkpoint.get("model_state"), Mapping):
        state = checkpoint["model_state"]
        layout = "micro-sam checkpoint (model_state)"
        if any(k.startswith("sam.") for k in state):
            state = {k[4:]: v for k, v in state.items() if k.startswith("sam.")}
            layout += " with 'sam.' prefix"
    encoder = {k[len(ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    if not encoder and any(k.startswith("patch_embed.") for k in state):
        encoder, layout = dict(state), "image-encoder state dict"
    if not encoder:
        sample = ", ".join(list(state)[:5]) or "none"
        raise WeightsError(
            f"{path} holds no SAM image-encoder weights: expected keys 'image_encoder.…' (SAM), a "
            f"'model_state' dict with 'sam.image_encoder.…' (micro-sam) or 'patch_embed.…'; found {sample}. "
            "Pass a SAM, µSAM or PathoSAM checkpoint.")
    return encoder, layout


def describe(encoder: Mapping[str, Any]) -> dict[str, int | None]:
    """Embed dim, depth, patch size and input size read from the tensor shapes of an encoder state dict."""
    proj = encoder.get("patch_embed.proj.weight")
    embed_dim = int(proj.shape[0]) if proj is not None else None
    patch = int(proj.shape[-1]) if proj is not None else None
    blocks = {int(k.split(".")[1]) for k in encoder if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    pos = encoder.get("pos_embed")
    img_size = int(pos.shape[1]) * patch if pos is not None and patch else None
    return {"embed_dim": embed_dim, "depth": max(blocks) + 1 if blocks else 0, "patch_size": patch,
            "img_size": img_size}


def guess_architecture(found: Mapping[str, int | None]) -> str | None:
    """The name of the official architecture with this embed dim and depth, if any."""
    for name, arch in ARCHITECTURES.items():
        if (arch.embed_dim, arch.depth) == (found["embed_dim"], found["depth"]):
            return name
    return None


def check_architecture(encoder: Mapping[str, Any], arch: SamArchitecture, *, path: str | PathLike,
                       extractor: str) -> None:
    """Raise :class:`WeightsError` if ``encoder`` was saved from another architecture than ``arch``."""
    found = describe(encoder)
    expected = {"embed_dim": arch.embed_dim, "depth": arch.depth, "patch_size": arch.patch_size,
                "img_size": arch.img_size}
    if all(found[k] in (None, v) for k, v in expected.items()) and found["embed_dim"] is not None:
        return
    if any(k.startswith("patch_embed.seq.") for k in encoder):
        raise WeightsError(f"{path} holds a TinyViT (vit_t) image encoder, but {extractor} builds {arch.name}. Use "
                           "'musam:vit_t_lm' or 'musam:vit_t_em_organelles' for this file.")
    guess = guess_architecture(found)
    family = extractor.split(":", 1)[0]
    variants = [s.name for s in SPECS if s.options.get("architecture") == guess]
    variants = [n for n in variants if n.startswith(family + ":")] or variants
    looks = f"looks like {guess}" if guess else "matches no official SAM architecture"
    fix = (f"Use {' or '.join(repr(v) for v in variants)} for this file" if variants
           else "Use the extractor of the architecture this file was trained with")
    raise WeightsError(
        f"{path} holds a SAM image encoder with embed dim {found['embed_dim']}, {found['depth']} blocks and "
        f"input size {found['img_size']} ({looks}), but {extractor} builds {arch.name} (embed dim "
        f"{arch.embed_dim}, {arch.depth} blocks, input size {arch.img_size}). {fix}, or pass weights of "
        f"{arch.name}.")
