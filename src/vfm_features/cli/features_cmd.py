"""``vfm-features features``: embed an image and write the features to ``-o FILE`` (.npy or .zarr).

``x.npy`` comes with a sidecar ``x.json`` (signature and geometry); both are
checked before anything is computed and each is written atomically. A ``.zarr``
store carries the same record in its attributes, under the marker key
``vfm-features``: with ``--overwrite`` an existing ``.zarr`` is replaced only if
it is such a store (nothing else in it); any other folder is left alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import (
    add_extractor_arguments,
    add_overwrite_argument,
    add_trust_arguments,
    check_inputs,
    check_outputs,
    extractor_options,
    refuse,
)

MARKER = "vfm-features"
WRITTEN_BY = "vfm-features features"
_ZARR_ENTRIES = {"zarr.json", "c"}  # what a zarr v3 array store of ours holds at its top level


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="input image (.tif, .npy, .png)")
    p.add_argument("--output", "-o", required=True, metavar="FILE",
                   help="FILE.npy (C x h x w, with FILE.json beside it for signature and geometry) or FILE.zarr "
                        "(with those as attributes)")
    add_overwrite_argument(p, "never a folder except a .zarr this command wrote")
    add_extractor_arguments(p, "filters")
    add_trust_arguments(p)
    p.add_argument("--dense", action="store_true", help="upsample to the image size (C x H x W) before writing")
    p.add_argument("--upsampler", metavar="NAME",
                   help="with --dense: how the embedding is read at pixels (default: bilinear); "
                        "see 'vfm-features list --upsamplers'")


def ours(path: Path) -> bool:
    """True if ``path`` is a .zarr array store written by this command (marker attribute, nothing else in it)."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        entries = {e.name for e in path.iterdir()}
        meta_file = path / "zarr.json"
        if not entries <= _ZARR_ENTRIES or meta_file.is_symlink() or meta_file.stat().st_size > (1 << 20):
            return False
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    marker = (meta.get("attributes") or {}).get(MARKER) if isinstance(meta, dict) else None
    return isinstance(marker, dict) and marker.get("written_by") == WRITTEN_BY


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vfm_features._version import __version__
    from vfm_features.errors import InputError

    out = Path(args.output)
    if out.suffix not in (".npy", ".zarr"):
        raise InputError(f"-o {out} must end in .npy or .zarr (for example -o {out.stem or 'features'}.npy).")
    if args.upsampler and not args.dense:
        raise refuse("--upsampler", "applies with --dense only")
    check_inputs([args.image])
    if out.suffix == ".npy":
        outputs = [out, out.with_suffix(".json")]
        check_outputs(outputs, inputs=[args.image], overwrite=args.overwrite)
    else:
        check_outputs([out], inputs=[args.image], overwrite=True, folders_ok=[out])
        if out.exists() or out.is_symlink():
            if not args.overwrite:
                raise InputError(f"{out} exists already; pass --overwrite to replace it, or choose another output.")
            if not ours(out):
                raise InputError(f"{out} exists and is not a .zarr written by 'vfm-features features'; it is left "
                                 "alone even with --overwrite: remove it yourself or choose another output.")
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise ImportError("Writing .zarr needs zarr: pip install 'vfm-features[cache]' (or write .npy)") from None

    from vfm_features.io import read_image, write_text
    from vfm_features.preprocess import to_planes
    from vfm_features.registry import default_registry, get_extractor, get_upsampler

    from ._common import Staging

    upsampler = None
    if args.dense:
        default_registry().upsampler_spec(args.upsampler or "bilinear")
    extractor = get_extractor(args.extractor, **extractor_options(args))
    if getattr(extractor, "kind", "pixel") != "pixel":
        raise InputError(f"{extractor.name} computes per-object features, not a feature map; use a pixel "
                         "extractor here (e.g. -e filters) or 'vfm-features train objects' for objects.")
    if args.dense:
        upsampler = get_upsampler(args.upsampler or "bilinear")
    planes, stack = to_planes(read_image(args.image), args.axes)
    if stack:
        raise InputError(f"{args.image} is a stack of {len(planes)} planes; 'features' embeds one 2D image "
                         "(save one plane, or give --axes YXC for channels).")
    emb = extractor.embed_plane(planes[0])
    data = (upsampler.dense(emb, planes[0]) if upsampler is not None else emb.data).astype(np.float32)
    record = {"signature": extractor.signature(),
              "upsampler": upsampler.signature() if upsampler is not None else None,
              "image_shape": list(emb.geometry.image_shape), "step": list(emb.geometry.step),
              "origin": list(emb.geometry.origin), "dense": bool(args.dense),
              MARKER: {"written_by": WRITTEN_BY, "version": __version__}}
    with Staging() as stage:
        if out.suffix == ".npy":
            with open(stage.file(out), "wb") as fh:
                np.save(fh, data, allow_pickle=False)
            write_text(stage.file(out.with_suffix(".json")), json.dumps(record, indent=2, default=str))
        else:
            _write_zarr(stage.folder(out, replace_ok=ours if args.overwrite else None), data, record)
    print(f"wrote {out}: features {tuple(data.shape)} from {extractor.name}"
          + (f" ({upsampler.name} to the image grid)" if upsampler is not None else ""))
    return 0


def _write_zarr(folder: Path, data, attrs: dict) -> None:
    import zarr

    arr = zarr.open_array(str(folder), mode="w", shape=data.shape, dtype="float32",
                          chunks=(min(32, data.shape[0]),) + tuple(min(256, s) for s in data.shape[1:]))
    arr[:] = data
    arr.attrs.update(json.loads(json.dumps(attrs, default=str)))
