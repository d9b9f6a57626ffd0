"""``vfm-features package-bioimageio``: a saved classifier (.vfmc) -> a bioimage.io model package (.zip).

``add_arguments(parser)`` and ``run(args)`` have the shape of the library's
sub-command modules (``vfm_features.cli.*_cmd``); ``main(argv)`` is the whole
command on its own (a console script). The classifier file is read with the
library's own loader (arrays and JSON, never a pickle); options that load files
(``-O path=...``, ``-O weights=...``) are given here, as for ``vfm-features predict``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import vfm_features as vf

__all__ = ["DESCRIPTION", "add_arguments", "build_parser", "main", "run"]

DESCRIPTION = ("Write a trained pixel or object classifier as a bioimage.io model package (-o FILE.zip; spec 0.5, "
               "one ONNX graph) that bioimageio.core tests offline.")


def build_parser(prog: str = "vfm-features package-bioimageio") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (cheap: nothing heavy is imported)."""
    p.add_argument("classifier", help="a classifier file saved by the library (.vfmc)")
    p.add_argument("-o", "--output", required=True, help="the package to write (.zip)")
    p.add_argument("--test-image", help="one 2D image (TIFF, PNG, NPY) for the package's test tensors "
                   "(default: a synthetic image)")
    p.add_argument("--test-mask", help="instance mask of --test-image (object classifiers: required)")
    p.add_argument("--axes", help="axes of --test-image, e.g. YXC or CYX (default: guessed)")
    p.add_argument("--name", help="model name (letters, digits, spaces, _+-() only)")
    p.add_argument("--description", help="one-line description")
    p.add_argument("--author", action="append", default=None, help="author name (repeat for several)")
    p.add_argument("--license", help="SPDX licence id (default: the extractor's; MIT for random weights)")
    p.add_argument("--cite", action="append", nargs=2, metavar=("TEXT", "DOI"), default=[],
                   help="an extra citation (repeat for several)")
    p.add_argument("-O", "--option", action="append", metavar="KEY=VALUE",
                   help="extractor option needed to load the classifier (e.g. -O weights=dino.pth)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package")


def _options(pairs: Sequence[str] | None) -> dict:
    """``["device=cpu", "input_size=64"]`` -> ``{"device": "cpu", "input_size": 64}`` (JSON values where they parse)."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise vf.InputError(f"-O {pair!r} is not KEY=VALUE (for example -O device=cpu).")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """The command on its own: parse ``argv``, :func:`run`; bad input is one line on stderr and status 1."""
    try:
        return run(build_parser().parse_args(argv))
    except (vf.VFMFeaturesError, OSError, ValueError) as exc:
        print(f"vfm-bioimageio: error: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    """Write the package and print a JSON summary; errors propagate (``vfm-features`` prints them as one line)."""
    from .object_package import package_object_classifier
    from .package import package_pixel_classifier

    classifier = vf.load_classifier(args.classifier, extractor_options=_options(args.option))
    test_image = vf.read_image(args.test_image) if args.test_image else None
    common = dict(axes=args.axes, name=args.name, description=args.description,
                  authors=args.author or ("vfm-features user",), license=args.license,
                  cite=[tuple(c) for c in args.cite], overwrite=args.overwrite)
    if isinstance(classifier, vf.ObjectClassifier):
        if test_image is None or not args.test_mask:
            raise vf.InputError("An object classifier's package needs --test-image and --test-mask (its instance "
                                "mask) for the package's test tensors.")
        summary = package_object_classifier(classifier, args.output, test_image=test_image,
                                            test_mask=vf.read_image(args.test_mask), **common)
    else:
        if args.test_mask:
            raise vf.InputError("--test-mask is for object classifiers; this is a pixel classifier.")
        summary = package_pixel_classifier(classifier, args.output, test_image=test_image, **common)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
