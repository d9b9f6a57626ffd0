"""bioimage.io model packages of trained vfm-features classifiers (spec 0.5, ONNX weights).

``package_pixel_classifier(classifier, "pixels.zip")`` and
``package_object_classifier(classifier, "objects.zip", test_image=..., test_mask=...)``
write packages that ``bioimageio.core`` tests offline and predicts with like the
library. Needs ``pip install 'vfm-features[bioimageio]'`` (bioimageio.core, and
onnxscript for torch's ONNX exporter); importing this package imports neither.
"""

from .descr import MIN_SIDE
from .object_graph import check_object_exportable
from .object_package import package_object_classifier
from .package import default_test_image, package_pixel_classifier
from .pixel_graph import check_exportable
from .tree_ensemble import EXPORTABLE_HEADS

__all__ = ["EXPORTABLE_HEADS", "MIN_SIDE", "check_exportable", "check_object_exportable", "default_test_image",
           "package_object_classifier", "package_pixel_classifier"]
