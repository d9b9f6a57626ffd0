"""``vfm-features predict``: apply a saved classifier to images and write the results into ``-o DIR``.

For each image ``<stem>.<ext>`` it writes into DIR:

* ``<stem>_classes.tif`` - uint16 class map (pixels: every pixel; objects: every
  object painted with its class, 0 = background);
* pixels with ``--probabilities``: ``<stem>_probabilities.tif`` - float32 (K, H, W)
  in the order of the classes;
* objects: ``<stem>_objects.csv`` - one row per object, ``id,class``, and with
  ``--probabilities`` the columns ``p_<class>``.

Large images (``--scheduler``, ``--block-shape``, or an OME-Zarr input) are read
lazily and predicted block by block on Dask (:mod:`vfm_features.scale`); each
image then gives ``<stem>.ome.zarr`` (``classes``, and ``probabilities`` with
``--probabilities``) and, for objects, ``<stem>_objects.csv``. An interrupted
run resumes where it stopped when the same command is run again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (
    add_overwrite_argument,
    add_trust_arguments,
    check_inputs,
    check_output_dir,
    check_outputs,
    check_same_length,
    extractor_options,
    refuse,
    show_progress,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("classifier", help="a .vfmc file written by 'vfm-features train'")
    p.add_argument("--images", nargs="+", required=True,
                   help="images to classify (distinct file names): files, folders or glob patterns")
    p.add_argument("--masks", nargs="+", help="object classifiers only: instance masks, one per image (files, "
                                                "folders or glob patterns, in the order of the images)")
    p.add_argument("--output", "-o", required=True, metavar="DIR",
                   help="folder for <stem>_classes.tif, plus <stem>_probabilities.tif (pixels, with "
                        "--probabilities) or <stem>_objects.csv (objects: id,class[,p_<class>...])")
    add_overwrite_argument(p)
    p.add_argument("--probabilities", action="store_true",
                   help="also write class probabilities (pixels: <stem>_probabilities.tif, K x H x W float32; "
                        "objects: p_<class> columns in <stem>_objects.csv)")
    p.add_argument("--working-shape", type=int, nargs=2, metavar=("H", "W"),
                   help="pixel classifiers: predict on this grid and interpolate (replaces the one set at training)")
    add_trust_arguments(p)
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE",
                   help="extractor option at load time, repeatable, e.g. -O device=cpu; options that change the "
                        "features must be those of training")
    p.add_argument("--upsampler-option", action="append", metavar="KEY=VALUE",
                   help="upsampler option at load time, repeatable, e.g. --upsampler-option weights=anyup_paper.pth "
                        "(a classifier file never stores weights paths)")
    p.add_argument("--axes", help="axis order of the images when ambiguous")
    p.add_argument("--cache", help="embedding cache directory (.zarr)")
    big = p.add_argument_group("large images (blockwise on Dask, OME-Zarr output, resumable)")
    big.add_argument("--scheduler", help="threads (default for blockwise runs), processes, synchronous, or the "
                                         "address of a dask.distributed scheduler, e.g. tcp://127.0.0.1:8786")
    big.add_argument("--block-shape", type=int, metavar="N", help="block side in pixels (default 1024)")
    big.add_argument("--workers", type=int, metavar="N", help="local threads or processes (default: all cores)")


def _names(images: list[str], out: Path) -> list[str]:
    """Output stems, one per image; two images with the same stem are refused."""
    from vfm_features.errors import InputError

    seen: dict[str, str] = {}
    stems = []
    for path in images:
        stem = Path(path).stem
        key = stem.casefold()
        if key in seen:
            raise InputError(f"{seen[key]} and {path} would both write {out / (stem + '_classes.tif')}; give the "
                             "images distinct file names, or run predict once per folder with its own -o.")
        seen[key] = path
        stems.append(stem)
    return stems


def _write_table(path: Path, ids, classes, proba, class_ids, with_proba: bool) -> None:
    import csv
    import io

    from vfm_features.io import write_text

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "class"] + ([f"p_{int(c)}" for c in class_ids] if with_proba else []))
    for i in range(len(ids)):
        row = [int(ids[i]), int(classes[i])]
        if with_proba:
            row += [f"{float(v):.6g}" for v in proba[i]]
        writer.writerow(row)
    write_text(path, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vfm_features.errors import InputError
    from vfm_features.validation import check_shape_pair

    from vfm_features.scale.sources import expand_inputs

    args.images = [str(p) for p in expand_inputs(args.images)]
    args.masks = [str(p) for p in expand_inputs(args.masks)] if args.masks else None
    out = check_output_dir(args.output)
    inputs = [args.classifier, *args.images, *(args.masks or [])]
    if args.scheduler or args.block_shape or any(p.lower().rstrip("/").endswith(".zarr") for p in args.images):
        check_inputs([p for p in inputs if not p.lower().rstrip("/").endswith(".zarr")])  # a .zarr is a folder
        return _run_blockwise(args, out)
    check_inputs(inputs)
    if args.working_shape:
        check_shape_pair(tuple(args.working_shape), "--working-shape", allow_none=False)
    options = extractor_options(args)
    stems = _names(args.images, out)

    from vfm_features.classifiers.load import load_classifier
    from vfm_features.classifiers.object import ObjectClassifier
    from vfm_features.io import read_image, write_image
    from vfm_features.progress import progress_bar

    from ._common import Staging

    clf = load_classifier(args.classifier, extractor_options=options or None, cache=args.cache,
                          upsampler_options=_upsampler_options(args))
    is_objects = isinstance(clf, ObjectClassifier)
    if is_objects:
        if args.working_shape:
            raise refuse("--working-shape", "applies to pixel classifiers; this is an object classifier")
        if not args.masks:
            raise InputError("This is an object classifier: pass --masks (one instance mask per image).")
        check_same_length(args.images, args.masks, "images", "masks")
    else:
        if args.masks:
            raise refuse("--masks", "applies to object classifiers; this is a pixel classifier")
        if args.working_shape:
            clf.working_shape = tuple(args.working_shape)  # a prediction setting: the learned state stays
    files = {}
    for stem in stems:
        names = [f"{stem}_classes.tif"]
        if is_objects:
            names.append(f"{stem}_objects.csv")
        elif args.probabilities:
            names.append(f"{stem}_probabilities.tif")
        files[stem] = [out / n for n in names]
    check_outputs([f for fs in files.values() for f in fs],
                  inputs=[args.classifier, *args.images, *(args.masks or [])], overwrite=args.overwrite)

    progress = show_progress()
    clf.progress = progress and len(args.images) == 1
    with Staging() as stage:
        for i, (path, stem) in enumerate(progress_bar(list(zip(args.images, stems)),
                                                      progress and len(args.images) > 1, desc="predict")):
            image = read_image(path)
            targets = files[stem]
            if is_objects:
                pred = clf.predict(image, read_image(args.masks[i]), axes=args.axes)
                write_image(stage.file(targets[0]), pred.class_image.astype(np.uint16))
                _write_table(stage.file(targets[1]), pred.ids, pred.classes, pred.probabilities, pred.class_ids,
                             args.probabilities)
            else:
                proba = clf.predict_proba(image, axes=args.axes)
                classes = clf.classes_[np.argmax(proba, axis=-3)]
                write_image(stage.file(targets[0]), classes.astype(np.uint16))
                if args.probabilities:
                    write_image(stage.file(targets[1]), proba.astype(np.float32))
    for path, stem in zip(args.images, stems):
        print(f"{path} -> {', '.join(str(t) for t in files[stem])}")
    return 0


def _run_blockwise(args: argparse.Namespace, out: Path) -> int:
    from vfm_features.classifiers.load import load_classifier
    from vfm_features.classifiers.object import ObjectClassifier
    from vfm_features.errors import InputError
    from vfm_features.scale import predict_objects, predict_pixels

    if args.working_shape:
        raise refuse("--working-shape", "applies to in-memory prediction; blockwise prediction is at full resolution")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers {args.workers}: give a positive number of threads or processes.")
    clf = load_classifier(args.classifier, extractor_options=extractor_options(args) or None, cache=args.cache,
                          upsampler_options=_upsampler_options(args))
    is_objects = isinstance(clf, ObjectClassifier)
    if is_objects and not args.masks:
        raise InputError("This is an object classifier: pass --masks (one instance mask per image).")
    if not is_objects and args.masks:
        raise refuse("--masks", "applies to object classifiers; this is a pixel classifier")
    if is_objects:
        check_same_length(args.images, args.masks, "images", "masks")
    stems = [_stem(p) for p in args.images]
    _names([s + ".tif" for s in stems], out)  # distinct names
    common = dict(block_shape=args.block_shape or 1024, scheduler=args.scheduler or "threads",
                  num_workers=args.workers, overwrite=args.overwrite, progress=show_progress(), log=print)
    out.mkdir(parents=True, exist_ok=True)
    for i, (path, stem) in enumerate(zip(args.images, stems)):
        target = out / f"{stem}.ome.zarr"
        if is_objects:
            report = predict_objects(clf, path, args.masks[i], target, table=out / f"{stem}_objects.csv",
                                     axes=args.axes, **common)
            extra = f" and {report.table} ({report.extra['n_objects']} objects)"
        else:
            report = predict_pixels(clf, path, target, probabilities=args.probabilities, axes=args.axes, **common)
            extra = ""
        resumed = f", {report.n_blocks - report.computed} done by an earlier run" if report.computed < report.n_blocks \
            else ""
        blocks = f"{report.n_blocks} block{'s' if report.n_blocks != 1 else ''}"
        print(f"{path} -> {target}{extra}: {blocks}{resumed}, {report.seconds:.1f} s, "
              f"{report.megapixels_per_second:.3g} megapixels/s")
    return 0


def _upsampler_options(args: argparse.Namespace) -> dict | None:
    from ._common import parse_options

    return parse_options(args.upsampler_option, "--upsampler-option") or None


def _stem(path: str) -> str:
    name = Path(path.rstrip("/")).name
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".npy", ".png", ".jpg", ".jpeg"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem
