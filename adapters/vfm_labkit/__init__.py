"""LabKit-style random-forest backend: LabKit's labellings and its Segmenter loop, on any vfm-features extractor.

* :class:`Labeling`, :func:`read_labeling` / :func:`write_labeling` (LabKit's ``.labeling``
  JSON), :func:`read_labeling_tiff` / :func:`write_labeling_tiff` (index TIFF + ``.labels``),
  :func:`open_labeling` (by extension, as LabKit does);
* :class:`Segmenter`: train on (image, labelling) pairs, continue training from cached
  embeddings, segment, predict, save and open the model (see docs/adapters-labkit.md).

Uses only the public API of vfm-features.
"""

from vfm_labkit.labeling import Labeling, labeling_json, parse_labeling, read_labeling, write_labeling
from vfm_labkit.labeling_tiff import open_labeling, read_labeling_tiff, write_labeling_tiff
from vfm_labkit.segmenter import EmptyLabelWarning, Segmenter

__all__ = ["EmptyLabelWarning", "Labeling", "Segmenter", "labeling_json", "open_labeling", "parse_labeling",
           "read_labeling", "read_labeling_tiff", "write_labeling", "write_labeling_tiff"]
