"""The ``obap`` object head: an object attentive probe trained on cached embeddings.

One query per object, at the centroid of its mask, made from the fixed
sinusoidal code of that position and - with ``object_content`` (default) - the
object's mean feature over its mask and its log area, the two things the forest
reads (the seed's query is the position code alone; ``object_content=False``
gives exactly that); Gaussian-masked cross-attention (sigma learned
per head) to the embedding read on a key grid of ``key_stride`` pixels (through
the upsampler, averaged when the embedding is finer); a two-layer MLP per object
gives its class logits. Trained with cross-entropy on objects drawn inversely to
their class frequency, AdamW (weight decay 1e-3 as in the seed).

The seed pads each tile's objects to a maximum count and masks the padding
before attention, so tiles with different object counts form one tensor. Here
every object gathers its own window of keys (``context`` pixels around its
centroid), so objects of any images already form one (n, window) tensor: the
validity mask marks the window's keys that fall outside the image and is applied
to the logits before the softmax; more objects than ``max_objects`` are
processed in chunks of that size - none is dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vfm_features.errors import InputError
from vfm_features.heads.base import ObjectHead
from vfm_features.validation import check_bool, check_int, check_is_fitted

from .grid import PE_DIM, cell_centres, grid_shape, key_features, object_centroids, point_code, position_code
from .probe import Probe
from .sampling import inverse_frequency, validation_split

_NEEDS = ("ObAP reads the embeddings and instance masks of its objects, but these object samples hold feature rows "
          "only. Train it on ObjectSamples that keep embeddings, images and masks (see docs/probes.md: "
          "ObjectSamples.concat does not keep them yet).")


LOG_AREA = 5.0  # the query's area input is (log(area) - LOG_AREA) / 2: about -1..2 for 10..10^4 pixels
_PIXELS = 1 << 16  # object pixels read at once for the mean features


def _mask_means(embedding: Any, image: Any, upsampler: Any, mask: np.ndarray,
                ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the upsampled embedding over each object's pixels (n, C) float32 (as the forest's aggregator), and
    each object's pixel count (n,)."""
    order = np.argsort(ids)
    ys, xs = np.nonzero(np.isin(mask, ids))
    which = order[np.searchsorted(ids[order], mask[ys, xs])]  # position of each pixel's object in ``ids``
    C = upsampler.n_features(embedding)
    sums = np.zeros((C, len(ids)), np.float64)
    for s in range(0, len(ys), _PIXELS):
        rows = upsampler.sparse(embedding, image, np.stack([ys[s:s + _PIXELS], xs[s:s + _PIXELS]], 1))
        for c in range(C):
            sums[c] += np.bincount(which[s:s + _PIXELS], weights=rows[:, c], minlength=len(ids))
    counts = np.bincount(which, minlength=len(ids))
    return (sums / np.maximum(counts, 1)).T.astype(np.float32), counts


class _ImageKeys:
    """One image's key grid (``key_stride``-pixel cells from the top-left pixel), standardised, padded by ``R`` cells,
    with position codes."""

    def __init__(self, head: "ObapObjectHead", emb: Any, image: Any, upsampler: Any, raw: np.ndarray | None = None):
        H, W = emb.geometry.image_shape
        s = head.key_stride
        kh, kw = grid_shape((H, W), s)
        R = head.window_
        feats = raw if raw is not None else key_features(emb, image, upsampler, s)
        C = head.n_features_in_
        if feats.shape[0] != C:
            raise InputError(f"The input gives {feats.shape[0]} features but the probe was trained on {C}; use "
                             "images with the same channels as in training.")
        self.stride, self.R, self.kh, self.kw = s, R, kh, kw
        self.cy = cell_centres(kh + 2 * R, s) - R * s  # pixel centres of the padded rows / columns
        self.cx = cell_centres(kw + 2 * R, s) - R * s
        keys = np.zeros((kh + 2 * R, kw + 2 * R, C + PE_DIM), np.float32)
        keys[R:R + kh, R:R + kw, :C] = head._standardize(feats).transpose(1, 2, 0)
        keys[..., C:] = position_code(self.cy, self.cx)
        self.keys = keys.reshape(-1, C + PE_DIM)
        valid = np.zeros((kh + 2 * R, kw + 2 * R), bool)
        valid[R:R + kh, R:R + kw] = True
        self.valid = valid.ravel()
        self.width = kw + 2 * R
        offsets = np.arange(-R, R + 1)
        self.offsets = (offsets[:, None] * self.width + offsets[None, :]).ravel()

    def windows(self, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keys (n, kk, C + PE), squared distances (n, kk) and validity (n, kk) of the objects' windows."""
        iy = np.clip(np.floor((centroids[:, 0] + 0.5) / self.stride), 0, self.kh - 1).astype(np.int64)
        ix = np.clip(np.floor((centroids[:, 1] + 0.5) / self.stride), 0, self.kw - 1).astype(np.int64)
        idx = ((iy + self.R) * self.width + ix + self.R)[:, None] + self.offsets[None, :]
        ry, rx = np.divmod(idx, self.width)
        dist2 = (self.cy[ry] - centroids[:, :1]) ** 2 + (self.cx[rx] - centroids[:, 1:]) ** 2
        return self.keys[idx], dist2.astype(np.float32), self.valid[idx]


class ObapObjectHead(Probe, ObjectHead):
    """Object attentive probe (ObAP): one Gaussian-attention query per object; needs torch.

    Parameters
    ----------
    dim, n_heads : width of the queries and attention heads (``dim`` divisible by ``n_heads``).
    sigma : initial attention width as a fraction of the mean training image side.
    context : pixels around an object's centroid that attention sees (None: three initial sigmas).
    key_stride : image pixels per key cell.
    object_content : the query also carries the object's mean feature (through the upsampler, over its
        mask, standardised) and its log area; False: the position code only, as in the seed.
    lr, weight_decay : AdamW (the seed: 1e-3 and 1e-3).
    max_iter, batch_size : iterations at most and objects per iteration (drawn inversely to class frequency).
    max_objects : objects per forward pass at prediction (more are processed in chunks, none dropped).
    val_fraction, val_every, patience, max_time, device, precision, random_state, progress : as for ``deap``.
    """

    def __init__(self, *, dim: int = 32, n_heads: int = 8, sigma: float = 0.05, context: float | None = None,
                 key_stride: int = 4, object_content: bool = True, lr: float = 1e-3, weight_decay: float = 1e-3,
                 max_iter: int = 1000, batch_size: int = 64, max_objects: int = 1000, val_fraction: float = 0.2,
                 val_every: int = 25, patience: int = 6, max_time: float | None = None, device: str = "auto",
                 precision: str = "float32", random_state: int | None = None, progress: Any = False) -> None:
        self.dim = dim
        self.n_heads = n_heads
        self.sigma = sigma
        self.context = context
        self.key_stride = key_stride
        self.object_content = object_content
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.max_objects = max_objects
        self.val_fraction = val_fraction
        self.val_every = val_every
        self.patience = patience
        self.max_time = max_time
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.progress = progress

    def _check_params(self) -> None:
        super()._check_params()
        check_int(self.key_stride, "key_stride", hint="image pixels per key cell, e.g. 4")
        if self.key_stride > 64:
            raise InputError(f"key_stride={self.key_stride} is too large; use at most 64 pixels.")
        check_bool(self.object_content, "object_content")
        check_int(self.max_objects, "max_objects", hint="objects per forward pass, e.g. 1000")
        if self.max_objects > 100_000:
            raise InputError(f"max_objects={self.max_objects} is too large; use at most 100000.")

    def _build_net(self, n_features: int, n_classes: int, sigma_px: float) -> Any:
        from .nets import ObapNet

        n_query = PE_DIM + (n_features + 1 if self.object_content else 0)
        return ObapNet(n_features, n_classes, dim=self.dim, n_heads=self.n_heads, sigma=sigma_px, n_query=n_query)

    # -- objects ------------------------------------------------------------------------------
    @staticmethod
    def _image_parts(samples: Any) -> list[tuple[int, np.ndarray]]:
        """(image, positions in the samples) of every image the samples use; refuses samples without masks."""
        if samples.embeddings is None or samples.masks is None:
            raise InputError(_NEEDS)
        parts = []
        for i in np.unique(samples.image_index):
            i = int(i)
            if samples.embeddings[i] is None or samples.masks[i] is None:
                raise InputError(_NEEDS)
            parts.append((i, np.flatnonzero(samples.image_index == i)))
        return parts

    def _queries(self, samples: Any, i: int, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centroids (n, 2) and query inputs (n, PE_DIM [+ C + 1]) of the objects ``sel`` of image ``i``."""
        mask, ids = samples.masks[i], samples.ids[sel]
        centroids = object_centroids(mask, ids)
        code = point_code(centroids)
        if not self.object_content:
            return centroids, code
        image = samples.images[i] if samples.images else None
        means, area = _mask_means(samples.embeddings[i], image, samples.upsampler, mask, ids)
        content = self._standardize(means.T).T
        log_area = ((np.log(np.maximum(area, 1)) - LOG_AREA) / 2).astype(np.float32)[:, None]
        return centroids, np.concatenate([code, content, log_area], 1).astype(np.float32)

    def _logits(self, keys: np.ndarray, dist2: np.ndarray, valid: np.ndarray, queries: np.ndarray,
                device: str, net: Any = None) -> Any:
        """Logits (n, K) of n objects from their windows, in chunks of ``max_objects``."""
        import torch

        from .nets import MASKED

        net = net if net is not None else self.net_
        out = []
        for s in range(0, len(keys), self.max_objects):
            e = s + self.max_objects
            q = torch.from_numpy(queries[s:e][:, None]).to(device)
            k = torch.from_numpy(keys[s:e]).to(device)
            d2 = torch.from_numpy(dist2[s:e][:, None]).to(device)
            bias = torch.from_numpy(np.where(valid[s:e], 0.0, MASKED).astype(np.float32)).to(device)
            out.append(net(q, k, d2, torch.ones_like(d2, dtype=torch.bool), bias))
        return torch.cat(out) if out else torch.zeros((0, len(self.classes_)), device=device)

    def predict_proba(self, samples: Any) -> np.ndarray:
        """(n, K) probabilities of the samples' objects."""
        import torch

        from vfm_features.models.device import autocast

        check_is_fitted(self, "net_")
        out = np.empty((len(samples), len(self.classes_)), np.float32)
        device = self._device()
        for i, sel in self._image_parts(samples):
            keys = _ImageKeys(self, samples.embeddings[i], samples.images[i] if samples.images else None,
                              samples.upsampler)
            centroids, queries = self._queries(samples, i, sel)
            k, d2, valid = keys.windows(centroids)
            with torch.no_grad(), autocast(device, self.precision):
                logits = self._logits(k, d2, valid, queries, device)
            out[sel] = torch.softmax(logits.float(), 1).cpu().numpy()
        return out

    # -- training -----------------------------------------------------------------------------
    def fit(self, samples: Any) -> "ObapObjectHead":
        """Train on the samples' labelled objects, reading each image's embedding once."""
        import torch
        import torch.nn.functional as F

        from .nets import init_parameters
        from .training import macro_f1

        self._check_params()
        classes = self._classes(samples.y)
        y = np.searchsorted(classes, np.asarray(samples.y)).astype(np.int64)
        seed = self._seed()
        rng = np.random.default_rng(seed)
        parts = self._image_parts(samples)
        raw, shapes = {}, {}
        for i, _ in parts:
            emb = samples.embeddings[i]
            shapes[i] = emb.geometry.image_shape
            raw[i] = key_features(emb, samples.images[i] if samples.images else None, samples.upsampler,
                                  self.key_stride)
        widths = {a.shape[0] for a in raw.values()}
        if len(widths) != 1:
            raise InputError(f"The training images give different numbers of features {sorted(widths)}; train on "
                             "images with the same channels.")
        C = widths.pop()
        self.n_features_in_ = C
        self.feature_mean_, self.feature_std_ = self._feature_stats([a.reshape(C, -1) for a in raw.values()])
        self.sigma_px_ = self._sigma_px([(h + w) / 2 for h, w in shapes.values()])
        self.window_ = self._window(self.sigma_px_, self.key_stride)
        n = len(samples)
        keys = np.empty((n, (2 * self.window_ + 1) ** 2, C + PE_DIM), np.float32)
        dist2 = np.empty((n, keys.shape[1]), np.float32)
        valid = np.empty((n, keys.shape[1]), bool)
        queries = np.empty((n, PE_DIM + (C + 1 if self.object_content else 0)), np.float32)
        for i, sel in parts:
            grid = _ImageKeys(self, samples.embeddings[i], None, None, raw=raw[i])
            centroids, queries[sel] = self._queries(samples, i, sel)
            keys[sel], dist2[sel], valid[sel] = grid.windows(centroids)
        train_idx, val_idx = validation_split(np.arange(n), y, self.val_fraction, random_state=int(rng.integers(2**31)))

        device = self._device()
        net = self._build_net(C, len(classes), self.sigma_px_)
        init_parameters(net, seed)
        net.to(device)
        self.net_, self.classes_ = net, classes
        p = inverse_frequency(y[train_idx])
        target = torch.from_numpy(y).to(device)

        def batch(gen: np.random.Generator) -> np.ndarray:
            return train_idx[gen.choice(len(train_idx), self.batch_size, p=p)]

        def loss(model: Any, idx: np.ndarray):
            logits = self._logits(keys[idx], dist2[idx], valid[idx], queries[idx], device, model)
            return F.cross_entropy(logits.float(), target[idx])

        def validate(model: Any) -> tuple[float, float]:
            logits = self._logits(keys[val_idx], dist2[val_idx], valid[val_idx], queries[val_idx], device,
                                  model).float()
            return (macro_f1(y[val_idx], logits.argmax(1).cpu().numpy()),
                    float(F.cross_entropy(logits, target[val_idx])))

        return self._train(net, batch=batch, loss=loss, validate=validate, val_idx=val_idx, rng=rng, device=device,
                           desc="train obap")
