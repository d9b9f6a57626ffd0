"""``vfm-features export-onnx NAME``: export an extractor's image encoder to an ONNX folder, checked for parity.

Writes ``-o DIR`` (default: ``<cache>/onnx/<family>-<variant>[-int8]``, where the
onnx plugin registers it as ``NAME@onnx`` or ``NAME@onnx-int8``) holding
``model.onnx`` and ``vfm-onnx.json``; the folder appears complete or not at all.
Options of the extractor (``pretrained=false``, a tiny test architecture, an input
size) pass through ``-O KEY=VALUE``; ``--weights`` and ``--trust-checkpoint`` as
for the other commands. See docs/onnx.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_overwrite_argument, add_trust_arguments, extractor_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="a registered model extractor, e.g. sam:vit_b, musam:vit_t_lm, "
                                                "sam2:hiera_b+, dinov3:vits16 (see 'vfm-features list')")
    p.add_argument("--output", "-o", metavar="DIR",
                   help="folder to write (default: <cache>/onnx/<family>-<variant>[-int8], registered as NAME@onnx)")
    p.add_argument("--int8", action="store_true",
                   help="quantise the weights to int8 (onnxruntime dynamic quantisation): smaller and faster on "
                        "CPUs, slightly different features (the parity figures say how much)")
    p.add_argument("--min-cosine", type=float, metavar="X",
                   help="smallest cosine similarity to torch on the sample image for the model to be written "
                        "(default 0.99999, with --int8 0.99)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE",
                   help="extractor option, repeatable (e.g. -O pretrained=false -O input_size=512)")
    add_trust_arguments(p)
    add_overwrite_argument(p, "never a folder this command did not write")


def run(args: argparse.Namespace) -> int:
    from vfm_features.models.onnx_export import export_onnx
    from vfm_features.models.onnx_folder import MODEL_FILE, default_folder, registered_name
    from vfm_features.extractor import accepted_options
    from vfm_features.registry import default_registry, get_extractor

    options = extractor_options(args)
    spec = default_registry().resolve(args.name)
    if "device" in accepted_options(spec.load_factory(), spec.options):
        options.setdefault("device", "cpu")  # export and the parity reference run on the CPU unless asked otherwise
    extractor = get_extractor(args.name, **options)
    quantization = "int8" if args.int8 else None
    target = Path(args.output) if args.output else default_folder(extractor.name, quantization)
    meta = export_onnx(extractor, target, int8=args.int8, opset=args.opset, min_cosine=args.min_cosine,
                       overwrite=args.overwrite)
    size = meta["files"][MODEL_FILE]["bytes"] / 2**20
    par = meta["parity"]
    print(f"wrote {target}: {extractor.name} as {MODEL_FILE} ({size:.1f} MiB, {quantization or 'float32'}, "
          f"opset {meta['opset']}, input {meta['input_shape']}, output {meta['output_shape']})")
    print(f"parity with torch on {par['sample']}: cosine {par['cosine']:.6f} (required >= {par['min_cosine']}), "
          f"largest difference {par['max_abs']:.3g} of {par['reference_max_abs']:.3g}")
    if args.output:
        print(f"use it as: -e onnx:folder -O path={target}")
    else:
        print(f"use it as: -e {registered_name(extractor.name, quantization)}")
    return 0
