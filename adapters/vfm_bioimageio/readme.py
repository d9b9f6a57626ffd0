"""The README (the package's ``documentation``) of a classifier package: what it is, how it was made, limits."""

from __future__ import annotations

from typing import Any

from vfm_features import __version__

from .onnx_graph import MISMATCH_PPM, TOLERANCE

__all__ = ["readme_text"]

_IO = {
    "pixel": ("an image `(batch, channel, y, x)`", "the probabilities of the classes {classes} at every pixel",
              "`PixelClassifier.predict_proba`"),
    "object": ("an image `(batch, channel, y, x)` and its instance mask `(batch, y, x)` (0 = background)",
               "a class image (each object painted with its class id {classes}, 0 = background) and each pixel's "
               "object's class probabilities", "`ObjectClassifier.predict`"),
}


def readme_text(classifier: Any, parts: dict[str, Any], differences: dict[str, float]) -> str:
    """Markdown describing the packaged pipeline, its classes, its test and what it does not do."""
    extractor = classifier.extractor_
    options = extractor.options
    contract = extractor.input_contract()
    reduce = getattr(classifier, "reduction_", None)
    kind = parts["kind"]
    takes, gives, like = _IO[kind]
    names = parts["classes"] if kind == "pixel" else [str(c) for c in classifier.classes_.tolist()]
    gives = gives.format(classes=", ".join(names))
    cite = "\n".join(f"- {text} (doi:{doi})" for text, doi in parts["cite"])
    per_object = (f"\n6. per object: {', '.join(classifier.stats)} of the features over its mask"
                  f"{' and its area in pixels' if classifier.include_area else ''};" if kind == "object" else "")
    checks = "\n".join(f"- `{name}`: largest difference {d['max_difference']:.2g}, "
                       f"{d['mismatched_per_million']:.0f} per million elements beyond {TOLERANCE}"
                       for name, d in differences.items())
    return f"""# {parts['name']}

{parts['description']}.

Made with vfm-features {__version__} (`vfm_bioimageio`).

## What the model does

One ONNX graph takes {takes}, of any size from 16 x 16 up, and returns {gives}, as the library's {like} does:

1. channel rule `{options.get('channels')}`, grey replicated to RGB;
2. intensity scaling `{options.get('normalization')}` (per image), clipped to 0..1;
3. resized to {contract.size} x {contract.size} (bilinear, antialiased), mean/std normalised;
4. the {extractor.name} network ({'published weights' if options.get('pretrained', True) else 'random weights'}),
   one feature vector per {contract.stride} x {contract.stride} patch;
5. {'a PCA to ' + str(reduce.n_components) + ' channels, then ' if reduce is not None else ''}bilinear upsampling
   of the features to every pixel;{per_object}
{7 if kind == 'object' else 6}. a random forest of {len(classifier.head_.forest_.estimators_)} trees.

## Validation

The test outputs are the library's own predictions for the test inputs, and the graph reproduced them before
the package was written. An element may differ where a feature lies within float rounding of a split
threshold of the forest (one tree goes the other way: a step of 1 / number of trees); at most {MISMATCH_PPM}
per million elements may differ by more than {TOLERANCE} (declared as the reproducibility tolerance):

{checks}

## Limits

- The whole image is resized and scaled at once{', and every object must be seen whole' if kind == 'object' else ''}:
  do not predict in tiles (the spatial axes are declared not concatenable); tiles give different features.
- Input is cast to float32 first, so the scaling sees float values: with `auto`, a uint8 image is scaled by its
  own minimum and maximum here where the library divides it by 255 (every other type is scaled alike).

## Citations

{cite}
"""
