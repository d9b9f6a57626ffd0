"""The LabKit adapter's file helpers: reads bounded before they start, writes that never leave half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import vfm_features as vf


def read_bounded(path: Path, max_bytes: int, *, what: str) -> bytes:
    """The bytes of ``path``, refused before reading when the file is larger than ``max_bytes``."""
    if not path.exists():
        raise FileNotFoundError(f"No such {what} file: {path}")
    if path.is_dir():
        raise vf.InputError(f"{path} is a folder; give a {what} file.")
    size = path.stat().st_size
    if size > max_bytes:
        raise vf.InputError(f"{path} has {size} bytes, more than the {max_bytes} allowed for a {what}; refusing "
                            "to read it (pass max_bytes=... to raise the bound for a file you trust).")
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # the file grew while we looked
        raise vf.InputError(f"{path} is larger than the {max_bytes} bytes allowed for a {what}.")
    return data


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temporary beside ``path`` and rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
