"""The probes' networks (torch): Gaussian-masked cross-attention, DeAP's decoder, ObAP's per-object MLP.

torch is imported when a network is first built or run, never when this module
is imported: the classes are made on first access (module ``__getattr__``), with
their module and qualified names set so that fitted probes pickle as usual, and
the functions import torch themselves. So listing and ``import vfm_features``
never load torch.
Parameters are initialised from a numpy generator (:func:`init_parameters`), so a
seed gives the same network in any thread without touching torch's global RNG.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from .grid import PE_DIM

if TYPE_CHECKING:
    import torch

MASKED = -1e9  # logit added for keys outside the window or the image
MIN_SIGMA = 0.5  # pixels; keeps the Gaussian bias far above MASKED inside the window


CLASSES = ("GaussianAttention", "Decoder", "DeapNet", "ObapNet")


@lru_cache(maxsize=None)
def _classes() -> dict[str, type]:
    """The torch modules, defined on first use (importing torch then)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class GaussianAttention(nn.Module):
        """Cross-attention from queries to keys whose logits fall off with distance, a Gaussian per head.

        Head ``h`` adds ``-d^2 / (2 sigma_h^2)`` to the scaled dot product of a
        query and a key ``d`` pixels away; ``sigma_h`` (pixels) is learned, and
        ``MASKED`` removes keys outside the query's window or the image. Keys and
        values are linear maps of the key features with their position code; each
        head's value is twice as wide as its key.
        """

        def __init__(self, n_query: int, n_key: int, dim: int, n_heads: int, sigma: float) -> None:
            super().__init__()
            self.n_heads, self.dim = n_heads, dim
            self.proj_q = nn.Linear(n_query, dim)
            self.proj_k = nn.Linear(n_key, dim)
            self.proj_v = nn.Linear(n_key, 2 * dim)
            self.log_sigma = nn.Parameter(torch.full((n_heads,), math.log(sigma)))

        def sigma(self) -> torch.Tensor:
            return self.log_sigma.exp().clamp(min=MIN_SIGMA)

        def project(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Keys and values (..., dim) and (..., 2 * dim) of key features (..., n_key)."""
            return self.proj_k(keys), self.proj_v(keys)

        def attend(self, queries: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dist2: torch.Tensor,
                   allowed: torch.Tensor, key_bias: torch.Tensor | None = None) -> torch.Tensor:
            """Attend from queries (N, Lq, n_query) to projected keys (N, Lk, dim) / values (N, Lk, 2 dim).

            ``dist2`` (Lq, Lk) or (N, Lq, Lk): squared distances in pixels; ``allowed``
            (same shape, bool): the keys each query may see; ``key_bias`` (N, Lk):
            0 for keys inside the image, ``MASKED`` outside (None: all inside). The
            shared (Lq, Lk) form is broadcast, never copied per query block.
            Returns (N, Lq, 2 * dim).
            """
            N, Lq, _ = queries.shape
            Lk = k.shape[1]
            h, d = self.n_heads, self.dim // self.n_heads
            q = self.proj_q(queries).view(N, Lq, h, d).transpose(1, 2)
            k = k.reshape(N, Lk, h, d).permute(0, 2, 3, 1)
            v = v.reshape(N, Lk, h, 2 * d).transpose(1, 2)
            s2 = self.sigma() ** 2
            if dist2.dim() == 2:
                bias = (-dist2[None] / (2 * s2[:, None, None])).masked_fill(~allowed[None], MASKED)[None]
            else:
                bias = (-dist2[:, None] / (2 * s2[None, :, None, None])).masked_fill(~allowed[:, None], MASKED)
            logits = (q @ k).float() * (d ** -0.5) + bias
            if key_bias is not None:
                logits = logits + key_bias[:, None, None, :]
            weights = torch.softmax(logits, -1).to(v.dtype)
            return (weights @ v).transpose(1, 2).reshape(N, Lq, 2 * self.dim)

        def forward(self, queries: torch.Tensor, keys: torch.Tensor, dist2: torch.Tensor, allowed: torch.Tensor,
                    key_bias: torch.Tensor | None = None) -> torch.Tensor:
            """:meth:`attend` on key features (N, Lk, n_key), projected here."""
            k, v = self.project(keys)
            return self.attend(queries, k, v, dist2, allowed, key_bias)


    class Decoder(nn.Module):
        """From the query grid to full resolution: (conv 3x3 + ReLU + transposed conv x2 + ReLU) per step,
        a 1x1 convolution to the classes, plus a bilinear skip from the query grid."""

        def __init__(self, dim: int, width: int, n_classes: int, n_up: int) -> None:
            super().__init__()
            self.factor = 2 ** n_up
            self.steps = nn.ModuleList(
                nn.Sequential(nn.Conv2d(dim if i == 0 else width, width, 3, padding=1), nn.ReLU(),
                              nn.ConvTranspose2d(width, width, 2, stride=2), nn.ReLU())
                for i in range(n_up))
            self.out = nn.Conv2d(width, n_classes, 1)
            self.skip = nn.Conv2d(dim, n_classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skip = F.interpolate(self.skip(x), scale_factor=self.factor, mode="bilinear", align_corners=False)
            for step in self.steps:
                x = step(x)
            return self.out(x) + skip


    class DeapNet(nn.Module):
        """Dense attentive probe: query grid -> Gaussian cross-attention -> two-layer FFN -> decoder."""

        def __init__(self, n_features: int, n_classes: int, *, dim: int, n_heads: int, sigma: float,
                     decoder_width: int, n_up: int) -> None:
            super().__init__()
            self.attn = GaussianAttention(PE_DIM, n_features + PE_DIM, dim, n_heads, sigma)
            self.ffn = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
            self.norm = nn.LayerNorm(dim)
            self.decoder = Decoder(dim, decoder_width, n_classes, n_up)

        def ffn_norm(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.ffn(x))


    class ObapNet(nn.Module):
        """Object attentive probe: one query per object -> Gaussian cross-attention -> two-layer MLP."""

        def __init__(self, n_features: int, n_classes: int, *, dim: int, n_heads: int, sigma: float,
                     n_query: int = PE_DIM) -> None:
            super().__init__()
            self.attn = GaussianAttention(n_query, n_features + PE_DIM, dim, n_heads, sigma)
            self.norm = nn.LayerNorm(2 * dim)
            self.mlp = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, n_classes))

        def forward(self, queries, keys, dist2, allowed, key_bias=None) -> torch.Tensor:
            """Logits (N, K) of N objects; queries (N, 1, n_query), keys (N, Lk, n_key), dist2 / allowed (N, 1, Lk)."""
            return self.mlp(self.norm(self.attn(queries, keys, dist2, allowed, key_bias)[:, 0]))

    made = {"GaussianAttention": GaussianAttention, "Decoder": Decoder, "DeapNet": DeapNet, "ObapNet": ObapNet}
    for name, cls in made.items():  # pickle finds them as attributes of this module
        cls.__module__, cls.__qualname__ = __name__, name
    return made


def __getattr__(name: str) -> Any:
    if name in CLASSES:
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def init_parameters(net: Any, seed: int) -> None:
    """Deterministic initialisation from numpy: uniform +-1/sqrt(fan_in) (torch's default range), LayerNorm 1/0.

    ``log_sigma`` keeps the value the network was built with.
    """
    import torch
    from torch import nn

    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.fill_(0.0)
            elif isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                w = module.weight
                if isinstance(module, nn.ConvTranspose2d):
                    fan_in = w.shape[0] * w[0, 0].numel()
                else:
                    fan_in = w[0].numel()
                bound = 1.0 / math.sqrt(max(1, fan_in))
                w.copy_(torch.from_numpy(rng.uniform(-bound, bound, tuple(w.shape)).astype(np.float32)))
                if module.bias is not None:
                    module.bias.copy_(torch.from_numpy(
                        rng.uniform(-bound, bound, tuple(module.bias.shape)).astype(np.float32)))


TILE = 4  # queries per side of one attention tile in DeAP


@lru_cache(maxsize=32)
def _tile_geometry(window: int, key_factor: int, stride: float):
    """dist2 (T*T, kk) and the window (T*T, kk) of a T x T query tile and the keys around it.

    The keys of a tile are the key cells of the query cells from ``window``
    before the tile to ``window`` after it; a query sees those of the query cells
    within ``window`` cells of its own (a square), weighted by their distance.
    """
    import torch

    T, r, w = TILE, key_factor, window
    n = r * (T + 2 * w)
    q = (np.arange(T) + 0.5) * stride
    k = (np.arange(n) + 0.5) * (stride / r) - w * stride
    d = q[:, None] - k[None, :]  # (T, n), the same along both axes
    inside = np.abs((np.arange(n) // r - w)[None, :] - np.arange(T)[:, None]) <= w
    dist2 = (d[:, None, :, None] ** 2 + d[None, :, None, :] ** 2).reshape(T * T, n * n)
    allowed = (inside[:, None, :, None] & inside[None, :, None, :]).reshape(T * T, n * n)
    return torch.from_numpy(dist2.astype(np.float32)), torch.from_numpy(allowed)


def deap_features(net: Any, keys: torch.Tensor, valid: torch.Tensor, qcode: torch.Tensor, *,
                  window: int, key_factor: int, stride: float) -> torch.Tensor:
    """Query features (N, dim, rows, cols) of N blocks of rows x cols queries.

    ``keys`` (N, C + PE_DIM, r * (rows + 2w), r * (cols + 2w)) are the key
    features from ``window`` query cells before the block to as many after it,
    ``valid`` (N, same spatial shape) marks keys inside the image, ``qcode`` (N,
    rows, cols, PE_DIM) holds the queries' position codes. Keys are projected
    once, then cut into the overlapping key windows of T x T query tiles
    (``unfold``), so each query's logits cover little more than its own window.
    """
    import torch
    import torch.nn.functional as F

    N, rows, cols, _ = qcode.shape
    T, r, w = TILE, key_factor, window
    pr, pc = -rows % T, -cols % T
    k, v = net.attn.project(keys.permute(0, 2, 3, 1))
    kv = torch.cat([k, v, torch.where(valid, 0.0, MASKED).to(k.dtype)[..., None]], -1).permute(0, 3, 1, 2)
    if pr or pc:
        pad = torch.zeros(kv.shape[:1] + (kv.shape[1], kv.shape[2] + r * pr, kv.shape[3] + r * pc),
                          dtype=kv.dtype, device=kv.device)
        pad[:, -1] = MASKED
        pad[:, :, :kv.shape[2], :kv.shape[3]] = kv
        kv = pad
        qcode = F.pad(qcode, (0, 0, 0, pc, 0, pr))
    R, Cc = (rows + pr) // T, (cols + pc) // T
    n = r * (T + 2 * w)
    width = kv.shape[1]
    tiles = F.unfold(kv, n, stride=r * T)  # (N, width * n * n, R * Cc)
    tiles = tiles.view(N, width, n * n, R * Cc).permute(0, 3, 2, 1).reshape(N * R * Cc, n * n, width)
    dim = net.attn.dim
    q = qcode.reshape(N, R, T, Cc, T, -1).permute(0, 1, 3, 2, 4, 5).reshape(N * R * Cc, T * T, -1)
    dist2, allowed = (t.to(keys.device) for t in _tile_geometry(w, r, float(stride)))
    out = net.attn.attend(q, tiles[..., :dim], tiles[..., dim:3 * dim], dist2, allowed, tiles[..., -1].float())
    out = net.ffn_norm(out)
    out = out.reshape(N, R, Cc, T, T, -1).permute(0, 5, 1, 3, 2, 4).reshape(N, -1, R * T, Cc * T)
    return out[:, :, :rows, :cols]


def dice_ce_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, dice_weight: float) -> torch.Tensor:
    """Class-weighted cross-entropy plus ``dice_weight`` x (1 - soft Dice) over the labelled pixels (labels >= 0).

    ``logits`` (N, K, h, w) float32, ``labels`` (N, h, w) with -1 where unlabelled.
    Dice is averaged over the classes labelled in the batch.
    """
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, labels, weight=weights, ignore_index=-1)
    if dice_weight == 0:
        return ce
    mask = labels >= 0
    probs = torch.softmax(logits, 1)
    onehot = F.one_hot(labels.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    m = mask[:, None].to(probs.dtype)
    inter = (probs * onehot * m).sum((0, 2, 3))
    denom = (probs * m).sum((0, 2, 3)) + (onehot * m).sum((0, 2, 3))
    present = (onehot * m).sum((0, 2, 3)) > 0
    dice = (2 * inter + 1e-6) / (denom + 1e-6)
    return ce + dice_weight * (1 - dice[present].mean())
