"""Reading images and writing files without leaving half-written ones: the library's one atomic write.

Every file the library writes goes through :func:`atomic_path`: the data is
written to a hidden temporary next to the target, named
``.<name>.<pid>.vfm-tmp<suffix>``, and renamed onto the target only when the
write succeeded. A process killed mid-write (SIGKILL, power loss) leaves such a
temporary behind; the next write into the same folder removes the ones whose
process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = (".tif", ".tiff", ".npy", ".png", ".jpg", ".jpeg")
WRITE_SUFFIXES = (".tif", ".tiff", ".npy", ".png")
_TMP_MARK = ".vfm-tmp"
_TMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.vfm-tmp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF, NPY, PNG or JPEG file into a numpy array (never unpickles anything)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give an image file ({', '.join(IMAGE_SUFFIXES)}).")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"Cannot read {path.name}: unknown file type {suffix!r}; use one of {IMAGE_SUFFIXES}.")
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except (OSError, ValueError, SyntaxError, IndexError, KeyError, TypeError) as exc:
        if isinstance(exc, PermissionError):
            raise InputError(f"Cannot read {path}: permission denied.") from None
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"Cannot read {path} as a {suffix[1:].upper()} image ({detail}); "
                         "is it damaged or of another type than its name says?") from None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its files alone
    return True


def clean_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove this library's temporaries in ``folder`` whose writing process no longer runs."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_NAME.match(entry.name)
        if m and not entry.is_symlink() and not _pid_alive(int(m.group(1))):
            try:
                if entry.is_dir():
                    shutil.rmtree(entry)  # a folder being assembled (an export, a staged output)
                else:
                    entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def replace_folder(tmp: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Rename the finished folder ``tmp`` onto ``target``; an existing ``target`` is moved aside first and
    removed only once the new one is in place (restored if the rename fails)."""
    tmp, target = Path(tmp), Path(target)
    old = None
    if target.exists():
        old = temporary_name(target)
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def temporary_name(target: str | os.PathLike) -> Path:
    """A hidden temporary next to ``target``, named so that :func:`clean_stale_temporaries` recognises it."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{_TMP_MARK}{target.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    The parent folder is created if needed. On any error the temporary is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path.parent)
    tmp = temporary_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_image(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as TIFF, NPY or PNG (chosen by suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise InputError(f"Cannot write {path.name}: use a .tif, .npy or .png file name.")
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        elif suffix == ".png":
            import imageio.v3 as iio

            iio.imwrite(tmp, array, extension=".png")
        else:
            import tifffile

            tifffile.imwrite(tmp, array, photometric="minisblack")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_outputs(outputs: list[str | os.PathLike], *, inputs: list[str | os.PathLike] = (),
                  overwrite: bool = False) -> None:
    """Refuse output paths that are inputs, that repeat, or that exist (unless ``overwrite``).

    Called before any work starts, so a refused command leaves every file as it was.
    """
    outs = [Path(o) for o in outputs]
    ins = [Path(i) for i in inputs]
    for o in outs:
        for i in ins:
            if _same_file(o, i):
                raise InputError(f"The output {o} is also an input; choose another output name.")
    seen: dict[Path, Path] = {}
    for o in outs:
        key = o.resolve()
        if key in seen:
            raise InputError(f"Two outputs would be written to {o}; give the inputs distinct names.")
        seen[key] = o
    if not overwrite:
        existing = [str(o) for o in outs if o.exists() or o.is_symlink()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise InputError(f"{existing[0]}{more} exists already; use --overwrite (overwrite=True in Python) to "
                             "replace it, or choose another output.")
