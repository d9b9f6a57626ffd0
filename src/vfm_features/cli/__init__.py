"""The ``vfm-features`` command line. Each sub-command lives in its own module of this package.

A module ``vfm_features.cli.<name>`` provides ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when its command runs, so
``vfm-features --help`` and ``vfm-features list`` start without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vfm_features._version import __version__
from vfm_features.errors import VFMFeaturesError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("list_cmd", "List installed extractors (--details for weights, hashes, licences)."),
    "features": ("features_cmd", "Compute features of an image and write them to .zarr or .npy."),
    "train": ("train_cmd", "Train a pixel or object classifier from images and labels."),
    "predict": ("predict_cmd", "Apply a trained classifier to images."),
    "demo": ("demo_cmd", "Train and evaluate classifiers on the shipped synthetic data."),
    "evaluate": ("evaluate_cmd", "Label-efficiency evaluation (F1 vs budget, k folds x repeats)."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vfm-features",
        description="Vision foundation model features for pixel and object classification.")
    parser.add_argument("--version", action="version", version=f"vfm-features {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # argument definitions are cheap; heavy imports happen in run()
        try:
            importlib.import_module(f".{module}", __name__).add_arguments(p)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            p.set_defaults(_missing=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "_missing", False):
        print(f"vfm-features: the '{args.command}' command is not available in this build.", file=sys.stderr)
        return 2
    module = importlib.import_module(f".{args._module}", __name__)
    try:
        return int(module.run(args) or 0)
    except (VFMFeaturesError, ImportError, FileNotFoundError) as exc:
        print(f"vfm-features {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
