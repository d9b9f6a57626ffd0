"""AnyUp's image side at full resolution, streamed: GroupNorm statistics, query encodings at pixels, pooled keys.

Every convolution of the image, query and key encoders is 1x1, so an encoding
is a function of one pixel, its position (rotary encoding) and the GroupNorm
statistics of the whole image. Those statistics are computed here once per
image by streaming bands of rows through the network, one pass per GroupNorm
layer (each pass needs the statistics of the layers before it), accumulating
sums in float64; afterwards any pixel's query encoding is computed on its own,
so queries are answered at requested pixels or in small tiles and no
C x H x W map is ever built. Memory: a band of at most ``STREAM_PIXELS``
pixels x 128 channels at a time.

torch is imported inside functions only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._grid import pool_matrix
from ._spec import GN_EPS, GROUPS, QK_DIM

STREAM_PIXELS = 32_768  # pixels per band of the statistics passes (16 MiB per 128-channel activation)
MAX_DISTINCT = 1 << 17  # most distinct grey values whose image encodings are tabulated (64 MiB)


def _res_block(prefix: str) -> list[tuple[str, ...]]:
    return [("save",), ("gn", f"{prefix}.block.0"), ("silu",), ("conv", f"{prefix}.block.2.weight"),
            ("gn", f"{prefix}.block.3"), ("silu",), ("conv", f"{prefix}.block.5.weight"), ("add",)]


def _encoder_ops(name: str) -> list[tuple[str, ...]]:
    return [("conv", f"{name}.0.weight")] + _res_block(f"{name}.1") + _res_block(f"{name}.2")


TRUNK = _encoder_ops("image_encoder")
QUERY = _encoder_ops("query_encoder")
KEY = _encoder_ops("key_encoder")


def _norms(ops: list[tuple[str, ...]]) -> list[str]:
    return [op[1] for op in ops if op[0] == "gn"]


def prepare_params(net: Any, device: str) -> dict[str, Any]:
    """The network's tensors on ``device`` (float32), and its 1x1 and 3x3 convolutions as matrices (rows in, out)."""
    import torch

    params = {k: v.detach().to(device=device, dtype=torch.float32).contiguous() for k, v in net.state_dict().items()}
    for name, w in list(params.items()):
        if w.ndim == 4 and w.shape[2:] == (1, 1):
            params[name + ":mat"] = w[:, :, 0, 0].t().contiguous()  # (in, out)
    w = params["cross_decode.conv2d.weight"]  # (out, in, 3, 3) -> rows ordered (dy, dx, in)
    params["cross_decode.conv2d.weight:mat"] = w.permute(2, 3, 1, 0).reshape(9 * QK_DIM, QK_DIM).contiguous()
    return params


@dataclass
class ImageState:
    """What AnyUp needs of one image: the normalised guidance, rotary coordinates and every GroupNorm's affine map.

    When the image has few distinct guidance values (any 8- or 16-bit grey image),
    the image encoder - a function of the pixel value alone before the rotary
    encoding - is evaluated once per value (``table``) and looked up per pixel
    (``index``): the same numbers, computed once.
    """

    guide: Any  # (H, W, 3) float32 tensor
    ry: Any  # (H,) rotary coordinate of each row: linspace(0, 1, H), as the authors
    cx: Any  # (W,)
    norm: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # GroupNorm name -> (scale, shift) per channel
    table: Any = None  # (U, 128) image-encoder output of each distinct guidance value, or None
    index: Any = None  # (H * W,) row of ``table`` of each pixel

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.guide.shape[0]), int(self.guide.shape[1])


def _run(ops: list[tuple[str, ...]], x: Any, params: dict[str, Any], norm: dict[str, Any],
         stop: str | None = None) -> Any:
    """Apply ``ops`` to rows ``x`` (n, channels); with ``stop``, return the input of that GroupNorm instead.

    A GroupNorm right after a convolution is folded into it (``x @ (W * scale) + shift``,
    one product instead of a product and a pass over the rows).
    """
    import torch
    import torch.nn.functional as F

    saved = None
    i = 0
    while i < len(ops):
        kind = ops[i][0]
        if kind == "conv":
            w = params[ops[i][1] + ":mat"]
            after = ops[i + 1] if i + 1 < len(ops) else ("",)
            if after[0] == "gn" and after[1] != stop and after[1] in norm:
                scale, shift = norm[after[1]]
                x = torch.addmm(shift, x, w * scale)
                i += 1
            else:
                x = torch.matmul(x, w)
        elif kind == "gn":
            if ops[i][1] == stop:
                return x
            scale, shift = norm[ops[i][1]]
            x = torch.addcmul(shift, x, scale)  # a new tensor: the residual input stays as it was
        elif kind == "silu":
            x = F.silu(x, inplace=True)
        elif kind == "save":
            saved = x
        else:  # "add": the residual
            x = x.add_(saved)
        i += 1
    return x


def _rope(params: dict[str, Any], x: Any, ry: Any, cx: Any) -> Any:
    """Rotary position encoding of rows ``x`` (n, 128) at normalised coordinates (ry, cx)."""
    import torch

    freqs = params["rope.freqs"]
    angle = torch.addr(torch.outer(ry, freqs[0]), cx, freqs[1])
    sin = torch.sin(angle)
    out = x * torch.cos(angle)
    half = x.shape[1] // 2
    out[:, :half].addcmul_(x[:, half:], sin[:, :half], value=-1)  # rotate_half(x) = (-x2, x1)
    out[:, half:].addcmul_(x[:, :half], sin[:, half:])
    return out


def _trunk(params: dict[str, Any], st: ImageState, ys: Any, xs: Any) -> Any:
    """(n, 128) image encodings, rotary-encoded, at pixels (ys, xs) (index tensors)."""
    if st.table is not None:
        x = st.table[st.index[ys * st.shape[1] + xs]]
    else:
        x = _run(TRUNK, st.guide[ys, xs], params, st.norm)
    return _rope(params, x, st.ry[ys], st.cx[xs])


def _pixels(st: ImageState, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[Any, Any]:
    """Index tensors (ys, xs) of a rectangle of pixels, row by row."""
    import torch

    (y0, y1), (x0, x1) = rows, cols
    device = st.guide.device
    return (torch.arange(y0, y1, device=device).repeat_interleave(x1 - x0),
            torch.arange(x0, x1, device=device).repeat(y1 - y0))


def _bands(st: ImageState) -> list[tuple[int, int]]:
    H, W = st.shape
    step = max(1, STREAM_PIXELS // W)
    return [(y, min(H, y + step)) for y in range(0, H, step)]


class _Moments:
    """Sums of x and x^2 per GroupNorm group over every pixel and channel of the group.

    Each band is summed in float32 around a shift (the first band's channel
    means, so that a large mean does not cancel the variance) and the bands are
    added in float64.
    """

    def __init__(self) -> None:
        self.shift = self.s = self.ss = None
        self.n = 0.0

    def add(self, x: Any, counts: Any = None) -> None:
        """Add rows ``x`` (n, 128), each standing for ``counts`` pixels (default one)."""
        import torch

        if self.shift is None:
            weighted = None if counts is None else (x.double() * counts[:, None]).sum(0) / counts.sum()
            self.shift = x.mean(dim=0) if counts is None else weighted.float()
            self.s = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
            self.ss = torch.zeros_like(self.s)
        d = x - self.shift
        if counts is None:
            self.s += d.sum(dim=0).double()
            self.ss += (d * d).sum(dim=0).double()
            self.n += float(x.shape[0])
        else:
            d = d.double()
            self.s += (d * counts[:, None]).sum(dim=0)
            self.ss += (d * d * counts[:, None]).sum(dim=0)
            self.n += float(counts.sum())

    def affine(self, params: dict[str, Any], name: str) -> tuple[Any, Any]:
        """(scale, shift) per channel such that GroupNorm(x) = x * scale + shift (torch's biased variance, eps)."""
        import torch

        per = QK_DIM // GROUPS
        shift = self.shift.double()
        # per channel: sum of x = s + n shift; then per group
        sx = (self.s + self.n * shift).reshape(GROUPS, per).sum(1)
        n = self.n * per
        mean = sx / n
        # the group variance around the group mean, from shifted sums (no large-mean cancellation)
        centred = (self.ss + self.n * (shift - mean.repeat_interleave(per)) ** 2
                   + 2 * (shift - mean.repeat_interleave(per)) * self.s).reshape(GROUPS, per).sum(1)
        var = torch.clamp(centred / n, min=0)
        rstd = 1.0 / torch.sqrt(var + GN_EPS)
        mean, rstd = mean.repeat_interleave(per), rstd.repeat_interleave(per)
        w, b = params[name + ".weight"].double(), params[name + ".bias"].double()
        return (rstd * w).float(), (b - mean * rstd * w).float()


def _distinct(guide: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(values (U, 3), index (N,), counts (U,)) of the distinct guidance pixels, or None when there are too many."""
    flat = guide.reshape(-1, 3)
    limit = min(len(flat) // 4, MAX_DISTINCT)
    if limit < 1:
        return None
    grey = bool(np.array_equal(flat[:, 0], flat[:, 1]) and np.array_equal(flat[:, 0], flat[:, 2]))
    if not grey:
        return None
    values, index, counts = np.unique(flat[:, 0], return_inverse=True, return_counts=True)
    if len(values) > limit:
        return None
    return np.repeat(values[:, None], 3, axis=1), index.reshape(-1), counts


def image_state(params: dict[str, Any], guide: np.ndarray, device: str) -> ImageState:
    """Every GroupNorm's statistics over the whole image, one streamed pass per layer.

    Four passes for the image encoder (on the distinct values only, when tabulated),
    four for the query and key encoders together; :func:`pooled_keys` makes one more.
    """
    import torch

    H, W = guide.shape[:2]
    st = ImageState(torch.as_tensor(guide, device=device), torch.linspace(0, 1, H, device=device),
                    torch.linspace(0, 1, W, device=device))
    bands = _bands(st)
    distinct = _distinct(guide)
    if distinct is not None:  # the image encoder on each distinct value, weighted by how often it occurs
        values, index, counts = (torch.as_tensor(a, device=device) for a in distinct)
        weights = counts.double()
        for name in _norms(TRUNK):
            moments = _Moments()
            moments.add(_run(TRUNK, values, params, st.norm, stop=name), weights)
            st.norm[name] = moments.affine(params, name)
        st.table, st.index = _run(TRUNK, values, params, st.norm), index
    else:
        for name in _norms(TRUNK):
            moments = _Moments()
            for rows in bands:
                ys, xs = _pixels(st, rows, (0, W))
                moments.add(_run(TRUNK, st.guide[ys, xs], params, st.norm, stop=name))
            st.norm[name] = moments.affine(params, name)
    for qname, kname in zip(_norms(QUERY), _norms(KEY)):
        mq, mk = _Moments(), _Moments()
        for rows in bands:
            t = _trunk(params, st, *_pixels(st, rows, (0, W)))
            mq.add(_run(QUERY, t, params, st.norm, stop=qname))
            mk.add(_run(KEY, t, params, st.norm, stop=kname))
        st.norm[qname] = mq.affine(params, qname)
        st.norm[kname] = mk.affine(params, kname)
    return st


def pooled_keys(params: dict[str, Any], st: ImageState, bins_y: tuple[np.ndarray, np.ndarray],
                bins_x: tuple[np.ndarray, np.ndarray]) -> Any:
    """(128, h, w): the key encoding of every pixel, averaged over each embedding cell's bin (one streamed pass)."""
    import torch

    H, W = st.shape
    h, w = len(bins_y[0]), len(bins_x[0])
    device = st.guide.device
    py = torch.as_tensor(pool_matrix(*bins_y, range(h), range(H)), device=device)
    px = torch.as_tensor(pool_matrix(*bins_x, range(w), range(W)), device=device)
    total = torch.zeros(h, w * QK_DIM, device=device)
    for y0, y1 in _bands(st):
        k = _run(KEY, _trunk(params, st, *_pixels(st, (y0, y1), (0, W))), params, st.norm)
        across = torch.matmul(px, k.reshape(y1 - y0, W, QK_DIM))  # (rows, w, 128)
        total += torch.matmul(py[:, y0:y1], across.reshape(y1 - y0, w * QK_DIM))
    return total.reshape(h, w, QK_DIM).permute(2, 0, 1)


def query_field(params: dict[str, Any], st: ImageState, ys: Any, xs: Any) -> Any:
    """(n, 128) query encodings at pixels (ys, xs) (index tensors), before the queries' 3x3 convolution."""
    return _run(QUERY, _trunk(params, st, ys, xs), params, st.norm)


def query_field_rect(params: dict[str, Any], st: ImageState, rows: tuple[int, int], cols: tuple[int, int]) -> Any:
    """(rows, cols, 128) query encodings of a rectangle of pixels."""
    return query_field(params, st, *_pixels(st, rows, cols)).reshape(rows[1] - rows[0], cols[1] - cols[0], QK_DIM)
