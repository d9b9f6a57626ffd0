"""``vfm-features predict``: apply a saved classifier to images and write class maps."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import check_same_length


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("classifier", help="a .vfmc file written by 'vfm-features train'")
    p.add_argument("--images", nargs="+", required=True, help="images to classify")
    p.add_argument("--masks", nargs="+", help="instance masks (object classifiers)")
    p.add_argument("--output-dir", "-o", required=True, help="folder for <image>_classes.tif (and _probabilities.tif)")
    p.add_argument("--probabilities", action="store_true", help="also write class probabilities")
    p.add_argument("--axes", help="axis order of the images when ambiguous")
    p.add_argument("--cache", help="embedding cache directory (.zarr)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vfm_features.errors import InputError
    from vfm_features.io import read_image, write_image
    from vfm_features.classifiers.object import ObjectClassifier
    from vfm_features.classifiers.fileformat import load_classifier
    from vfm_features.progress import progress_bar

    clf = load_classifier(args.classifier, cache=args.cache)
    out = Path(args.output_dir)
    is_objects = isinstance(clf, ObjectClassifier)
    if is_objects:
        if not args.masks:
            raise InputError("This is an object classifier: pass --masks (one instance mask per image).")
        check_same_length(args.images, args.masks, "images", "masks")
    for i, path in enumerate(progress_bar(args.images, len(args.images) > 1, desc="predict")):
        image = read_image(path)
        stem = Path(path).stem
        if is_objects:
            pred = clf.predict(image, read_image(args.masks[i]), axes=args.axes)
            write_image(out / f"{stem}_classes.tif", pred.class_image.astype(np.uint16))
            if args.probabilities:
                write_image(out / f"{stem}_probabilities.npy", pred.probabilities)
        else:
            proba = clf.predict_proba(image, axes=args.axes)
            classes = clf.classes_[np.argmax(proba, axis=-3)]
            write_image(out / f"{stem}_classes.tif", classes.astype(np.uint16))
            if args.probabilities:
                write_image(out / f"{stem}_probabilities.tif", proba.astype(np.float32))
        print(f"{path} -> {out / (stem + '_classes.tif')}")
    return 0
