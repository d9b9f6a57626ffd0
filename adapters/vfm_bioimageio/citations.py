"""Citations of the models a package is built from, by DOI only (a URL field would make bioimage.io go online)."""

from __future__ import annotations

from typing import Any

__all__ = ["citations"]

#: extractor family -> (text, DOI) of the paper that describes the network
FAMILIES = {
    "dinov3": ("Siméoni et al. 2025, DINOv3", "10.48550/arXiv.2508.10104"),
    "sam": ("Kirillov et al. 2023, Segment Anything", "10.48550/arXiv.2304.02643"),
    "musam": ("Archit et al. 2025, Segment Anything for Microscopy", "10.1038/s41592-024-02580-4"),
    "pathosam": ("Kirillov et al. 2023, Segment Anything", "10.48550/arXiv.2304.02643"),
    "sam2": ("Ravi et al. 2024, SAM 2: Segment Anything in Images and Videos", "10.48550/arXiv.2408.00714"),
}
FOREST = ("Breiman 2001, Random Forests", "10.1023/A:1010933404324")
INTERACTIVE = ("Berg et al. 2019, ilastik: interactive machine learning for (bio)image analysis",
               "10.1038/s41592-019-0582-9")


def citations(extractor: Any, extra: Any = ()) -> list[tuple[str, str]]:
    """(text, doi) pairs: the extractor's network (when known), the random forest, the interactive workflow."""
    family = str(extractor.name).split(":", 1)[0]
    found = [FAMILIES[family]] if family in FAMILIES else []
    return found + [FOREST, INTERACTIVE] + [(str(t), str(d)) for t, d in extra]
