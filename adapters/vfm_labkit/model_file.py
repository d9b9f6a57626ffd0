"""The segmenter's model file: a zip of ``segmenter.json`` (class names, colours) and ``classifier.vfmc``.

LabKit's own ``.classifier`` holds a Java-serialised Weka forest, which Python cannot write
(and must not read: Java serialisation runs code); so the model file is ours. The classifier
inside is a vfm-features ``.vfmc`` file, loaded by :func:`vfm_features.load_classifier` with
all its checks; the class names are kept beside it because a ``.vfmc`` file records class
ids, not names. Reading checks the member names, the declared sizes (before anything is
decompressed) and every field of ``segmenter.json``.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import vfm_features as vf

from vfm_labkit._files import atomic_write_bytes

FORMAT = "vfm-labkit-segmenter"
FORMAT_VERSION = 1
SUFFIX = ".vfmseg"
MAX_BYTES = 1 << 30
MAX_META_BYTES = 1 << 20
_MEMBERS = {"segmenter.json", "classifier.vfmc"}
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")


def _bad(path: Path, why: str) -> vf.InputError:
    return vf.InputError(f"{path} is not a valid segmenter model file: {why}.")


def save_model(classifier: Any, class_names: list[str], colors: dict[str, str], path: str | os.PathLike) -> Path:
    """Write a fitted classifier with its class names and colours to ``path`` (``*.vfmseg``), atomically."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise vf.InputError(f"Segmenter model files end in {SUFFIX}; got {path.name!r}.")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": vf.__version__,
            "class_names": list(class_names), "colors": {n: colors[n] for n in class_names if n in colors}}
    with tempfile.TemporaryDirectory(prefix="vfm-labkit-") as tmp:
        inner = Path(tmp) / "classifier.vfmc"
        classifier.save(inner)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("segmenter.json", json.dumps(meta, indent=1))
            zf.write(inner, "classifier.vfmc")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _check_meta(meta: Any, path: Path) -> tuple[list[str], dict[str, str]]:
    if not isinstance(meta, dict) or set(meta) != {"format", "format_version", "library_version", "class_names",
                                                    "colors"}:
        raise _bad(path, "segmenter.json does not have the expected keys")
    if meta["format"] != FORMAT:
        raise _bad(path, f"its format is {meta['format']!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise vf.InputError(f"{path} is in segmenter format {meta['format_version']!r}; this version reads "
                            f"{FORMAT_VERSION}. Use the vfm-features version that wrote it, or retrain.")
    names = meta["class_names"]
    if (not isinstance(names, list) or len(names) < 2 or len(set(map(str, names))) != len(names)
            or not all(isinstance(n, str) and 0 < len(n) <= 1000 for n in names)):
        raise _bad(path, "its class_names are not at least two distinct names")
    colors = meta["colors"]
    if not isinstance(colors, dict) or not all(k in names and isinstance(v, str) and _COLOR.match(v)
                                               for k, v in colors.items()):
        raise _bad(path, "its colors are not name -> '#RRGGBB' for its classes")
    return names, colors


def open_model(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES, **load_options: Any
               ) -> tuple[Any, list[str], dict[str, str]]:
    """(classifier, class names, colours) from a model file; ``load_options`` go to ``load_classifier``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such segmenter model file: {path}")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise _bad(path, "it is not a zip archive") from None
    with zf, tempfile.TemporaryDirectory(prefix="vfm-labkit-") as tmp:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if sorted(names) != sorted(_MEMBERS):
            raise _bad(path, f"it holds {names[:5]}, not exactly {sorted(_MEMBERS)}")
        sizes = {i.filename: i.file_size for i in infos}
        if sizes["segmenter.json"] > MAX_META_BYTES or sizes["classifier.vfmc"] > max_bytes:
            raise vf.InputError(f"{path} declares members larger than allowed ({sizes}); refusing to read it "
                                "(open_model(max_bytes=...) raises the bound for a file you trust).")
        try:
            meta = json.loads(zf.read("segmenter.json").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, zipfile.BadZipFile, OSError):
            raise _bad(path, "segmenter.json is not readable UTF-8 JSON") from None
        class_names, colors = _check_meta(meta, path)
        inner = Path(tmp) / "classifier.vfmc"
        with zf.open("classifier.vfmc") as src, open(inner, "wb") as dst:
            while chunk := src.read(1 << 20):  # the zip reader stops a member that inflates past its size
                dst.write(chunk)
        classifier = vf.load_classifier(inner, max_bytes=max_bytes, **load_options)
    ids = [int(c) for c in classifier.classes_]
    if ids != list(range(1, len(class_names) + 1)):
        raise _bad(path, f"its classifier has classes {ids}, not 1..{len(class_names)} for {len(class_names)} names")
    return classifier, class_names, colors
