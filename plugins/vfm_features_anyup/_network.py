"""The AnyUp parameters, held under the authors' names so that their released checkpoint loads unchanged.

The network is a container of parameters (``torch.nn.Module`` objects without a
forward pass): the arithmetic that reads them, in memory-bounded chunks and at
requested pixels only, lives in :mod:`._encoder` and :mod:`._attention`. The
names and shapes follow ``anyup/model.py`` of wimmerth/anyup (``AnyUp()`` with
its defaults; 878,080 parameters):

* ``image_encoder``: 1x1 convolution 3 -> 128, then two residual blocks;
* ``query_encoder``, ``key_encoder``: 1x1 convolution 128 -> 128, two residual blocks;
* ``key_features_encoder``: the feature-agnostic layer (``0.basis``, 128 learned 5x5
  filters applied to every input channel), then two residual blocks;
* ``aggregation``: 3x3 convolution 256 -> 128 (reflect padding), two residual blocks;
* ``cross_decode``: a 3x3 convolution of the queries (``conv2d``), RMS norms of
  queries and keys and a multi-head attention's in-projection (``out_proj`` is
  stored but unused: the output is the head-averaged attention applied to the
  input features);
* ``rope.freqs``: the rotary position encoding's (2, 128) frequencies.

A residual block is ``block`` = (GroupNorm(8), SiLU, 1x1 conv, GroupNorm(8), SiLU,
1x1 conv) plus an identity shortcut. torch is imported inside functions only.
"""

from __future__ import annotations

import math
from typing import Any

from vfm_features import WeightsError

from ._spec import LFU_KERNEL, QK_DIM, ROPE_THETA, WEIGHTS_FILE, WEIGHTS_URL

ENCODERS = ("image_encoder", "key_encoder", "query_encoder", "key_features_encoder", "aggregation")


def _res_block(nn: Any, width: int) -> Any:
    block = nn.Module()
    block.block = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, width, 1, bias=False),
                                nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, width, 1, bias=False))
    block.shortcut = nn.Identity()
    return block


def _encoder(nn: Any, first: Any, width: int = QK_DIM) -> Any:
    return nn.Sequential(first, _res_block(nn, width), _res_block(nn, width))


def _rope_frequencies(torch: Any, dim: int = QK_DIM, theta: float = ROPE_THETA) -> Any:
    """The authors' initial (2, dim) frequencies: rows for y (first half of the channels) and x (second half)."""
    one = theta ** torch.linspace(0, -1, dim // 4)
    one = torch.cat([one, one])
    freqs = torch.zeros(2, dim)
    freqs[0, : dim // 2] = one
    freqs[1, -dim // 2:] = one
    return freqs * 2 * math.pi


def build_network(seed: int = 0) -> Any:
    """The AnyUp parameters with a random initialisation drawn from ``seed`` (reproducible, global RNG untouched)."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = nn.Module()
        net.image_encoder = _encoder(nn, nn.Conv2d(3, QK_DIM, 1, bias=False))
        net.key_encoder = _encoder(nn, nn.Conv2d(QK_DIM, QK_DIM, 1, bias=False))
        net.query_encoder = _encoder(nn, nn.Conv2d(QK_DIM, QK_DIM, 1, bias=False))
        unification = nn.Module()
        unification.basis = nn.Parameter(torch.randn(QK_DIM, 1, LFU_KERNEL, LFU_KERNEL))
        net.key_features_encoder = _encoder(nn, unification)
        decode = nn.Module()
        attn = nn.Module()
        attn.norm_q = nn.Module()
        attn.norm_q.weight = nn.Parameter(torch.ones(QK_DIM))
        attn.norm_k = nn.Module()
        attn.norm_k.weight = nn.Parameter(torch.ones(QK_DIM))
        attn.attention = nn.Module()
        attn.attention.in_proj_weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(3 * QK_DIM, QK_DIM)))
        attn.attention.in_proj_bias = nn.Parameter(torch.zeros(3 * QK_DIM))
        attn.attention.out_proj = nn.Linear(QK_DIM, QK_DIM)
        nn.init.zeros_(attn.attention.out_proj.bias)
        decode.cross_attn = attn
        decode.conv2d = nn.Conv2d(QK_DIM, QK_DIM, 3, padding=1, bias=False)
        net.cross_decode = decode
        net.aggregation = _encoder(nn, nn.Conv2d(2 * QK_DIM, QK_DIM, 3, padding=1, padding_mode="reflect",
                                                 bias=False))
        net.rope = nn.Module()
        net.rope.freqs = nn.Parameter(_rope_frequencies(torch))
    return net.requires_grad_(False).eval()


def _listed(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def check_checkpoint(state: Any, net: Any, path: Any) -> dict:
    """``state`` if its names and shapes are exactly those of AnyUp; else a WeightsError that says what differs."""
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not an AnyUp state dict; pass {WEIGHTS_FILE} "
                           f"from {WEIGHTS_URL}.")
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {str(k): tuple(getattr(v, "shape", ())) for k, v in state.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} AnyUp parameter(s) missing ({_listed(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown one(s) ({_listed(unexpected)})")
        if shapes:
            parts.append("other shapes for " + _listed([f"{k} {got[k]} instead of {expected[k]}" for k in shapes]))
        raise WeightsError(f"{path} is not an AnyUp checkpoint: {'; '.join(parts)}. Pass the authors' "
                           f"{WEIGHTS_FILE} ({WEIGHTS_URL}) or a checkpoint of the same architecture.")
    import torch

    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor) or not v.is_floating_point()
           or not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"{path}: the AnyUp parameter(s) {_listed(sorted(bad))} are not finite floating-point "
                           "tensors; the file is damaged. Delete it and download it again.")
    return state


def load_network(state: dict, path: Any) -> Any:
    """The network with the checked ``state`` loaded (float32)."""
    net = build_network(0)
    net.load_state_dict(check_checkpoint(state, net, path), strict=True)
    return net.float()
