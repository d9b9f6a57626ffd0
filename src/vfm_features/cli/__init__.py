"""The ``vfm-features`` command line. Each sub-command lives in its own module of this package.

A module ``vfm_features.cli.<name>`` provides ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when its command runs, so
``vfm-features --help`` and ``vfm-features list`` start without torch. Other
distributions (the adapters, third-party packages) add commands through the
entry-point group ``vfm_features.commands``: the name is the command, the value a
module with ``DESCRIPTION``, ``add_arguments`` and ``run`` (light to import), so
the core never imports them by name.

Every failure - a usage error, a refused output, an unreadable or damaged
file, a library error - exits with status 1 and one line on stderr,
``vfm-features <command>: error: ...``. Set ``VFM_FEATURES_TRACEBACK=1`` to see
the traceback instead (for bug reports). The rules for outputs are in
:mod:`vfm_features.cli._common` and docs/cli.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from vfm_features._version import __version__
from vfm_features.errors import VFMFeaturesError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("list_cmd", "List installed extractors, upsamplers (--upsamplers) or heads (--heads)."),
    "features": ("features_cmd", "Compute the features of an image and write them to -o FILE (.npy or .zarr)."),
    "train": ("train_cmd", "Train a pixel or object classifier and save it to -o FILE.vfmc."),
    "predict": ("predict_cmd", "Apply a trained classifier to images; writes result files into -o DIR."),
    "demo": ("demo_cmd", "Train and evaluate classifiers on synthetic data (or write that data with --save-data)."),
    "evaluate": ("evaluate_cmd", "Label-efficiency evaluation (F1 vs budget); writes DIR/evaluation.csv and .png."),
    "export-onnx": ("export_cmd", "Export a model extractor's image encoder to an ONNX folder (-o DIR), checked "
                                  "against torch; runs without torch afterwards."),
}


#: entry-point group of commands that other distributions add
COMMAND_GROUP = "vfm_features.commands"


def _plugin_commands() -> dict[str, object]:
    """Commands other distributions register: name -> entry point (built-in names win)."""
    from importlib.metadata import entry_points

    found = {}
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        if ep.name not in COMMANDS and ep.name not in found:
            found[ep.name] = ep
    return found


class UsageError(Exception):
    """A command line that argparse cannot parse."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vfm-features",
        description="Vision foundation model features for pixel and object classification. A command that "
                    "writes one file takes -o FILE, one that writes several takes -o DIR; existing outputs are "
                    "replaced only with --overwrite. See docs/cli.md.")
    parser.add_argument("--version", action="version", version=f"vfm-features {__version__}")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads the library may use in all (forest, filters, torch, onnxruntime, BLAS); "
                             "default: VFM_FEATURES_THREADS or every usable core")
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
    for name, ep in _plugin_commands().items():
        try:
            module = importlib.import_module(ep.value)  # type: ignore[attr-defined]
            help_text = str(getattr(module, "DESCRIPTION", "")) or f"command from {ep.value}"  # type: ignore
            p = sub.add_parser(name, help=help_text, description=help_text)
            module.add_arguments(p)
        except Exception as exc:  # a broken plugin command must not break the others
            import warnings

            warnings.warn(f"The command {name!r} ({ep.value}) could not be loaded and is skipped: "  # type: ignore
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            continue
        p.set_defaults(_module_path=module.__name__)
    return parser


def _message(exc: BaseException) -> str:
    """One line for the user: OSErrors name their path, decoding errors say what could not be read."""
    from ._common import one_line

    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        what = exc.strerror or type(exc).__name__
        other = f" -> {exc.filename2}" if getattr(exc, "filename2", None) else ""
        return one_line(f"{exc.filename}{other}: {what}")
    if isinstance(exc, UnicodeDecodeError):
        return one_line(f"cannot decode a file as {exc.encoding} text ({exc.reason}); is it the right file?")
    return one_line(str(exc)) or type(exc).__name__


def _fail(command: str | None, text: str) -> int:
    prefix = f"vfm-features {command}" if command else "vfm-features"
    print(f"{prefix}: error: {text}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not getattr(args, "command", None):
        return _fail(None, f"give a command: {', '.join(COMMANDS)} (see 'vfm-features --help').")
    if getattr(args, "_missing", False):
        return _fail(args.command, "this command is not available in this build.")
    path = getattr(args, "_module_path", None)
    module = importlib.import_module(path) if path else importlib.import_module(f".{args._module}", __name__)
    try:
        if args.threads is not None:
            from ..threads import set_threads

            set_threads(args.threads)
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted; no output was written.")
    except (VFMFeaturesError, ImportError, OSError, ValueError, EOFError, MemoryError) as exc:
        # user errors: unreadable, unwritable or damaged files, bad values, missing optional packages
        if os.environ.get("VFM_FEATURES_TRACEBACK"):
            raise
        return _fail(args.command, _message(exc))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
