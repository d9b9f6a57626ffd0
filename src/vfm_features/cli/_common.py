"""What the sub-commands share: option parsing, input and output checks, staged writes, progress.

The rules every command follows (docs/cli.md):

* a command that writes one file takes ``-o FILE``; one that writes several takes ``-o DIR``;
* every output is checked before any work starts: it may not be an input, two
  outputs may not share a name, and an existing one is replaced only with
  ``--overwrite`` (and never if it is a folder, except a ``.zarr`` that
  ``vfm-features features`` wrote itself);
* outputs are written to hidden temporaries next to their targets and renamed
  into place only when everything succeeded, so a failing command leaves the
  output folder as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

from vfm_features.errors import InputError
from vfm_features.io import replace_folder, temporary_name

TRUST_HELP = ("trust the model checkpoint (--weights, or the cached download): allows checkpoints that pickle "
              "Python objects, which can RUN CODE stored in the file; use only for files whose origin you trust")


# -- arguments --------------------------------------------------------------------------------------
def parse_options(pairs: list[str] | None, flag: str = "--option") -> dict[str, Any]:
    """``["sigmas=[1,2]", "device=cpu"]`` -> ``{"sigmas": [1, 2], "device": "cpu"}`` (JSON values where they parse)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} {pair!r} is not KEY=VALUE (for example {flag} n_estimators=100).")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def add_extractor_arguments(p: argparse.ArgumentParser, default: str, default_help: str | None = None) -> None:
    p.add_argument("--extractor", "-e", default=default,
                   help=f"registered extractor name, e.g. filters, sam:vit_b (default: {default_help or default}); "
                        "see 'vfm-features list'")
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE",
                   help="extractor option, repeatable (e.g. -O sigmas=[1,2] -O device=cpu)")
    p.add_argument("--axes", help="axis order of the images when ambiguous, e.g. YXC, CYX, ZYX")


def add_trust_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", metavar="PATH",
                   help="model weights file for the extractor (an extractor option given at load time; a "
                        "classifier file never names weights itself)")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)


def add_overwrite_argument(p: argparse.ArgumentParser, extra: str = "never a folder") -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace outputs that exist already (never an input, {extra})")


def extractor_options(args: argparse.Namespace) -> dict[str, Any]:
    """-O KEY=VALUE pairs plus --weights and --trust-checkpoint, as extractor options."""
    options = parse_options(getattr(args, "option", None))
    for key, value in (("weights", getattr(args, "weights", None)),
                       ("trust_checkpoint", True if getattr(args, "trust_checkpoint", False) else None)):
        if value is None:
            continue
        if key in options and options[key] != value:
            flag = "--" + key.replace("_", "-")
            raise InputError(f"-O {key}=... and {flag} disagree; give only {flag}.")
        options[key] = value
    return options


def refuse(flag: str, reason: str) -> InputError:
    """The error for a flag that does not apply to what the command was asked to do."""
    return InputError(f"{flag} {reason}; drop {flag.split('/')[0]}.")


def check_same_length(a: list, b: list, what_a: str, what_b: str) -> None:
    if len(a) != len(b):
        raise InputError(f"Got {len(a)} {what_a} but {len(b)} {what_b}; pass one for each.")


def show_progress() -> bool:
    """Progress bars only on a terminal: in logs and pipes they would write carriage returns."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


# -- inputs ------------------------------------------------------------------------------------------
def check_inputs(paths: Iterable[str | os.PathLike | None]) -> None:
    """Every input exists, is a file and is readable (the error names the path)."""
    for p in paths:
        if p is None:
            continue
        path = Path(p)
        if not path.exists():
            raise InputError(f"{path}: no such file.")
        if path.is_dir():
            raise InputError(f"{path} is a folder; give a file.")
        if not os.access(path, os.R_OK):
            raise InputError(f"Cannot read {path}: permission denied.")


# -- outputs -----------------------------------------------------------------------------------------
def _writable_folder(path: Path) -> None:
    """The nearest existing ancestor of ``path`` must be a folder this process can write into."""
    parent = path.parent
    while not parent.exists() and not parent.is_symlink():
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"Cannot write {path}: {parent} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"Cannot write {path}: the folder {parent} is not writable.")


def check_output_dir(path: str | os.PathLike) -> Path:
    """``-o DIR``: an existing folder or a path that can be created as one."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out} is a file; this command writes several files and takes a folder.")
    _writable_folder(out / "x")
    return out


def check_outputs(outputs: list[Path], *, inputs: Iterable[Any] = (), overwrite: bool = False,
                  folders_ok: Iterable[Path] = ()) -> None:
    """Refuse outputs that are inputs, repeat, exist (without ``overwrite``), are folders or cannot be written."""
    from vfm_features.io import check_outputs as _check

    seen: dict[str, Path] = {}
    for o in outputs:
        key = str(o.resolve()).casefold()  # case-insensitive file systems
        if key in seen and seen[key] != o:
            raise InputError(f"Two outputs would be written to {o} and {seen[key]}, names that differ only in "
                             "case; give the inputs distinct names.")
        seen.setdefault(key, o)
    _check(outputs, inputs=[i for i in inputs if i is not None], overwrite=True)
    if not overwrite:
        existing = [o for o in outputs if o.exists() or o.is_symlink()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise InputError(f"{existing[0]}{more} exists already; pass --overwrite to replace it, or choose "
                             "another output.")
    folders_ok = {Path(f) for f in folders_ok}
    for o in outputs:
        if o.is_dir() and o not in folders_ok:
            raise InputError(f"{o} is a folder; choose another output name (this command never replaces folders).")
        _writable_folder(o)


class Staging:
    """Outputs written to hidden temporaries and renamed into place together, or not at all.

    ``with Staging() as stage: write(stage.file(target))`` - on success every
    temporary replaces its target; on any error the temporaries, and the folders
    this staging created (only when empty), are removed. ``stage.folder(target,
    replace_ok)`` stages a folder; an existing target folder is replaced only when
    ``replace_ok(target)`` says it may be (checked again just before).
    """

    def __init__(self) -> None:
        self._files: list[tuple[Path, Path]] = []
        self._folders: list[tuple[Path, Path, Any]] = []
        self._created: list[Path] = []
        self.written: list[Path] = []

    def _parents(self, target: Path) -> None:
        missing = []
        parent = target.parent
        while not parent.exists():
            missing.append(parent)
            if parent == parent.parent:
                break
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir()
            self._created.append(folder)

    def file(self, target: str | os.PathLike) -> Path:
        target = Path(target)
        self._parents(target)
        tmp = temporary_name(target)
        self._files.append((tmp, target))
        return tmp

    def folder(self, target: str | os.PathLike, replace_ok: Any = None) -> Path:
        target = Path(target)
        self._parents(target)
        tmp = temporary_name(target)
        tmp.mkdir()
        self._folders.append((tmp, target, replace_ok))
        return tmp

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self._commit()
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _commit(self) -> None:
        for tmp, target, replace_ok in self._folders:
            if target.exists() or target.is_symlink():
                if replace_ok is None or not replace_ok(target):
                    raise InputError(f"{target} exists and is not a folder this command wrote; not replacing it.")
        for tmp, target in self._files:
            if not tmp.exists():
                raise FileNotFoundError(f"nothing was written for {target}")
        for tmp, target in self._files:
            os.replace(tmp, target)
            self.written.append(target)
        for tmp, target, _ in self._folders:
            replace_folder(tmp, target)  # the folder replace_ok() accepted is moved aside, then removed
            self.written.append(target)

    def _rollback(self) -> None:
        for tmp, _ in self._files:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        for tmp, _, _ in self._folders:
            shutil.rmtree(tmp, ignore_errors=True)  # a temporary folder this staging made
        for folder in reversed(self._created):
            try:
                folder.rmdir()  # only if empty
            except OSError:
                pass


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())
