"""Evaluation datasets: a folder layout, its loader and checker, and the synthetic demo set.

Layout (file stems match across folders; any of .tif/.tiff/.npy/.png)::

    DATASET/
      images/          img01.tif ...   the images
      labels/          img01.tif ...   pixel task: class per pixel, 0 = unlabelled, 1..K
      instances/       img01.tif ...   object task: instance mask, 0 = background
      object_classes/  img01.json ...  object task: {"object id": class, ...}
                       or img01.csv    with a header ``id,class`` (one object per row)

``labels/`` enables the pixel task, ``instances/`` + ``object_classes/`` the
object task; a folder may have both. Every image needs its file in each task
folder present, and every file there needs an image.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vfm_features.errors import InputError
from vfm_features.io import IMAGE_SUFFIXES, read_image, write_image
from vfm_features.validation import check_image, check_instance_mask, check_labels

TASK_FOLDERS = {"pixels": ("labels",), "objects": ("instances", "object_classes")}
CLASS_SUFFIXES = (".json", ".csv")


@dataclass
class Dataset:
    """Images with pixel labels and/or instance masks with object classes, in one order."""

    names: list[str]
    images: list[np.ndarray]
    labels: list[np.ndarray] | None = None  # (Y, X) 0 = unlabelled, 1..K
    instances: list[np.ndarray] | None = None  # (Y, X) 0 = background
    object_classes: list[dict[int, int]] | None = None  # object id -> class
    axes: str | None = None  # axis order of the images when ambiguous, e.g. "YXC"
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this dataset supports: 'pixels' and/or 'objects'."""
        tasks = []
        if self.labels is not None:
            tasks.append("pixels")
        if self.instances is not None and self.object_classes is not None:
            tasks.append("objects")
        return tuple(tasks)


def _stem_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in suffixes:
            raise InputError(f"{path} has an unknown file type; use one of {suffixes} (or move it out of {folder}).")
        if path.stem in files:
            raise InputError(f"{path} and {files[path.stem]} share the stem {path.stem!r}; keep one file per stem.")
        files[path.stem] = path
    return files


def _matched(root: Path, sub: str, stems: list[str], suffixes: tuple[str, ...]) -> list[Path]:
    """The file of every image stem in ``root/sub``; a missing or unmatched file is named in the error."""
    files = _stem_files(root / sub, suffixes)
    for stem in stems:
        if stem not in files:
            raise InputError(
                f"{root / sub / stem}.* is missing: images/{stem} needs a file with the same stem in {sub}/ "
                f"(one of {', '.join(suffixes)}).")
    extra = sorted(set(files) - set(stems))
    if extra:
        raise InputError(f"{files[extra[0]]} has no image: add images/{extra[0]}.* or remove it.")
    return [files[s] for s in stems]


def read_object_classes(path: str | os.PathLike) -> dict[int, int]:
    """``{object id: class}`` from a .json mapping or a .csv with header ``id,class``."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise ValueError("expected a JSON object {\"id\": class}")
            pairs = list(raw.items())
        else:
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and not {"id", "class"} <= set(rows[0]):
                raise ValueError(f"expected the header 'id,class', got {list(rows[0])}")
            pairs = [(r["id"], r["class"]) for r in rows]
        mapping = {int(k): int(v) for k, v in pairs}
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a valid object class file ({exc}); write {{\"id\": class}} as JSON "
                         "or a CSV with the header id,class.") from None
    bad = {k: v for k, v in mapping.items() if k < 1 or v < 0}
    if bad:
        raise InputError(f"{path}: object ids must be >= 1 and classes >= 0 (0 = unlabelled); got {bad}.")
    return {k: v for k, v in mapping.items() if v != 0}


def load_dataset(folder: str | os.PathLike, *, axes: str | None = None) -> Dataset:
    """Read and check a dataset folder (see the module docstring for the layout)."""
    root = Path(folder)
    if not (root / "images").is_dir():
        raise InputError(f"{root / 'images'} is missing: a dataset folder holds images/ plus labels/ "
                         "(pixel task) and/or instances/ + object_classes/ (object task).")
    image_files = _stem_files(root / "images", IMAGE_SUFFIXES)
    if not image_files:
        raise InputError(f"{root / 'images'} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    stems = list(image_files)
    present = {task: all((root / sub).is_dir() for sub in subs) for task, subs in TASK_FOLDERS.items()}
    if (root / "instances").is_dir() != (root / "object_classes").is_dir():
        pair = ("instances", "object_classes")
        have, lack = pair if (root / "instances").is_dir() else pair[::-1]
        raise InputError(f"{root / lack} is missing: the object task needs both {have}/ and {lack}/.")
    if not any(present.values()):
        raise InputError(f"{root} has images/ but neither labels/ (pixel task) nor instances/ + "
                         "object_classes/ (object task).")
    images, shapes = [], []
    for stem in stems:
        img = read_image(image_files[stem])
        _, img_axes = check_image(img, axes=axes, name=str(image_files[stem]))
        images.append(img)
        shapes.append(tuple(img.shape[img_axes.index(a)] for a in "YX"))
    ds = Dataset(names=stems, images=images, axes=axes, source=str(root))
    if present["pixels"]:
        ds.labels = [check_labels(read_image(p), shape, name=str(p))
                     for p, shape in zip(_matched(root, "labels", stems, IMAGE_SUFFIXES), shapes)]
    if present["objects"]:
        ds.instances = [check_instance_mask(read_image(p), shape, name=str(p))
                        for p, shape in zip(_matched(root, "instances", stems, IMAGE_SUFFIXES), shapes)]
        ds.object_classes = []
        for p, mask in zip(_matched(root, "object_classes", stems, CLASS_SUFFIXES), ds.instances):
            classes = read_object_classes(p)
            unknown = sorted(set(classes) - set(np.unique(mask).tolist()))
            if unknown:
                raise InputError(f"{p} names object id(s) {unknown[:5]} that are not in its instance mask.")
            ds.object_classes.append(classes)
    return ds


def save_dataset(dataset: Dataset, folder: str | os.PathLike) -> Path:
    """Write ``dataset`` in the folder layout (.tif images and masks, .json classes)."""
    root = Path(folder)
    for sub in ("images",) + (("labels",) if dataset.labels is not None else ()) + (
            ("instances", "object_classes") if "objects" in dataset.tasks else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(dataset.names):
        write_image(root / "images" / f"{name}.tif", dataset.images[i])
        if dataset.labels is not None:
            write_image(root / "labels" / f"{name}.tif", dataset.labels[i])
        if "objects" in dataset.tasks:
            write_image(root / "instances" / f"{name}.tif", dataset.instances[i])
            (root / "object_classes" / f"{name}.json").write_text(
                json.dumps({str(k): int(v) for k, v in sorted(dataset.object_classes[i].items())}))
    return root


def synthetic_dataset(n_images: int = 6, shape=(256, 256), *, random_state: int = 0) -> Dataset:
    """The shipped synthetic data as a :class:`Dataset` with dense semantic labels."""
    from vfm_features.evaluation.synthetic import make_synthetic

    data = make_synthetic(n_images, shape, random_state=random_state)
    return Dataset(names=[f"synthetic{i:02d}" for i in range(n_images)], images=[d.image for d in data],
                   labels=[d.semantic for d in data], instances=[d.instances for d in data],
                   object_classes=[dict(d.object_classes) for d in data], source="synthetic",
                   meta={"random_state": random_state, "shape": list(shape)})
