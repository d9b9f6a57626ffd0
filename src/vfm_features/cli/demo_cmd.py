"""``vfm-features demo``: the whole pipeline on the shipped synthetic data."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extractor", "-e", default="filters", help="pixel extractor to use (default: filters)")
    p.add_argument("--size", type=int, default=256, help="side of the synthetic images (default 256)")
    p.add_argument("--train", type=int, default=4, help="training images (default 4)")
    p.add_argument("--test", type=int, default=2, help="held-out test images (default 2)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from vfm_features.evaluation.demo import header, run_demo

    print(f"vfm-features demo: {args.train} training and {args.test} test synthetic images of "
          f"{args.size}x{args.size} (3 cell types + background); pixel labels are sparse scribbles (2%), "
          "object labels cover every training object.")
    print(header())
    run_demo(n_train=args.train, n_test=args.test, shape=(args.size, args.size), random_state=args.seed,
             pixel_extractor=args.extractor)
    return 0
