"""Write a trained object classifier as a bioimage.io model package: image + instance mask -> class image.

Two inputs (``image`` and ``mask``, the mask's axes sized by the image's), two
outputs (``class_image``: each object painted with its class id, 0 on the
background; ``probabilities``: each pixel's object's class probabilities). The
test outputs are the library's :meth:`ObjectClassifier.predict`; the graph must reproduce them
(:func:`~.onnx_graph.check_parity`), or nothing is written. See :mod:`.package` for what every package holds.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import vfm_features as vf

from .cover import cover_png
from .descr import image_input, mask_input, model_descr, space_output
from .object_graph import check_object_exportable, object_module
from .onnx_graph import OPSET, TOLERANCE
from .package import check_target, class_names, common_meta, prepare_test_plane, write_package

__all__ = ["package_object_classifier"]


def _test_mask(mask: Any, shape: tuple[int, int]) -> np.ndarray:

    mask = vf.check_instance_mask(mask, shape)
    if not np.any(mask > 0):
        raise vf.InputError("The test mask has no object; give a mask with at least one object (ids > 0).")
    if mask.max() > np.iinfo(np.int64).max:
        raise vf.InputError("The test mask has ids beyond int64.")
    return mask.astype(np.int64)


def package_object_classifier(classifier: Any, path: Any, *, test_image: Any, test_mask: Any,
                              axes: str | None = None, name: str | None = None, description: str | None = None,
                              authors: Sequence[str] = ("vfm-features user",), license: str | None = None,
                              cite: Sequence[tuple[str, str]] = (), overwrite: bool = False) -> dict[str, Any]:
    """Write ``classifier`` (a fitted ObjectClassifier on a model extractor) as a bioimage.io package at ``path``.

    ``test_image`` (one 2D plane) and ``test_mask`` (its instance mask) and the
    library's prediction for them become the test tensors. The pipeline must fit
    one graph (see :func:`~vfm_bioimageio.object_graph.check_object_exportable`):
    a model extractor with a fixed 'stretch' input, the bilinear upsampler,
    stats among mean/std/min/max, a random-forest head; 2D images only.
    Other arguments as for :func:`~vfm_bioimageio.package.package_pixel_classifier`.
    """
    path = check_target(path, overwrite)
    check_object_exportable(classifier)
    plane = prepare_test_plane(classifier, test_image, axes)
    mask = _test_mask(test_mask, plane.shape[:2])
    prediction = classifier.predict(plane, mask, axes="YXC")
    present, inverse = np.unique(mask, return_inverse=True)  # the background (id 0) keeps zeros
    lut = np.zeros((len(present), len(classifier.classes_)), np.float32)
    lut[np.searchsorted(present, prediction.ids)] = prediction.probabilities
    proba = np.moveaxis(lut[inverse.reshape(mask.shape)], -1, 0)
    class_image = prediction.class_image.astype(np.int64)[None]
    image = np.ascontiguousarray(np.moveaxis(plane, -1, 0)[None], np.float32)
    classes = class_names(classifier.classes_)
    meta = common_meta(classifier, "object", name, description, authors, license, cite, classes)
    ids = [0] + [int(c) for c in classifier.classes_]

    def describe(parts: dict[str, Any]) -> Any:
        from bioimageio.spec.model import v0_5 as spec

        inputs = [image_input(image.shape[1], parts["image_test"], parts["image_sample"]),
                  mask_input(parts["mask_test"], parts["mask_sample"])]
        outputs = [
            space_output("class_image", "each object painted with its class id (0 = background)", None,
                         spec.NominalOrOrdinalDataDescr(values=ids, type="int64"), parts["class_image_test"],
                         parts["class_image_sample"]),
            space_output("probabilities", "class probabilities of each pixel's object (0 on the background)",
                         classes, spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
                         parts["probabilities_test"], parts["probabilities_sample"])]
        return model_descr(parts, inputs, outputs, ["object-classification", "instance-segmentation",
                                                    "vision-foundation-model", "random-forest"], OPSET)

    differences = write_package(
        path, classifier, object_module(classifier), {"image": image, "mask": mask[None]},
        {"class_image": class_image, "probabilities": proba[None]}, describe, meta,
        cover_png(image[0], np.concatenate([(class_image == 0).astype(np.float32), proba[None][0]])))
    return {"path": str(path), "classes": classes, "n_channels": int(image.shape[1]), "test_shape": list(image.shape),
            "n_objects": int(len(prediction.ids)), **differences["probabilities"],
            "class_image_mismatched_per_million": differences["class_image"]["mismatched_per_million"],
            "tolerance": TOLERANCE}
