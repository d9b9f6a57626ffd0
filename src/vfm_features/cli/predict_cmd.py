"""``vfm-features predict``: apply a saved classifier to images and write the results into ``-o DIR``.

For each image ``<stem>.<ext>`` it writes into DIR:

* ``<stem>_classes.tif`` - uint16 class map (pixels: every pixel; objects: every
  object painted with its class, 0 = background);
* pixels with ``--probabilities``: ``<stem>_probabilities.tif`` - float32 (K, H, W)
  in the order of the classes;
* objects: ``<stem>_objects.csv`` - one row per object, ``id,class``, and with
  ``--probabilities`` the columns ``p_<class>``.
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
    p.add_argument("--images", nargs="+", required=True, help="images to classify (distinct file names)")
    p.add_argument("--masks", nargs="+", help="object classifiers only: instance masks, one per image")
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
    p.add_argument("--axes", help="axis order of the images when ambiguous")
    p.add_argument("--cache", help="embedding cache directory (.zarr)")


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

    out = check_output_dir(args.output)
    check_inputs([args.classifier, *args.images, *(args.masks or [])])
    if args.working_shape:
        check_shape_pair(tuple(args.working_shape), "--working-shape", allow_none=False)
    options = extractor_options(args)
    stems = _names(args.images, out)

    from vfm_features.classifiers.load import load_classifier
    from vfm_features.classifiers.object import ObjectClassifier
    from vfm_features.io import read_image, write_image
    from vfm_features.progress import progress_bar

    from ._common import Staging

    clf = load_classifier(args.classifier, extractor_options=options or None, cache=args.cache)
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
