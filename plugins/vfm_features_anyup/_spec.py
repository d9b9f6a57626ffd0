"""The AnyUp plugin's table: name, weights source, licence, architecture sizes and default options (one place).

Facts from the authors' repository wimmerth/anyup (``hubconf.py``, ``anyup/model.py``,
``config/model/anyup.yaml``, commit 351807a): the paper model is ``AnyUp()`` with its
defaults, its checkpoint ``anyup_paper.pth`` is attached to the release tag
``checkpoint``, and no checksum is published (trust on first use, see docs/weights.md).
"""

from __future__ import annotations

from vfm_features import UpsamplerSpec

WEIGHTS_URL = "https://github.com/wimmerth/anyup/releases/download/checkpoint/anyup_paper.pth"
WEIGHTS_FILE = "anyup_paper.pth"
LICENSE = "CC-BY-4.0 (weights and code by Wimmer et al., github.com/wimmerth/anyup)"

# the architecture of the released checkpoint (AnyUp() defaults)
QK_DIM = 128  # query/key width
NUM_HEADS = 4
WINDOW_RATIO = 0.1  # half-size of the local window, as a fraction of the feature grid
LFU_KERNEL = 5  # feature-agnostic input layer: a learned 5 x 5 basis over every input channel
GROUPS = 8  # GroupNorm groups of every residual block
GN_EPS = 1e-5
ROPE_THETA = 100.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the authors normalise the guidance image like their backbones' input
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_CELLS = 256 * 256  # embeddings finer than this are not "low resolution": use bilinear

DEFAULTS = {"pretrained": True, "grid": None, "channels": "sum", "normalization": "auto", "seed": 0,
            "device": "auto", "chunk_size": 4096, "progress": True}

SPEC = UpsamplerSpec(
    "anyup",
    factory="vfm_features_anyup._upsampler:AnyUpUpsampler",
    description=("AnyUp (Wimmer et al., ICLR 2026): image-guided window attention over the embedding cells; "
                 "keeps the channel count, any extractor"),
    requires=("torch",),
    install="vfm-features[anyup]",
    features_version="1",
    weights_url=WEIGHTS_URL,
    weights_hash=None,  # none published: the sha256 is recorded on first use
    weights_file=WEIGHTS_FILE,
    license=LICENSE,
    options=dict(DEFAULTS),
)
