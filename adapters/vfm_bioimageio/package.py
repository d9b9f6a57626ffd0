"""Write trained classifiers as bioimage.io model packages (spec 0.5, ONNX weights), atomically.

A package holds one ONNX graph that does everything the library does
(:mod:`.pixel_graph`, :mod:`.object_graph`), test tensors - the test input and
the *library's* prediction for it, so that bioimage.io's own model test checks
that the graph predicts like the library - sample tensors (TIFF), a cover
image, a README, citations by DOI, and no URL anywhere (a URL field makes
``bioimageio.core`` go online when testing). Spatial axes take any size from
:data:`~.descr.MIN_SIDE` up (step 1), so bioimage.io never pads an image, and
are declared not concatenable: the pipeline resizes and scales the whole image
at once, and an object must be seen whole.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import vfm_features as vf

from .citations import citations
from .cover import cover_png
from .descr import MIN_SIDE, identifier, image_input, model_descr, space_output
from .onnx_graph import OPSET, TOLERANCE, check_parity, export_graph, run_graph
from .pixel_graph import check_exportable, pixel_module
from .readme import readme_text

__all__ = ["MIN_SIDE", "default_test_image", "package_pixel_classifier", "prepare_test_plane", "write_package"]

_DEFAULT_LICENSE = "MIT"


def default_test_image(n_channels: int, side: int = 64) -> np.ndarray:
    """A reproducible (side, side, n_channels) float32 test image: smooth blobs on a gradient, plus noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    planes = []
    for _ in range(n_channels):
        blobs = sum(np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.01) for cy, cx in rng.random((4, 2)))
        planes.append(0.2 + 0.3 * x + blobs + 0.05 * rng.standard_normal((side, side)))
    return np.stack(planes, axis=-1).astype(np.float32)


def class_names(classes: np.ndarray) -> list[str]:
    """Channel names of the classes: ``class_<id>`` (identifiers of at most 32 characters, unique)."""
    names = [identifier(f"class_{c}", "class") for c in np.asarray(classes).tolist()]
    return names if len(set(names)) == len(names) else [f"class_{i + 1}" for i in range(len(names))]


def prepare_test_plane(classifier: Any, test_image: Any, axes: str | None) -> np.ndarray:
    """The test image as one (Y, X, C) float32 plane with the trained channel count."""
    trained = (getattr(classifier, "intensity_range_", None) or {}).get("p1")
    if test_image is None:
        return default_test_image(len(trained) if trained else 1)
    planes, stack = vf.to_planes(test_image, axes)
    if stack:
        raise vf.InputError(f"The test image must be one 2D plane (with or without channels); got a stack {stack}.")
    plane = planes[0].astype(np.float32)
    if trained and plane.shape[-1] != len(trained):
        raise vf.InputError(f"The test image has {plane.shape[-1]} channel(s) but the classifier was trained on "
                         f"{len(trained)}.")
    if min(plane.shape[:2]) < MIN_SIDE:
        raise vf.InputError(f"The test image is {plane.shape[:2]}; give one at least {MIN_SIDE} pixels on each side.")
    if not np.any(np.abs(plane) >= 1e-4):
        raise vf.InputError("The test image is (almost) all zeros; bioimage.io needs a test tensor with values.")
    return plane


def _license(classifier: Any, license: str | None) -> str:
    if license is not None:
        return str(license)
    extractor = classifier.extractor_
    if not extractor.options.get("pretrained", True):
        return _DEFAULT_LICENSE  # random weights: nothing but this library's code and the user's training
    spec_license = getattr(extractor.spec, "license", "")
    if not spec_license:
        raise vf.InputError(f"The weights of {extractor.name} name no licence; pass license='<SPDX id>' (the licence "
                         "under which you may share them).")
    return spec_license


def check_target(path: Any, overwrite: bool) -> Path:
    """The package path: a .zip that does not exist yet (unless ``overwrite``)."""
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise vf.InputError(f"{path.name}: a bioimage.io package is a .zip file; give a path ending in .zip.")
    if path.exists() and not overwrite:
        raise vf.InputError(f"{path} exists; pass overwrite=True to replace it.")
    return path


def write_package(path: Path, classifier: Any, module: Any, inputs: dict[str, np.ndarray],
                  expected: dict[str, np.ndarray], describe: Callable[[dict[str, Any]], Any],
                  meta: dict[str, Any], cover: bytes) -> dict[str, Any]:
    """Export ``module``, check it against ``expected`` (output name -> the library's output), write the package.

    ``describe(parts)`` builds the ModelDescr from the working files in ``parts``
    (``weights``, ``readme``, ``cover`` and ``<tensor>_test`` / ``<tensor>_sample``
    for every input and output). Returns :func:`~.onnx_graph.check_parity`'s figures per output.
    """
    import tifffile
    from bioimageio.spec import save_bioimageio_package

    with tempfile.TemporaryDirectory(prefix="vfm-bioimageio-") as work:
        work = Path(work)
        parts: dict[str, Any] = {**meta, "weights": work / "classifier.onnx", "cover": work / "cover.png",
                                 "readme": work / "README.md"}
        export_graph(module, inputs, list(expected), parts["weights"])
        got = run_graph(parts["weights"], inputs)
        differences = {name: check_parity(want, have) for (name, want), have in zip(expected.items(), got)}
        for name, array in [*inputs.items(), *expected.items()]:
            parts[f"{name}_test"], parts[f"{name}_sample"] = work / f"{name}_test.npy", work / f"{name}_sample.tif"
            np.save(parts[f"{name}_test"], array, allow_pickle=False)
            tifffile.imwrite(parts[f"{name}_sample"], array[0])
        parts["cover"].write_bytes(cover)
        parts["readme"].write_text(readme_text(classifier, parts, differences), encoding="utf-8")
        try:
            descr = describe(parts)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            hint = (" (a serializer failing inside pydantic: bioimageio.spec 0.5.12 needs pydantic < 2.14)"
                    if "serializer" in str(exc) else "")
            raise vf.InputError(f"bioimage.io refused the model description{hint}: {exc}") from None
        built = save_bioimageio_package(descr, output_path=work / "package.zip")
        with vf.atomic_path(path) as tmp:
            shutil.copyfile(built, tmp)
    return differences


def common_meta(classifier: Any, kind: str, name: str | None, description: str | None, authors: Sequence[str],
                license: str | None, cite: Sequence[tuple[str, str]], classes: list[str]) -> dict[str, Any]:
    """Name, description, authors, citations and licence of a package."""
    extractor = classifier.extractor_
    return {"classes": classes, "authors": list(authors) or ["vfm-features user"],
            "cite": citations(extractor, cite), "license": _license(classifier, license), "kind": kind,
            "name": name or f"vfm-features {kind} classifier ({extractor.name.replace(':', ' ')})",
            "description": (description or f"{kind.capitalize()} classifier: {extractor.name} features, bilinear "
                            f"upsampling and a random forest over {len(classes)} classes (vfm-features)")[:1024]}


def package_pixel_classifier(classifier: Any, path: Any, *, test_image: Any = None, axes: str | None = None,
                             name: str | None = None, description: str | None = None,
                             authors: Sequence[str] = ("vfm-features user",), license: str | None = None,
                             cite: Sequence[tuple[str, str]] = (), overwrite: bool = False) -> dict[str, Any]:
    """Write ``classifier`` (a fitted PixelClassifier) as a bioimage.io model package (a .zip) at ``path``.

    The whole pipeline must fit one ONNX graph (a model extractor with a fixed
    'stretch' input, the bilinear upsampler, a random-forest head; see
    :func:`~vfm_bioimageio.pixel_graph.check_exportable`, whose error says which part
    cannot and why). ``test_image`` (one 2D plane, channels last or per ``axes``;
    default a synthetic one) and the library's prediction for it become the
    package's test tensors. ``license`` defaults to the extractor's (or MIT for
    random weights); ``cite`` adds (text, doi) pairs. Returns a summary: path,
    classes, channels and the largest difference between the graph and the library.
    """
    path = check_target(path, overwrite)
    check_exportable(classifier)
    plane = prepare_test_plane(classifier, test_image, axes)
    expected = classifier.predict_proba(plane, axes="YXC").astype(np.float32)[None]
    image = np.ascontiguousarray(np.moveaxis(plane, -1, 0)[None], np.float32)
    classes = class_names(classifier.classes_)
    meta = common_meta(classifier, "pixel", name, description, authors, license, cite, classes)

    def describe(parts: dict[str, Any]) -> Any:
        from bioimageio.spec.model import v0_5 as spec

        outputs = [space_output("probabilities", "class probabilities per pixel (sum to 1 over classes)", classes,
                                spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
                                parts["probabilities_test"], parts["probabilities_sample"])]
        inputs = [image_input(image.shape[1], parts["image_test"], parts["image_sample"])]
        return model_descr(parts, inputs, outputs, ["pixel-classification", "semantic-segmentation",
                                                    "vision-foundation-model", "random-forest"], OPSET)

    differences = write_package(path, classifier, pixel_module(classifier), {"image": image},
                                {"probabilities": expected}, describe, meta, cover_png(image[0], expected[0]))
    return {"path": str(path), "classes": classes, "n_channels": int(image.shape[1]),
            "test_shape": list(image.shape), **differences["probabilities"], "tolerance": TOLERANCE}
