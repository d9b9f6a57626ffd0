"""Realistic benchmark inputs: a synthetic 1024 x 1024 scene and a 256-channel embedding of it.

The embedding imitates a vision-transformer feature map: a grid of 8 x 8 px
patches (as SAM or DINOv3 at twice the input size) whose cells mix per-class
directions by the fraction of each class in the cell, plus a smooth random field
and white noise, so that classes are separable but not trivially; it is read at
pixels with the library's bilinear upsampler, as a SAM or DINOv3 embedding is.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from vfm_features.geometry import Embedding, EmbeddingGeometry
from vfm_features.evaluation.synthetic import make_synthetic_image


def scene(size: int = 1024, *, seed: int = 0, n_cells: int | None = None):
    """One synthetic image of ``size`` x ``size``, by default with about one cell per 40 x 40 px."""
    n_cells = n_cells or max(6, size * size // 1600)
    return make_synthetic_image((size, size), n_cells=n_cells, random_state=seed)


def class_embedding(semantic: np.ndarray, *, channels: int = 256, patch: int = 8, model_seed: int = 0,
                    image_seed: int = 0, smooth_noise: float = 0.6, white_noise: float = 0.6) -> Embedding:
    """A (channels, H/patch, W/patch) embedding correlated with ``semantic`` (classes 1..K).

    ``model_seed`` fixes the class directions (the "model"), ``image_seed`` the noise
    of this image: two images embedded by one model share directions only.
    """
    H, W = semantic.shape
    h, w = H // patch, W // patch
    classes = np.unique(semantic)
    # fraction of every class in every patch: (K, h, w)
    frac = np.stack([(semantic[: h * patch, : w * patch] == c).reshape(h, patch, w, patch).mean(axis=(1, 3))
                     for c in classes]).astype(np.float32)
    directions = np.random.default_rng(model_seed).standard_normal((channels, len(classes))).astype(np.float32)
    data = np.tensordot(directions, frac, axes=1)
    rng = np.random.default_rng([model_seed, image_seed])
    field = ndi.gaussian_filter(rng.standard_normal((channels, h, w)).astype(np.float32), (0, 3, 3))
    field /= field.std() + 1e-12
    data += smooth_noise * field + white_noise * rng.standard_normal((channels, h, w)).astype(np.float32)
    return Embedding(data, EmbeddingGeometry((H, W), step=(H / h, W / w)), extractor="synthetic")


def dense_features(embedding: Embedding, out_shape=None, band_rows: int = 128) -> np.ndarray:
    """(H' * W', C) float32 features on a grid spanning the image (default: every pixel)."""
    from vfm_features import get_upsampler

    up = get_upsampler("bilinear")
    H, W = out_shape or embedding.image_shape
    out = np.empty((H, W, embedding.n_features), np.float32)
    for r0 in range(0, H, band_rows):
        rows = slice(r0, min(H, r0 + band_rows))
        out[rows] = np.moveaxis(up.dense(embedding, None, (H, W), rows), 0, -1)
    return out.reshape(H * W, -1)


def labelled_pixels(semantic: np.ndarray, n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled pixels as brush strokes (coords (n, 2), classes), balanced over classes."""
    from vfm_features.features.sampling import sample_pixels
    from vfm_features.evaluation.synthetic import make_scribbles

    frac = min(0.5, 2.0 * n / semantic.size)
    strokes = make_scribbles(semantic, frac, random_state=seed)
    _, coords, y = sample_pixels(strokes, n, random_state=seed)
    return coords, y



def random_embedding_extractor(channels: int = 256, patch: int = 16):
    """A stand-in for a ViT extractor: a seeded random (channels, H/patch, W/patch) embedding of any image."""
    from vfm_features import ExtractorSpec, FeatureExtractor

    class RandomEmbedding(FeatureExtractor):
        def _embed_plane(self, plane):
            H, W = plane.shape[:2]
            h, w = -(-H // patch), -(-W // patch)
            data = np.random.default_rng(0).standard_normal((channels, h, w)).astype(np.float32)
            return Embedding(data, EmbeddingGeometry((H, W), step=(H / h, W / w)), extractor="bench:random")

    spec = ExtractorSpec(name="bench:random", factory=lambda spec, **options: None, n_features=channels,
                         patch_size=patch)
    return RandomEmbedding(spec)


def realistic(view: int = 1024, *, num_sigma: int = 21):
    """A real image with real features: scikit-image's immunohistochemistry sample (512 x 512 RGB, shipped).

    Returns ``(embedding, truth)``: the image's multiscale filter features
    (``skimage.feature.multiscale_basic_features``: intensity, edges and texture
    per channel and scale, 3 x 4 x ``num_sigma`` channels) as an embedding of the
    image shown at ``view`` x ``view`` (a zoomed view: cells of view/512 px), and
    three classes from colour deconvolution at that size - 1 stroma/background,
    2 haematoxylin nuclei, 3 DAB-stained tumour cells (Otsu thresholds of the
    smoothed stain channels: a stand-in for an annotator's ground truth).
    """
    from skimage import color, data, filters
    from skimage.feature import multiscale_basic_features

    rgb = data.immunohistochemistry()
    hed = color.rgb2hed(rgb)
    haem, dab = filters.gaussian(hed[..., 0], 2), filters.gaussian(hed[..., 2], 2)
    truth = np.ones(rgb.shape[:2], np.int64)
    truth[haem > filters.threshold_otsu(haem)] = 2
    truth[dab > filters.threshold_otsu(dab)] = 3
    feats = multiscale_basic_features(rgb, channel_axis=-1, sigma_min=0.5, sigma_max=16, num_sigma=num_sigma)
    zoom = view // rgb.shape[0]
    emb = Embedding(np.ascontiguousarray(np.moveaxis(feats.astype(np.float32), -1, 0)),
                    EmbeddingGeometry((view, view), step=(float(zoom), float(zoom))), extractor="skimage-features")
    return emb, np.kron(truth, np.ones((zoom, zoom), np.int64))
