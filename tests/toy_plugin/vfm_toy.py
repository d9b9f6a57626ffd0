"""A third-party vfm-features plugin, written as docs/plugins.md says (used by the tests as an outside author would).

It provides an extractor (4 x 4 block means and variances per channel), a
model extractor on a tiny convolutional network (needs torch), an upsampler
(nearest neighbour), and a pixel and an object head (nearest class centroid).
"""

from __future__ import annotations

import numpy as np

from vfm_features import (
    Embedding,
    EmbeddingGeometry,
    ExtractorSpec,
    FeatureExtractor,
    HeadSpec,
    InputError,
    ModelExtractor,
    ObjectHead,
    PixelHead,
    Upsampler,
    UpsamplerSpec,
    hookimpl,
)


# -- an extractor -----------------------------------------------------------------------------------------
class BlockStats(FeatureExtractor):
    """Mean and variance of each channel over ``block`` x ``block`` pixel blocks."""

    def __init__(self, spec, *, block: int = 4, tile_shape=None, halo=None):
        if not isinstance(block, int) or block < 1:
            raise InputError(f"block={block!r}; expected a positive whole number.")
        tiling = {} if tile_shape is None else {"tile_shape": tile_shape, "halo": halo}
        super().__init__(spec, block=block, **tiling)

    def n_features_for(self, n_channels: int) -> int:
        return 2 * n_channels

    def _embed_plane(self, plane):
        b = self.options["block"]
        h, w = plane.shape[0] // b, plane.shape[1] // b
        x = plane[: h * b, : w * b].astype(np.float32).reshape(h, b, w, b, -1)
        data = np.concatenate([x.mean((1, 3)), x.var((1, 3))], axis=-1).transpose(2, 0, 1)
        return Embedding(np.ascontiguousarray(data), EmbeddingGeometry(plane.shape[:2], step=(float(b), float(b))))


# -- a model extractor (torch) -------------------------------------------------------------------------------
class TinyConv(ModelExtractor):
    """A 2-layer convolutional network on 64 x 64 inputs, stride 4, 8 features; random weights (seeded)."""

    def input_contract(self):
        from vfm_features import InputContract

        return InputContract(size=64, resize="stretch", stride=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    @property
    def features_per_image(self) -> int:
        return 8

    @property
    def weights_hash(self):
        return f"random-init:seed={self.options['seed']}"

    def load_model(self, device):
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.options["seed"])
            return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(8, 8, 3, stride=2, padding=1))


# -- an upsampler --------------------------------------------------------------------------------------------
class Nearest(Upsampler):
    """The value of the embedding cell that holds each pixel."""

    def _cells(self, embedding, ys, xs):
        g = embedding.geometry
        cy = np.clip(np.floor((ys + 0.5 - g.origin[0]) / g.step[0]).astype(int), 0, embedding.data.shape[1] - 1)
        cx = np.clip(np.floor((xs + 0.5 - g.origin[1]) / g.step[1]).astype(int), 0, embedding.data.shape[2] - 1)
        return cy, cx

    def dense(self, embedding, image, out_shape=None, region=None):
        H, W = embedding.image_shape
        out_shape = out_shape or (H, W)
        rows, cols = region if region is not None else (slice(None), slice(None))
        ys = ((np.arange(out_shape[0]) + 0.5) * H / out_shape[0] - 0.5)[rows]
        xs = ((np.arange(out_shape[1]) + 0.5) * W / out_shape[1] - 0.5)[cols]
        cy, cx = self._cells(embedding, ys, xs)
        return np.ascontiguousarray(embedding.data[:, cy][:, :, cx], dtype=np.float32)

    def sparse(self, embedding, image, coords):
        coords = np.asarray(coords, dtype=np.float64)
        cy, cx = self._cells(embedding, coords[:, 0], coords[:, 1])
        return np.ascontiguousarray(embedding.data[:, cy, cx].T, dtype=np.float32)


# -- heads -----------------------------------------------------------------------------------------------------
class _Centroids:
    """Nearest class centroid on standardised feature rows; saves as three arrays."""

    def __init__(self, *, temperature: float = 1.0):
        self.temperature = temperature

    def get_params(self, deep=True):
        return {"temperature": self.temperature}

    def set_params(self, **params):
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def fit(self, samples):
        X, y = samples.features(), samples.y
        self.classes_ = np.unique(y)
        self.scale_ = X.std(0).astype(np.float64) + 1e-6
        self.centroids_ = np.stack([X[y == c].mean(0) for c in self.classes_]).astype(np.float64) / self.scale_
        self.n_features_in_ = X.shape[1]
        return self

    def _proba(self, X):
        d = ((X[:, None, :] / self.scale_ - self.centroids_[None]) ** 2).sum(-1)
        z = -(d - d.min(1, keepdims=True)) / max(self.temperature, 1e-12)
        p = np.exp(z)
        return (p / p.sum(1, keepdims=True)).astype(np.float32)

    def predict_proba(self, samples):
        return self._proba(samples.features())

    def get_state(self):
        return {"temperature": self.temperature}, {"classes": self.classes_, "centroids": self.centroids_,
                                                  "scale": self.scale_}

    @classmethod
    def from_state(cls, params, arrays, *, n_features):
        head = cls(temperature=float(params.get("temperature", 1.0)))
        centroids, classes, scale = arrays["centroids"], arrays["classes"], arrays["scale"]
        if centroids.ndim != 2 or centroids.shape != (len(classes), n_features) or scale.shape != (n_features,):
            raise InputError("centroids do not match the classes and features")
        head.classes_, head.centroids_, head.scale_, head.n_features_in_ = classes, centroids, scale, n_features
        return head


class CentroidPixelHead(_Centroids, PixelHead):
    def predict_proba_dense(self, embedding, image, upsampler, out_shape, region=None):
        feats = upsampler.dense(embedding, image, out_shape, region)
        C, r, c = feats.shape
        return self._proba(feats.reshape(C, -1).T).T.reshape(-1, r, c)


class CentroidObjectHead(_Centroids, ObjectHead):
    pass


# -- the hooks -------------------------------------------------------------------------------------------------
@hookimpl
def vfm_features_extractors():
    return [ExtractorSpec("toy:blocks", factory=BlockStats, default=True, patch_size=4, halo=0,
                          description="block mean and variance per channel", options={"block": 4}),
            ExtractorSpec("toy:conv", factory=TinyConv, patch_size=4, input_size=64, requires=("torch",),
                          description="a tiny random convolutional network", install="torch")]


@hookimpl
def vfm_features_upsamplers():
    return [UpsamplerSpec("nearest", factory=Nearest, description="nearest embedding cell")]


@hookimpl
def vfm_features_heads():
    return [HeadSpec("centroid", factory=CentroidPixelHead, kind="pixel", description="nearest class centroid"),
            HeadSpec("centroid", factory=CentroidObjectHead, kind="object", description="nearest class centroid")]
