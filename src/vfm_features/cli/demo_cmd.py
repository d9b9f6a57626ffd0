"""``vfm-features demo``: the whole pipeline on synthetic data, or ``--save-data DIR`` to write that data."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extractor", "-e", default="filters", help="pixel extractor to use (default: filters)")
    p.add_argument("--size", type=int, default=256, help="side of the synthetic images (default 256)")
    p.add_argument("--train", type=int, default=4, help="training images (default 4)")
    p.add_argument("--test", type=int, default=2, help="held-out test images (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-data", metavar="DIR",
                   help="instead of running the demo, write train+test synthetic images to DIR in the dataset "
                        "layout: images/, labels/ (dense classes 1..4), instances/, object_classes/ (.json)")
    p.add_argument("--overwrite", action="store_true", help="with --save-data: replace files that exist")


def _save_data(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from vfm_features.evaluation.datasets import synthetic_dataset
    from vfm_features.io import write_image, write_text

    from ._common import Staging, check_output_dir, check_outputs

    out = check_output_dir(args.save_data)
    n = args.train + args.test
    names = [f"synthetic{i:02d}" for i in range(n)]
    files = {name: {sub: out / sub / f"{name}{'.json' if sub == 'object_classes' else '.tif'}"
                    for sub in ("images", "labels", "instances", "object_classes")} for name in names}
    check_outputs([f for d in files.values() for f in d.values()], overwrite=args.overwrite)
    data = synthetic_dataset(n, (args.size, args.size), random_state=args.seed)
    with Staging() as stage:
        for i, name in enumerate(data.names):
            f = files[name]
            write_image(stage.file(f["images"]), data.images[i])
            write_image(stage.file(f["labels"]), data.labels[i].astype(np.uint8))
            write_image(stage.file(f["instances"]), data.instances[i].astype(np.uint16))
            write_text(stage.file(f["object_classes"]),
                       json.dumps({str(k): int(v) for k, v in sorted(data.object_classes[i].items())}))
    print(f"wrote {n} synthetic images of {args.size}x{args.size} to {out}/: images/, labels/, instances/, "
          f"object_classes/ ({names[0]} ... {names[-1]})")
    return 0


def run(args: argparse.Namespace) -> int:
    from vfm_features.errors import InputError

    for flag in ("size", "train", "test"):
        if getattr(args, flag) < (8 if flag == "size" else 1):
            raise InputError(f"--{flag} {getattr(args, flag)} is too small.")
    if args.save_data:
        return _save_data(args)
    if args.overwrite:
        raise InputError("--overwrite applies with --save-data only; drop --overwrite.")
    from vfm_features.evaluation.demo import header, run_demo

    print(f"vfm-features demo: {args.train} training and {args.test} test synthetic images of "
          f"{args.size}x{args.size} (3 cell types + background); pixel labels are sparse scribbles (2%), "
          "object labels cover every training object.")
    print(header())
    run_demo(n_train=args.train, n_test=args.test, shape=(args.size, args.size), random_state=args.seed,
             pixel_extractor=args.extractor)
    return 0
