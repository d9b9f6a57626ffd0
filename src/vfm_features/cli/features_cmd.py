"""``vfm-features features``: embed an image and write the features to .npy or .zarr."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import add_extractor_arguments, parse_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="input image (.tif, .npy, .png)")
    p.add_argument("--output", "-o", required=True, help="output .npy (C x h x w) or .zarr (with geometry attributes)")
    add_extractor_arguments(p, "filters")
    p.add_argument("--dense", action="store_true", help="upsample to the image size (C x H x W) before writing")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vfm_features.errors import InputError
    from vfm_features.io import atomic_path, read_image
    from vfm_features.registry import get_extractor

    out = Path(args.output)
    if out.suffix not in (".npy", ".zarr"):
        raise InputError(f"--output {out} must end in .npy or .zarr.")
    extractor = get_extractor(args.extractor, **parse_options(args.option))
    if getattr(extractor, "kind", "pixel") != "pixel":
        raise InputError(f"{extractor.name} computes per-object features, not a feature map; use a pixel "
                         "extractor here (e.g. -e filters) or 'vfm-features train objects' for objects.")
    emb = extractor.embed(read_image(args.image), axes=args.axes)
    data = extractor.features_dense(emb) if args.dense else emb.data
    geometry = {"image_shape": list(emb.geometry.image_shape), "step": list(emb.geometry.step),
                "origin": list(emb.geometry.origin), "dense": bool(args.dense)}
    if out.suffix == ".npy":
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, data.astype(np.float32), allow_pickle=False)
        out.with_suffix(".json").write_text(json.dumps({"signature": extractor.signature(), **geometry}, indent=2))
    else:
        _write_zarr(out, data, {"signature": extractor.signature(), **geometry})
    print(f"wrote {out}: features {tuple(data.shape)} from {extractor.name}")
    return 0


def _write_zarr(path: Path, data, attrs: dict) -> None:
    import os
    import shutil
    import tempfile

    try:
        import zarr
    except ImportError:
        raise ImportError("Writing .zarr needs zarr: pip install 'vfm-features[cache]'") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent or "."))
    try:
        arr = zarr.open_array(str(tmp / "store.zarr"), mode="w", shape=data.shape, dtype="float32",
                              chunks=(min(32, data.shape[0]),) + tuple(min(256, s) for s in data.shape[1:]))
        arr[:] = data
        arr.attrs.update(attrs)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp / "store.zarr", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
