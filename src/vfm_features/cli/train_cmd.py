"""``vfm-features train pixels|objects``: train a classifier from image files and save it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_extractor_arguments, check_same_length, parse_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=("pixels", "objects"), help="pixel classification or object classification")
    p.add_argument("--images", nargs="+", required=True, help="training images")
    p.add_argument("--labels", nargs="+", required=True,
                   help="pixels: sparse label images (0 = unlabelled, 1..K); objects: class images "
                        "(majority vote per object) or .json / .csv (id,class) files {object id: class}")
    p.add_argument("--masks", nargs="+", help="objects: instance masks (0 = background)")
    p.add_argument("--output", "-o", required=True, help="where to save the classifier (.vfmc)")
    add_extractor_arguments(p, "", "filters for pixels, regionprops for objects")
    p.add_argument("--budget", type=int,
                   help="most labelled pixels/objects used, balanced over classes (default: pixels 10000, objects all)")
    p.add_argument("--working-shape", type=int, nargs=2, metavar=("H", "W"),
                   help="pixels: predict on this grid and interpolate (e.g. 256 256)")
    p.add_argument("--stats", nargs="+", default=["mean"], help="objects with a pixel extractor: mean std min max")
    p.add_argument("--trees", type=int, help="number of trees (default: the library's, 64 for pixels, 200 for objects)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", help="embedding cache directory (.zarr) reused across runs")


def _read_object_labels(path: str):
    """A .json/.csv mapping {object id: class}, or a class image reduced by majority vote."""
    from vfm_features.evaluation.datasets import read_object_classes
    from vfm_features.io import read_image

    if Path(path).suffix.lower() in (".json", ".csv"):
        return read_object_classes(path)
    return read_image(path)


def run(args: argparse.Namespace) -> int:
    import time

    from vfm_features.errors import InputError
    from vfm_features.io import read_image
    from vfm_features.classifiers.object import ObjectClassifier
    from vfm_features.classifiers.pixel import PixelClassifier

    check_same_length(args.images, args.labels, "images", "label files")
    images = [read_image(p) for p in args.images]
    options = parse_options(args.option)
    trees = {} if args.trees is None else {"n_estimators": args.trees}
    t0 = time.perf_counter()
    if args.task == "pixels":
        labels = [read_image(p) for p in args.labels]
        clf = PixelClassifier(args.extractor or "filters", extractor_options=options,
                              budget=10_000 if args.budget is None else args.budget,
                              working_shape=tuple(args.working_shape) if args.working_shape else None,
                              random_state=args.seed, cache=args.cache, progress=True, **trees)
        clf.fit(images, labels, axes=args.axes)
        what = f"{clf.n_training_pixels_} pixels"
    else:
        if not args.masks:
            raise InputError("train objects needs --masks (one instance mask per image).")
        check_same_length(args.images, args.masks, "images", "masks")
        masks = [read_image(p) for p in args.masks]
        labels = [_read_object_labels(p) for p in args.labels]
        clf = ObjectClassifier(args.extractor or "regionprops", extractor_options=options, budget=args.budget,
                               stats=tuple(args.stats), random_state=args.seed, **trees,
                               cache=args.cache, progress=True)
        clf.fit(images, masks, labels, axes=args.axes)
        what = f"{clf.n_training_objects_} objects"
    clf.save(args.output)
    print(f"trained on {what} of classes {clf.classes_.tolist()} in {time.perf_counter() - t0:.1f} s; "
          f"saved {args.output}")
    return 0
