"""``vfm-features train pixels|objects``: train a classifier from image files and save it to ``-o FILE.vfmc``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (
    add_extractor_arguments,
    add_overwrite_argument,
    add_trust_arguments,
    check_inputs,
    check_outputs,
    check_same_length,
    extractor_options,
    parse_options,
    refuse,
    show_progress,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=("pixels", "objects"), help="pixel classification or object classification")
    p.add_argument("--images", nargs="+", required=True, help="training images")
    p.add_argument("--labels", nargs="+", required=True,
                   help="pixels: sparse label images (0 = unlabelled, 1..K); objects: class images "
                        "(majority vote per object) or .json / .csv (id,class) files {object id: class}")
    p.add_argument("--masks", nargs="+", help="objects only: instance masks (0 = background), one per image")
    p.add_argument("--output", "-o", required=True, metavar="FILE.vfmc", help="the classifier file to write")
    add_overwrite_argument(p)
    add_extractor_arguments(p, "", "filters for pixels, regionprops for objects")
    add_trust_arguments(p)
    p.add_argument("--upsampler", metavar="NAME",
                   help="pixel extractors: how embeddings are read at pixels (default: bilinear); "
                        "see 'vfm-features list --upsamplers'")
    p.add_argument("--upsampler-option", action="append", metavar="KEY=VALUE",
                   help="upsampler option, repeatable (e.g. --upsampler-option grid=256; anyup: "
                        "--upsampler-option weights=anyup_paper.pth, which the classifier file never stores)")
    p.add_argument("--reduce", type=int, metavar="K",
                   help="pixel extractors: reduce the embedding channels to K principal components before "
                        "upsampling (a PCA fitted on the training images, saved with the classifier)")
    p.add_argument("--head", default="rf", metavar="NAME",
                   help="classification head (default: rf); see 'vfm-features list --heads'")
    p.add_argument("--head-option", action="append", metavar="KEY=VALUE",
                   help="head option, repeatable (e.g. --head-option n_estimators=100 --head-option max_depth=8)")
    p.add_argument("--trees", type=int, metavar="N",
                   help="shortcut for --head-option n_estimators=N (default: the head's, rf: 64 for pixels, "
                        "200 for objects)")
    p.add_argument("--budget", type=int,
                   help="most labelled pixels/objects used, balanced over classes (default: pixels 10000, objects all)")
    p.add_argument("--working-shape", type=int, nargs=2, metavar=("H", "W"),
                   help="pixels: predict on this grid and interpolate (e.g. 256 256); predict --working-shape "
                        "changes it later")
    p.add_argument("--stats", nargs="+", metavar="STAT",
                   help="objects with a pixel extractor: statistics of the features over each object, from "
                        "mean std min max (default: mean)")
    p.add_argument("--no-area", action="store_true",
                   help="objects with a pixel extractor: leave the object's area out of its features")
    p.add_argument("--seed", type=int, default=0, help="seed of the label draw and the head (default 0)")
    p.add_argument("--jobs", type=int, default=-1, help="threads for the head (default: all cores)")
    p.add_argument("--cache", help="embedding cache directory (.zarr) reused across runs")


def _read_object_labels(path: str):
    """A .json/.csv mapping {object id: class}, or a class image reduced by majority vote."""
    from vfm_features.evaluation.datasets import read_object_classes
    from vfm_features.io import read_image

    if Path(path).suffix.lower() in (".json", ".csv"):
        return read_object_classes(path)
    return read_image(path)


def _head_options(args: argparse.Namespace, kind: str) -> dict:
    """--head-option pairs and --trees, checked against the head's options before anything is read."""
    from vfm_features.errors import InputError, UnknownOptionError
    from vfm_features.extractor import accepted_options
    from vfm_features.registry import default_registry

    spec = default_registry().head_spec(args.head, kind)
    options = parse_options(args.head_option, "--head-option")
    if args.trees is not None:
        if args.trees < 1:
            raise InputError(f"--trees {args.trees}: give a positive number of trees.")
        if options.get("n_estimators", args.trees) != args.trees:
            raise InputError("--trees and --head-option n_estimators=... disagree; give only one of them.")
        options["n_estimators"] = args.trees
    accepted = accepted_options(spec.load_factory(), spec.options)
    unknown = sorted(set(options) - accepted)
    if unknown:
        flag = "--trees" if unknown == ["n_estimators"] and args.trees is not None else "--head-option"
        raise UnknownOptionError(f"The {kind} head {spec.name!r} does not take {', '.join(unknown)} ({flag}); "
                                 f"its options: {', '.join(sorted(accepted)) or 'none'}.")
    return options


def run(args: argparse.Namespace) -> int:
    import time

    from vfm_features.errors import InputError
    from vfm_features.registry import default_registry, get_spec

    kind = "pixel" if args.task == "pixels" else "object"
    out = Path(args.output)
    if out.suffix != ".vfmc":
        raise InputError(f"-o {out}: a classifier file ends in .vfmc (for example -o {out.stem or 'model'}.vfmc).")
    # flags that do not apply are refused, not ignored
    extractor = args.extractor or ("filters" if args.task == "pixels" else "regionprops")
    ext_kind = get_spec(extractor).kind
    if args.task == "pixels":
        for flag, given in (("--masks", args.masks), ("--stats", args.stats), ("--no-area", args.no_area)):
            if given:
                raise refuse(flag, "is for 'train objects', not 'train pixels'")
        if ext_kind != "pixel":
            raise InputError(f"{extractor} computes per-object features; 'train pixels' needs a pixel extractor "
                             "(e.g. -e filters), or use 'train objects'.")
    else:
        if args.working_shape:
            raise refuse("--working-shape", "is for 'train pixels', not 'train objects'")
        if not args.masks:
            raise InputError("train objects needs --masks (one instance mask per image).")
        if ext_kind == "object":
            for flag, given in (("--stats", args.stats), ("--no-area", args.no_area),
                                ("--upsampler", args.upsampler), ("--upsampler-option", args.upsampler_option),
                                ("--reduce", args.reduce is not None)):
                if given:
                    raise refuse(flag, f"applies to pixel extractors; {extractor} computes object features "
                                       "itself")
    if args.upsampler:
        default_registry().upsampler_spec(args.upsampler)
    upsampler_options = parse_options(args.upsampler_option, "--upsampler-option")
    if upsampler_options:  # checked before anything is read (building stores options, loads nothing)
        from vfm_features.registry import get_upsampler

        get_upsampler(args.upsampler or "bilinear", **upsampler_options)
    if args.reduce is not None and args.reduce < 1:
        raise InputError(f"--reduce {args.reduce}: give a positive number of principal components (e.g. --reduce 16).")
    head_options = _head_options(args, kind)
    options = extractor_options(args)
    check_same_length(args.images, args.labels, "images", "label files")
    if args.masks:
        check_same_length(args.images, args.masks, "images", "masks")
    inputs = [*args.images, *args.labels, *(args.masks or [])]
    check_inputs(inputs)
    check_outputs([out], inputs=inputs, overwrite=args.overwrite)

    from vfm_features.classifiers.object import ObjectClassifier
    from vfm_features.classifiers.pixel import PixelClassifier
    from vfm_features.io import read_image

    from ._common import Staging

    images = [read_image(p) for p in args.images]
    common = dict(extractor_options=options, upsampler=args.upsampler or "bilinear",
                  upsampler_options=upsampler_options or None, head=args.head, head_options=head_options,
                  reduce=args.reduce, n_jobs=args.jobs, random_state=args.seed, cache=args.cache,
                  progress=show_progress())
    t0 = time.perf_counter()
    if args.task == "pixels":
        labels = [read_image(p) for p in args.labels]
        clf = PixelClassifier(extractor, budget=10_000 if args.budget is None else args.budget,
                              working_shape=tuple(args.working_shape) if args.working_shape else None, **common)
        clf.fit(images, labels, axes=args.axes)
        what = f"{clf.n_training_pixels_} pixels"
    else:
        masks = [read_image(p) for p in args.masks]
        labels = [_read_object_labels(p) for p in args.labels]
        extra = {"stats": tuple(args.stats)} if args.stats else {}
        clf = ObjectClassifier(extractor, budget=args.budget, include_area=not args.no_area, **extra, **common)
        clf.fit(images, masks, labels, axes=args.axes)
        what = f"{clf.n_training_objects_} objects"
    with Staging() as stage:
        clf.save(stage.file(out))
    print(f"trained {clf.extractor_.name} + {args.head} on {what} of classes {clf.classes_.tolist()} in "
          f"{time.perf_counter() - t0:.1f} s; saved {out}")
    return 0
