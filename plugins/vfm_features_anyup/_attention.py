"""AnyUp's low-resolution side and its attention: keys from the embedding, the queries' 3x3 convolution, windows.

Keys (once per image and embedding): the image's key encoding pooled into every
cell, next to the feature-agnostic encoding of the L2-normalised features (a
learned 5x5 basis applied to every channel, softmax, mean over channels; in
bands of rows so that the 128 x C x h x w responses are never held at once),
mixed by the aggregation block, RMS-normalised and projected per head.

Queries: the 3x3 convolution is a product of each query's 3 x 3 neighbourhood
(rows ordered dy, dx, channel) with the kernel as a matrix, the same arithmetic
for a dense tile and for scattered pixels. Each query attends to the cells of
its window only (the authors' mask): queries are grouped by their window's rows,
so only a group x (its cells) block of logits is built, never a query x cell
mask over the whole grid. The output is the head-averaged attention applied to
the input features, so it keeps their channel count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._encoder import ImageState, pooled_keys
from ._grid import Axis
from ._spec import GN_EPS, GROUPS, LFU_KERNEL, NUM_HEADS, QK_DIM

UNIFY_BYTES = 32 << 20  # bound on the basis responses held at once (one band of rows)


@dataclass
class KeyState:
    """Projected keys (h, w, heads, head width), the features as values (h, w, C), and the grid's axes."""

    keys: Any
    values: Any
    axes: tuple[Axis, Axis]


def rms_norm(x: Any, weight: Any) -> Any:
    """torch.nn.RMSNorm(dim) with its default eps (the dtype's machine epsilon)."""
    import torch
    import torch.nn.functional as F

    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), weight, eps=None)
    eps = torch.finfo(x.dtype).eps
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _grid_blocks(params: dict[str, Any], x: Any, prefix: str) -> Any:
    """The two residual blocks of an encoder on a (1, 128, h, w) grid (GroupNorm over the whole grid)."""
    import torch.nn.functional as F

    for i in (1, 2):
        p = f"{prefix}.{i}.block"
        h = F.silu(F.group_norm(x, GROUPS, params[f"{p}.0.weight"], params[f"{p}.0.bias"], GN_EPS))
        h = F.conv2d(h, params[f"{p}.2.weight"])
        h = F.silu(F.group_norm(h, GROUPS, params[f"{p}.3.weight"], params[f"{p}.3.bias"], GN_EPS))
        x = F.conv2d(h, params[f"{p}.5.weight"]) + x
    return x


def unify(params: dict[str, Any], feats: Any) -> Any:
    """(128, h, w): the feature-agnostic encoding of (C, h, w) features, exactly as the authors' layer, in row bands.

    Every channel is convolved with the 128 basis filters (zero padding, divided
    by the number of cells inside the image); the (128 * C) responses, in the
    authors' order and viewed as (128, C), get a softmax over the first axis and
    a mean over the second.
    """
    import torch
    import torch.nn.functional as F

    basis = params["key_features_encoder.0.basis"]
    C, h, w = feats.shape
    p = LFU_KERNEL // 2
    x = F.pad(F.normalize(feats[None], dim=1), (p, p, p, p))
    weight = basis.repeat(C, 1, 1, 1)

    def counts(n: int) -> Any:
        i = torch.arange(n, device=feats.device)
        return (torch.clamp(i + p, max=n - 1) - torch.clamp(i - p, min=0) + 1).to(feats.dtype)

    denom = counts(h)[:, None] * counts(w)[None, :]
    out = torch.empty(QK_DIM, h, w, device=feats.device)
    band = max(1, UNIFY_BYTES // (4 * QK_DIM * C * w))
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        resp = F.conv2d(x[:, :, r0:r1 + 2 * p], weight, groups=C) / denom[r0:r1]
        out[:, r0:r1] = F.softmax(resp.view(QK_DIM, C, r1 - r0, w), dim=0).mean(dim=1)
    return out


def key_state(params: dict[str, Any], st: ImageState, feats: Any, axes: tuple[Axis, Axis]) -> KeyState:
    """Keys of every embedding cell: pooled image encoding + unified features -> aggregation -> norm -> projection."""
    import torch
    import torch.nn.functional as F

    pooled = pooled_keys(params, st, axes[0].bins(), axes[1].bins())
    unified = _grid_blocks(params, unify(params, feats)[None], "key_features_encoder")
    k = torch.cat([pooled[None], unified], dim=1)
    k = F.conv2d(F.pad(k, (1, 1, 1, 1), mode="reflect"), params["aggregation.0.weight"])
    k = _grid_blocks(params, k, "aggregation")[0].permute(1, 2, 0)  # (h, w, 128)
    k = rms_norm(k, params["cross_decode.cross_attn.norm_k.weight"])
    _, wk, _ = params["cross_decode.cross_attn.attention.in_proj_weight"].chunk(3)
    _, bk, _ = params["cross_decode.cross_attn.attention.in_proj_bias"].chunk(3)
    keys = F.linear(k, wk, bk).reshape(k.shape[0], k.shape[1], NUM_HEADS, QK_DIM // NUM_HEADS)
    return KeyState(keys.contiguous(), feats.permute(1, 2, 0).contiguous(), axes)


def convolve_queries(params: dict[str, Any], patches: Any) -> Any:
    """(n, 128) queries from their (n, 9, 128) neighbourhoods of query encodings (zeros outside the grid)."""
    import torch

    return torch.matmul(patches.reshape(patches.shape[0], 9 * QK_DIM), params["cross_decode.conv2d.weight:mat"])


def patches_of(grid: Any) -> Any:
    """(R * C, 9, 128) neighbourhoods of the inner cells of a zero-padded (R + 2, C + 2, 128) grid."""
    import torch

    R, C = grid.shape[0] - 2, grid.shape[1] - 2
    views = [grid[dy:dy + R, dx:dx + C] for dy in range(3) for dx in range(3)]
    return torch.stack(views, dim=2).reshape(R * C, 9, QK_DIM)


def attend(params: dict[str, Any], ks: KeyState, queries: Any, rows: tuple[np.ndarray, np.ndarray],
           cols: tuple[np.ndarray, np.ndarray]) -> Any:
    """(n, C) outputs of ``queries`` (n, 128), each attending to the cells rows[0]..rows[1] x cols[0]..cols[1].

    Queries with the same rows of cells form a group; a group is cut where its
    columns would span more than twice one window, and within it each query's
    cells outside its own columns are masked (weight exactly 0, as the authors' mask).
    """
    import torch
    import torch.nn.functional as F

    n = queries.shape[0]
    device = queries.device
    q = rms_norm(queries, params["cross_decode.cross_attn.norm_q.weight"])
    wq, _, _ = params["cross_decode.cross_attn.attention.in_proj_weight"].chunk(3)
    bq, _, _ = params["cross_decode.cross_attn.attention.in_proj_bias"].chunk(3)
    head = QK_DIM // NUM_HEADS
    q = F.linear(q, wq, bq) * math.sqrt(1.0 / head)
    order = np.lexsort((cols[0], rows[1], rows[0]))
    ly, hy, lx, hx = rows[0][order], rows[1][order], cols[0][order], cols[1][order]
    q = q[torch.as_tensor(order, device=device)].reshape(n, NUM_HEADS, head).permute(1, 0, 2)  # (heads, n, head)
    out = torch.empty(n, ks.values.shape[2], device=device)
    starts = np.flatnonzero(np.r_[True, (ly[1:] != ly[:-1]) | (hy[1:] != hy[:-1])])
    width = int((hx - lx).max())
    for s, e in zip(starts, np.r_[starts[1:], n]):
        i = int(s)
        while i < e:
            j = i + int(np.searchsorted(lx[i:e], lx[i] + width, side="right"))
            y0, y1, x0, x1 = int(ly[i]), int(hy[i]), int(lx[i]), int(hx[i:j].max())
            keys = ks.keys[y0:y1, x0:x1].reshape(-1, NUM_HEADS, head).permute(1, 2, 0)  # (heads, head, m)
            logits = torch.matmul(q[:, i:j], keys)  # (heads, ng, m)
            if (lx[i:j] != x0).any() or (hx[i:j] != x1).any():
                kc = np.tile(np.arange(x0, x1), y1 - y0)
                outside = (kc[None] < lx[i:j, None]) | (kc[None] >= hx[i:j, None])
                logits = logits.masked_fill(torch.as_tensor(outside, device=device), float("-inf"))
            weights = F.softmax(logits, dim=-1).mean(dim=0)
            out[i:j] = torch.matmul(weights, ks.values[y0:y1, x0:x1].reshape(-1, ks.values.shape[2]))
            i = j
    result = torch.empty_like(out)
    result[torch.as_tensor(order, device=device)] = out
    return result
