"""vfm-features plugin: AnyUp, a learned, image-guided upsampler for the embeddings of any extractor.

Registers the upsampler ``anyup`` (``PixelClassifier(..., upsampler="anyup")``,
``vfm-features train --upsampler anyup``). The network is the published AnyUp
architecture with the authors' parameter names, so their released checkpoint
loads unchanged; the inference around it is this plugin's own: it answers at
requested pixels only (``sparse``), region by region (``dense``), with queries
chunked so that memory stays bounded. Importing this package does not import torch.
See docs/anyup.md.
"""

from vfm_features import hookimpl

from ._spec import SPEC

__all__ = ["SPEC", "vfm_features_upsamplers"]


@hookimpl
def vfm_features_upsamplers():
    return [SPEC]
