"""The ``deap`` pixel head: a dense attentive probe trained on cached embeddings.

Architecture (after Lüddecke & Ecker, "Dense Attentive Probing"; written anew):

* a query grid at 1/``query_stride`` of the image (1/8); each query is a linear
  map of the sinusoidal code of its position;
* keys and values: the embedding read on a grid ``key_factor`` times finer than
  the queries (through the classifier's upsampler; averaged when the embedding is
  finer), standardised, plus the sinusoidal code of their position;
* cross-attention with ``n_heads`` heads whose logits fall off as a Gaussian of
  the query-key distance, its width sigma learned per head (initialised at
  ``sigma`` times the image side); a query sees the keys within ``window`` query
  cells (``context`` pixels, default three initial sigmas) - the Gaussian makes
  farther keys negligible, the window makes the cost linear in the image size;
* a two-layer FFN with layer norm, then a small convolutional decoder to full
  resolution: per x2 step a 3x3 convolution + ReLU + transposed convolution +
  ReLU, a 1x1 convolution to the classes, plus a bilinear skip from the query grid.

Training uses sparse labels only: crops of ``crop`` x ``crop`` query cells
around labelled pixels, a loss mask (labelled pixels, away from the crop's
border), class-weighted cross-entropy plus ``dice_weight`` x soft Dice, AdamW.
Every prediction - a band, a block, the labelled pixels - decodes its query
cells with a border of ``HALO`` cells, more than the decoder's reach, so the
result does not depend on how an image is cut into bands or blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vfm_features.errors import InputError
from vfm_features.heads.base import PixelHead
from vfm_features.validation import check_budget, check_int, check_is_fitted

from .grid import PE_DIM, PE_PERIODS, band_taps, cell_centres, grid_shape, key_features, lerp, position_code
from .options import STRIDES, check_float
from .probe import Probe
from .sampling import class_weights, inverse_frequency, seed_pixel_budget, validation_split

HALO = 3  # query cells decoded around every prediction (the decoder reaches less than 2.5)
BAND = 16  # query rows decoded at once (bounds memory on large images)
COLUMNS = 64  # query columns attended at once


@dataclass
class _Region:
    """A rectangle of the query grid: keys around it, query codes and which cells lie in the image.

    Local cell (0, 0) is image query cell (q0, c0); keys start ``window`` query
    cells before that.
    """

    q0: int
    c0: int
    keys: np.ndarray  # (C + PE_DIM, key_factor * (nq + 2w), key_factor * (nc + 2w)) float32
    valid: np.ndarray  # (key rows, key cols) bool: inside the image
    qcode: np.ndarray  # (nq, nc, PE_DIM) float32
    qvalid: np.ndarray  # (nq, nc) bool


class DeapPixelHead(Probe, PixelHead):
    """Dense attentive probe (DeAP) on the embedding grid; needs torch.

    Parameters
    ----------
    dim, n_heads : width of the queries and attention heads (``dim`` divisible by ``n_heads``).
    sigma : initial attention width (Gaussian sigma) as a fraction of the mean training image side.
    context : pixels around a query that attention sees (None: three initial sigmas).
    query_stride : image pixels per query cell (8: a query grid at 1/8; a power of two).
    key_factor : key cells per query cell along each axis (1: keys on the query grid; 2: at 1/4 of the image).
    decoder_width : channels of the convolutional decoder.
    dice_weight : weight of the soft Dice loss added to the class-weighted cross-entropy.
    lr, weight_decay : AdamW.
    max_iter, batch_size, crop : iterations at most, crops per iteration, crop side in query cells.
    val_fraction, val_every, patience : held-out share of the labels (in 32-pixel blocks; 0.1: pixels are
        many, training needs them more than validation), validation interval (iterations) and validations
        without improvement before stopping (0 share: no validation).
    max_time : seconds of training at most (None: no limit).
    budget : labelled pixels used at most, drawn by the seed's rule (None: all given).
    device : 'auto' (the GPU when present), 'cpu', 'cuda', ...; not saved.
    precision : 'float32' or 'bfloat16'.
    random_state : seed of the initialisation, split and batches.
    progress : show a progress bar (or a callable(done, total)); not saved.
    """

    def __init__(self, *, dim: int = 32, n_heads: int = 8, sigma: float = 0.05, context: float | None = None,
                 query_stride: int = 8, key_factor: int = 1, decoder_width: int = 8, dice_weight: float = 1.0,
                 lr: float = 1e-3, weight_decay: float = 1e-2, max_iter: int = 1000, batch_size: int = 4,
                 crop: int = 12, val_fraction: float = 0.1, val_every: int = 25, patience: int = 6,
                 max_time: float | None = None, budget: int | None = None, device: str = "auto",
                 precision: str = "float32", random_state: int | None = None, progress: Any = False) -> None:
        self.dim = dim
        self.n_heads = n_heads
        self.sigma = sigma
        self.context = context
        self.query_stride = query_stride
        self.key_factor = key_factor
        self.decoder_width = decoder_width
        self.dice_weight = dice_weight
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.crop = crop
        self.val_fraction = val_fraction
        self.val_every = val_every
        self.patience = patience
        self.max_time = max_time
        self.budget = budget
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.progress = progress

    # -- parameters ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        super()._check_params()
        check_int(self.query_stride, "query_stride")
        if self.query_stride not in STRIDES:
            raise InputError(f"query_stride={self.query_stride} is not valid; use one of {list(STRIDES)} "
                             "(8: a query grid at 1/8 of the image).")
        check_int(self.key_factor, "key_factor")
        if self.key_factor not in (1, 2, 4) or self.query_stride % self.key_factor:
            raise InputError(f"key_factor={self.key_factor} is not valid with query_stride={self.query_stride}; use 1, "
                             "2 or 4 key cells per query cell, each a whole number of pixels.")
        check_int(self.decoder_width, "decoder_width", hint="channels of the decoder, e.g. 8")
        if self.decoder_width > 256:
            raise InputError(f"decoder_width={self.decoder_width} is too large; use at most 256.")
        check_float(self.dice_weight, "dice_weight", low=0.0, high=100.0)
        check_int(self.crop, "crop", low=2 * HALO + 1, hint=f"query cells per crop side, at least {2 * HALO + 1}")
        if self.crop > 64:
            raise InputError(f"crop={self.crop} is too large; use at most 64 query cells.")
        check_budget(self.budget)

    def _build_net(self, n_features: int, n_classes: int, sigma_px: float) -> Any:
        from .nets import DeapNet

        return DeapNet(n_features, n_classes, dim=self.dim, n_heads=self.n_heads, sigma=sigma_px,
                       decoder_width=self.decoder_width, n_up=int(round(math.log2(self.query_stride))))

    # -- geometry -----------------------------------------------------------------------------
    def _grids(self, image_shape: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """(query grid, key grid) shapes of an image: the cells that touch it."""
        return grid_shape(image_shape, self.query_stride), grid_shape(image_shape, self._key_stride())

    def _key_stride(self) -> int:
        return self.query_stride // self.key_factor

    @property
    def context_px(self) -> int:
        """Pixels on each side of a pixel that its prediction reads: the attention window plus the decoder's reach.

        Predicting a block from the block alone equals the whole-image prediction
        in the block's core when the block's origin is a multiple of
        ``query_stride`` and its halo is at least this plus the extractor's halo.
        """
        check_is_fitted(self, "window_")
        return self.query_stride * (self.window_ + HALO + 1)

    @property
    def block_alignment(self) -> int:
        """Pixels that block origins must be multiples of: the query stride and the longest position-code period.

        Queries and keys carry a sinusoidal code of their position in the block,
        so a block sees the whole image's codes only when shifted by whole periods.
        """
        return math.lcm(self.query_stride, int(max(PE_PERIODS)))

    def _region(self, emb: Any, image: Any, upsampler: Any, rows: tuple[int, int], cols: tuple[int, int],
                raw: np.ndarray | None = None) -> _Region:
        """Region of query rows ``rows`` x columns ``cols`` (image query cells; may reach outside the image).

        ``raw``: the image's whole key grid, already read (training); else the
        keys the region needs are read now.
        """
        (qh, qw), (kh, kw) = self._grids(emb.geometry.image_shape)
        S, r, w = self.query_stride, self.key_factor, self.window_
        (a, b), (c, d) = rows, cols
        kr0, kr1, kc0, kc1 = r * (a - w), r * (b + w), r * (c - w), r * (d + w)
        C = self.n_features_in_
        keys = np.zeros((C + PE_DIM, kr1 - kr0, kc1 - kc0), np.float32)
        valid = np.zeros((kr1 - kr0, kc1 - kc0), bool)
        ir0, ir1, ic0, ic1 = max(kr0, 0), min(kr1, kh), max(kc0, 0), min(kc1, kw)
        if ir1 > ir0 and ic1 > ic0:
            feats = (raw[:, ir0:ir1, ic0:ic1] if raw is not None
                     else key_features(emb, image, upsampler, self._key_stride(), rows=(ir0, ir1), cols=(ic0, ic1)))
            if feats.shape[0] != C:
                raise InputError(f"The input gives {feats.shape[0]} features but the probe was trained on {C}; "
                                 "use images with the same channels as in training.")
            keys[:C, ir0 - kr0:ir1 - kr0, ic0 - kc0:ic1 - kc0] = self._standardize(feats)
            valid[ir0 - kr0:ir1 - kr0, ic0 - kc0:ic1 - kc0] = True
        keys[C:] = position_code(cell_centres(kr1 - kr0, S / r) + kr0 * S / r,
                                 cell_centres(kc1 - kc0, S / r) + kc0 * S / r).transpose(2, 0, 1)
        qcode = position_code(cell_centres(b - a, S) + a * S, cell_centres(d - c, S) + c * S)
        qr, qc = np.arange(a, b), np.arange(c, d)
        qvalid = ((qr >= 0) & (qr < qh))[:, None] & ((qc >= 0) & (qc < qw))[None, :]
        return _Region(a, c, keys, valid, qcode, qvalid)

    def _features(self, net: Any, reg: _Region, device: str) -> Any:
        """(1, dim, nq, nc) query features of a region, zero outside the image (in blocks of columns)."""
        import torch

        from .nets import deap_features

        r, w = self.key_factor, self.window_
        keys = torch.from_numpy(reg.keys).to(device)
        valid = torch.from_numpy(reg.valid).to(device)
        qcode = torch.from_numpy(reg.qcode).to(device)
        nq, nc = reg.qvalid.shape
        out = torch.zeros((1, self.dim, nq, nc), device=device)
        for j0 in range(0, nc, COLUMNS):
            j1 = min(nc, j0 + COLUMNS)
            f = deap_features(net, keys[None, :, :, r * j0:r * (j1 + 2 * w)], valid[None, :, r * j0:r * (j1 + 2 * w)],
                              qcode[None, :, j0:j1], window=w, key_factor=r, stride=self.query_stride)
            out[:, :, :, j0:j1] = f.float()
        return out * torch.from_numpy(reg.qvalid).to(device)

    def _decode(self, reg: _Region, device: str) -> np.ndarray:
        """(K, S * nq, S * nc) class probabilities on the decoder cells of a region."""
        import torch

        from vfm_features.models.device import autocast

        with torch.no_grad(), autocast(device, self.precision):
            logits = self.net_.decoder(self._features(self.net_, reg, device))
        return torch.softmax(logits.float(), 1)[0].cpu().numpy()

    def _decoder_probs(self, emb: Any, image: Any, upsampler: Any, rows: tuple[int, int],
                       cols: tuple[int, int]) -> np.ndarray:
        """(K, S * (b - a), S * (d - c)) probabilities of the decoder cells of query rows a:b, columns c:d."""
        device = self._device()
        S = self.query_stride
        (a, b), (c, d) = rows, cols
        out = np.empty((len(self.classes_), S * (b - a), S * (d - c)), np.float32)
        for start in range(a, b, BAND):
            stop = min(b, start + BAND)
            reg = self._region(emb, image, upsampler, (start - HALO, stop + HALO), (c - HALO, d + HALO))
            probs = self._decode(reg, device)
            out[:, S * (start - a):S * (stop - a)] = probs[:, S * HALO:S * (HALO + stop - start),
                                                           S * HALO:S * (HALO + d - c)]
        return out

    # -- prediction ---------------------------------------------------------------------------
    def predict_proba_dense(self, embedding: Any, image: Any, upsampler: Any, out_shape: tuple[int, int],
                            region: Any = None) -> np.ndarray:
        """(K, rows, cols) probabilities on the ``out_shape`` grid spanning the image, in ``region``.

        Decodes only the query cells the region needs (plus the halo); the decoder
        gives one cell per pixel, interpolated bilinearly onto a coarser grid.
        """
        check_is_fitted(self, "net_")
        H, W = embedding.geometry.image_shape
        S = self.query_stride
        R, Cc = (int(s) for s in out_shape)
        rows, cols = (slice(0, R), slice(0, Cc)) if region is None else region
        r0, r1 = rows.indices(R)[:2]
        c0, c1 = cols.indices(Cc)[:2]
        if r1 <= r0 or c1 <= c0:
            return np.zeros((len(self.classes_), max(r1 - r0, 0), max(c1 - c0, 0)), np.float32)
        ty, tx = band_taps(R, H, r0, r1), band_taps(Cc, W, c0, c1)
        (d0, d1), (e0, e1) = ty[3:], tx[3:]
        a, b = d0 // S, -(-d1 // S)
        c, d = e0 // S, -(-e1 // S)
        probs = self._decoder_probs(embedding, image, upsampler, (a, b), (c, d))
        probs = probs[:, d0 - S * a:d1 - S * a, e0 - S * c:e1 - S * c]
        return np.ascontiguousarray(lerp(lerp(probs, 1, ty), 2, tx), np.float32)

    def predict_proba(self, samples: Any) -> np.ndarray:
        """(n, K) probabilities at the samples' pixels (those of the dense prediction at the same pixels)."""
        check_is_fitted(self, "net_")
        out = np.empty((len(samples), len(self.classes_)), np.float32)
        S = self.query_stride
        for i in np.unique(samples.image_index):
            sel = np.flatnonzero(samples.image_index == i)
            emb = samples.embeddings[i]
            if emb is None:
                raise InputError("The probe reads embeddings, but these samples keep feature rows only.")
            (qh, qw), _ = self._grids(emb.geometry.image_shape)
            ys, xs = samples.coords[sel, 0], samples.coords[sel, 1]
            chunk = ys // (S * BAND)
            for k in np.unique(chunk):
                part = chunk == k
                a, b = int(k) * BAND, min(qh, int(k) * BAND + BAND)
                p = self._decoder_probs(emb, samples.images[i], samples.upsampler, (a, b), (0, qw))
                out[sel[part]] = p[:, ys[part] - S * a, xs[part]].T
        return out

    # -- training -----------------------------------------------------------------------------
    def fit(self, samples: Any) -> "DeapPixelHead":
        """Train on the samples' labelled pixels, reading their embeddings once."""
        import torch

        from .nets import init_parameters
        from .training import macro_f1

        self._check_params()
        self._classes(samples.y)
        seed = self._seed()
        rng = np.random.default_rng(seed)
        keep = seed_pixel_budget(samples.image_index, samples.y, self.budget, random_state=int(rng.integers(2**31)))
        if len(keep) != len(samples):
            samples = samples.subset(keep)
        classes = self._classes(samples.y)
        y = np.searchsorted(classes, np.asarray(samples.y)).astype(np.int64)
        S, r = self.query_stride, self.key_factor
        images = [int(i) for i in np.unique(samples.image_index)]
        raw: dict[int, np.ndarray] = {}
        for i in images:
            emb = samples.embeddings[i]
            if emb is None:
                raise InputError("The probe reads embeddings, but these samples keep feature rows only; train it "
                                 "through a classifier or the evaluation harness, which keep them for probes.")
            raw[i] = key_features(emb, samples.images[i], samples.upsampler, self._key_stride())
        widths = {a.shape[0] for a in raw.values()}
        if len(widths) != 1:
            raise InputError(f"The training images give different numbers of features {sorted(widths)}; train on "
                             "images with the same channels.")
        C = widths.pop()
        self.n_features_in_ = C
        self.feature_mean_, self.feature_std_ = self._feature_stats([a.reshape(C, -1) for a in raw.values()])
        shapes = {i: samples.embeddings[i].geometry.image_shape for i in images}
        self.sigma_px_ = self._sigma_px([(h + w) / 2 for h, w in shapes.values()])
        self.window_ = self._window(self.sigma_px_, S)

        block = 4 * S
        coords = samples.coords
        groups = (samples.image_index * (1 << 42) + (coords[:, 0] // block) * (1 << 21) + coords[:, 1] // block)
        train_idx, val_idx = validation_split(groups, y, self.val_fraction, random_state=int(rng.integers(2**31)))

        device = self._device()
        net = self._build_net(C, len(classes), self.sigma_px_)
        init_parameters(net, seed)
        net.to(device)
        self.net_ = net
        self.classes_ = classes

        # per image: its region (padded so that every crop fits) and its training labels on the decoder cells
        c = self.crop
        regions, labels, anchors = {}, {}, []
        for i in images:
            (qh, qw), _ = self._grids(shapes[i])
            extra_r, extra_c = max(0, c - qh - 2 * HALO), max(0, c - qw - 2 * HALO)
            reg = self._region(samples.embeddings[i], None, None, (-HALO, qh + HALO + extra_r),
                               (-HALO, qw + HALO + extra_c), raw=raw[i])
            regions[i] = reg
            lab = np.full((S * reg.qvalid.shape[0], S * reg.qvalid.shape[1]), -1, np.int64)
            mine = train_idx[samples.image_index[train_idx] == i]
            cells = coords[mine] + S * HALO  # one decoder cell per pixel
            lab[cells[:, 0], cells[:, 1]] = y[mine]
            labels[i] = torch.from_numpy(lab).to(device)
            anchors.append(np.stack([np.full(len(mine), i), cells[:, 0] // S, cells[:, 1] // S, y[mine]], 1))
        anchors = np.concatenate(anchors)
        anchor_p = inverse_frequency(anchors[:, 3])
        tensors = {i: (torch.from_numpy(g.keys).to(device), torch.from_numpy(g.valid).to(device),
                       torch.from_numpy(g.qcode).to(device), torch.from_numpy(g.qvalid).to(device))
                   for i, g in regions.items()}
        val_weights = class_weights(y[train_idx], len(classes))
        weights = torch.from_numpy(val_weights).to(device)
        ring = torch.zeros((S * c, S * c), dtype=torch.bool, device=device)
        ring[S * HALO:S * (c - HALO), S * HALO:S * (c - HALO)] = True
        w = self.window_

        def batch(gen: np.random.Generator):
            picks = anchors[gen.choice(len(anchors), self.batch_size, p=anchor_p)]
            parts = []
            for i, qy, qx, _ in picks:
                nq, nc = regions[i].qvalid.shape
                p0 = int(np.clip(qy - gen.integers(HALO, c - HALO), 0, nq - c))
                p1 = int(np.clip(qx - gen.integers(HALO, c - HALO), 0, nc - c))
                keys, valid, qcode, qvalid = tensors[i]
                parts.append((keys[:, r * p0:r * (p0 + c + 2 * w), r * p1:r * (p1 + c + 2 * w)],
                              valid[r * p0:r * (p0 + c + 2 * w), r * p1:r * (p1 + c + 2 * w)],
                              qcode[p0:p0 + c, p1:p1 + c], qvalid[p0:p0 + c, p1:p1 + c],
                              labels[i][S * p0:S * (p0 + c), S * p1:S * (p1 + c)].masked_fill(~ring, -1)))
            return [torch.stack(t) for t in zip(*parts)]

        def loss(model: Any, data: Any):
            from .nets import deap_features, dice_ce_loss

            keys, valid, qcode, qvalid, lab = data
            feats = deap_features(model, keys, valid, qcode, window=w, key_factor=r, stride=S)
            logits = model.decoder(feats * qvalid[:, None].to(feats.dtype))
            return dice_ce_loss(logits.float(), lab, weights, self.dice_weight)

        def validate(model: Any) -> tuple[float, float]:
            proba = np.empty((len(val_idx), len(classes)), np.float32)
            for i in images:
                mine = np.flatnonzero(samples.image_index[val_idx] == i)
                if not len(mine):
                    continue
                probs = self._decode(regions[i], device)
                cells = coords[val_idx[mine]] + S * HALO
                proba[mine] = probs[:, cells[:, 0], cells[:, 1]].T
            truth = y[val_idx]
            nll = -np.log(np.maximum(proba[np.arange(len(truth)), truth], 1e-12))
            return macro_f1(truth, proba.argmax(1)), float(np.mean(nll * val_weights[truth]))

        return self._train(net, batch=batch, loss=loss, validate=validate, val_idx=val_idx, rng=rng, device=device,
                           desc="train deap")
