"""SAM2 image-encoder configs as data: read, checked against a fixed schema, built without hydra.

A config may be written like sam2's own YAML files (``model: image_encoder: {_target_,
scalp, trunk: {...}, neck: {..., position_encoding: {...}}}``, or the ``image_encoder``
mapping alone), but nothing in it is imported or called by name. Each section
has exactly one class; its ``_target_``, if given, must be that class's full path.
Every other value must be an integer, a number, a flag, a word from a fixed set
or a list of integers, under a key the class takes. Anything else (another
``_target_``, an unknown key such as Hiera's ``weights_path``, a nested mapping
where a number belongs, an interpolation string) is refused with an
:class:`~vfm_features.InputError` before anything is built. YAML is read with
``yaml.safe_load`` and OmegaConf objects are converted without resolving
interpolations, so reading a config runs no code either.

Only ``model.image_encoder`` and ``model.image_size`` are read; other sections of
a full SAM2 model config (memory attention, mask decoder ...) are ignored.
"""

from __future__ import annotations

import copy
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vfm_features import InputError

IMAGE_ENCODER = "sam2.modeling.backbones.image_encoder.ImageEncoder"
HIERA = "sam2.modeling.backbones.hieradet.Hiera"
FPN_NECK = "sam2.modeling.backbones.image_encoder.FpnNeck"
POSITION_ENCODING = "sam2.modeling.position_encoding.PositionEmbeddingSine"

# Kinds of values. A frozenset is a set of allowed words; a key of SCHEMA is a nested section.
INT, NUMBER, BOOL, INTS = "an integer", "a number", "true or false", "a list of integers"
OPTIONAL = " or null"

# section -> (its class, {key: kind}, required keys); keys and kinds from the classes' signatures
SCHEMA: dict[str, tuple[str, dict[str, Any], frozenset[str]]] = {
    "image_encoder": (IMAGE_ENCODER, {"scalp": INT, "trunk": "trunk", "neck": "neck"},
                      frozenset({"trunk", "neck"})),
    "trunk": (HIERA, {"embed_dim": INT, "num_heads": INT, "drop_path_rate": NUMBER, "q_pool": INT,
                      "q_stride": INTS, "stages": INTS, "dim_mul": NUMBER, "head_mul": NUMBER,
                      "window_pos_embed_bkg_spatial_size": INTS, "window_spec": INTS,
                      "global_att_blocks": INTS}, frozenset()),
    "neck": (FPN_NECK, {"position_encoding": "position_encoding", "d_model": INT, "backbone_channel_list": INTS,
                        "kernel_size": INT, "stride": INT, "padding": INT,
                        "fpn_interp_model": frozenset({"nearest", "bilinear", "bicubic"}),
                        "fuse_type": frozenset({"sum", "avg"}), "fpn_top_down_levels": INTS + OPTIONAL},
             frozenset({"position_encoding", "d_model", "backbone_channel_list"})),
    "position_encoding": (POSITION_ENCODING, {"num_pos_feats": INT, "temperature": INT, "normalize": BOOL,
                                              "scale": NUMBER + OPTIONAL, "warmup_cache": BOOL, "image_size": INT,
                                              "strides": INTS}, frozenset({"num_pos_feats"})),
}

_LAYOUT_HELP = ("expected 'model: image_encoder: …' as in sam2/configs/sam2.1/*.yaml, or the 'image_encoder' "
                "mapping itself with trunk and neck")


def read_config(config: str | os.PathLike | Mapping) -> tuple[dict, int | None]:
    """The checked image-encoder section of ``config`` (a YAML path or a mapping) and ``model.image_size``.

    The section comes back as plain data without ``_target_`` keys, ready for
    :func:`build_image_encoder`; ``image_size`` is None when the config gives none.
    """
    data = plain(_load(config))
    if not isinstance(data, Mapping):
        raise InputError(f"The SAM2 config is a {type(data).__name__}, not a mapping; {_LAYOUT_HELP}.")
    image_size = None
    if "model" in data:
        model = data["model"]
        if not isinstance(model, Mapping) or "image_encoder" not in model:
            raise InputError(f"The SAM2 config's 'model' section has no image_encoder; {_LAYOUT_HELP}.")
        node, where = model["image_encoder"], "model.image_encoder"
        if model.get("image_size") is not None:
            image_size = _check_value(INT, model["image_size"], "model.image_size")
            if image_size < 64 or image_size % 32:
                raise InputError(f"config model.image_size must be a multiple of 32 of at least 64; got {image_size}.")
    elif "image_encoder" in data:
        node, where = data["image_encoder"], "image_encoder"
    elif "trunk" in data or "neck" in data:
        node, where = data, "image_encoder"
    else:
        raise InputError(f"The SAM2 config has no image encoder; {_LAYOUT_HELP}.")
    return check_section("image_encoder", node, where), image_size


def check_section(section: str, node: Any, where: str) -> dict:
    """``node`` checked against ``SCHEMA[section]``: a plain copy without ``_target_``, or an InputError."""
    target, kinds, required = SCHEMA[section]
    if not isinstance(node, Mapping):
        raise InputError(f"config {where} must be a mapping (the arguments of {target}); got {_what(node)}.")
    if "_target_" in node and node["_target_"] != target:
        raise InputError(f"config {where}._target_={node['_target_']!r} is refused: this section can only build "
                         f"{target}. Remove the _target_ or write {target!r}.")
    unknown = sorted(str(k) for k in node if k != "_target_" and k not in kinds)
    if unknown:
        raise InputError(f"config {where} has unknown key(s) {unknown}; {target.rsplit('.', 1)[1]} takes "
                         f"{', '.join(kinds)}.")
    missing = sorted(required - set(node))
    if missing:
        raise InputError(f"config {where} lacks {', '.join(missing)}.")
    out = {}
    for key, value in node.items():
        if key == "_target_":
            continue
        kind, here = kinds[key], f"{where}.{key}"
        out[key] = check_section(kind, value, here) if kind in SCHEMA else _check_value(kind, value, here)
    return out


def _check_value(kind: Any, value: Any, where: str) -> Any:
    if isinstance(kind, frozenset):
        if isinstance(value, str) and value in kind:
            return str(value)
        raise InputError(f"config {where} must be one of {sorted(kind)}; got {_what(value)}.")
    if kind.endswith(OPTIONAL):
        return None if value is None else _check_value(kind[:-len(OPTIONAL)], value, where)
    if kind == INTS:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"config {where} must be {INTS}; got {_what(value)}.")
        return [_check_value(INT, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind == BOOL and isinstance(value, bool):
        return value
    if kind != BOOL and not isinstance(value, bool):
        if isinstance(value, numbers.Integral):
            return int(value)
        if kind == NUMBER and isinstance(value, numbers.Real):
            return float(value)
    raise InputError(f"config {where} must be {kind}; got {_what(value)}.")


def _what(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping" + (f" with _target_={value['_target_']!r}" if "_target_" in value else "")
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:80] + '…'}"


def build_image_encoder(arch: Mapping) -> Any:
    """sam2's ``ImageEncoder`` described by ``arch`` (a checked section), with random initial weights.

    Modules are made in the order hydra's ``instantiate`` makes them for sam2's
    configs (trunk, position encoding, neck, encoder), so a seed gives the same weights.
    """
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine

    arch = copy.deepcopy(dict(arch))
    neck = arch.pop("neck")
    try:
        trunk = Hiera(**arch.pop("trunk"))
        position = PositionEmbeddingSine(**neck.pop("position_encoding"))
        return ImageEncoder(trunk=trunk, neck=FpnNeck(position_encoding=position, **neck), **arch)
    except (AssertionError, ValueError, TypeError, RuntimeError, IndexError, ZeroDivisionError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"The SAM2 config does not make a working image encoder ({detail}). Check that the "
                         "sizes fit together, e.g. neck.backbone_channel_list must list the trunk's stage widths "
                         "from the last stage to the first, and stages and window_spec have one entry per "
                         "stage.") from None


def plain(node: Any) -> Any:
    """Mappings and lists (OmegaConf containers too, interpolations left unresolved) as plain dicts and lists."""
    if type(node).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, Mapping):
        return {k if isinstance(k, str) else repr(k): plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node


def _load(config: str | os.PathLike | Mapping) -> Any:
    if isinstance(config, Mapping):
        return config
    path = Path(config).expanduser()
    if not path.is_file():
        raise InputError(f"config={str(config)!r} does not exist; pass a SAM2 model YAML file or a mapping.")
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"config={str(config)!r} is not valid YAML: {exc}") from None
