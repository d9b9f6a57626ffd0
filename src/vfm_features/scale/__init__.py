"""Scale-out prediction: large images and many images, block by block, on Dask, resumable.

``predict_pixels`` and ``predict_objects`` (:mod:`.run`) run a trained classifier
over a lazily read image (:mod:`.sources`: TIFF, OME-Zarr, .npy) on the blocks of
a regular plan with halos (:mod:`.plan`), as Dask tasks (:mod:`.schedulers`),
writing OME-Zarr outputs that a rerun resumes (:mod:`.store`). Needs the
``scale`` extra (dask, distributed, ome-zarr).
"""

from .plan import Block, plan_grid, read_block
from .run import RunReport, predict_objects, predict_pixels
from .sources import LazyImage, expand_inputs, open_image

__all__ = ["Block", "LazyImage", "RunReport", "expand_inputs", "open_image", "plan_grid", "predict_objects",
           "predict_pixels", "read_block"]
