"""CPU time per 1024x1024 image and peak memory of every extractor family at real size.

Weights are random (no download): the cost of a forward pass does not depend on
them. Each extractor runs in its own process so that its peak memory is its own.

    python benchmarks/extractors.py              # filters, sam:vit_b, sam2:hiera_t, dinov3:vits16
    python benchmarks/extractors.py --all        # every architecture (ViT-H and ViT-L take minutes)
    python benchmarks/extractors.py sam:vit_l    # chosen names
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

QUICK = ["filters", "sam:vit_b", "sam2:hiera_t", "dinov3:vits16"]
ALL = QUICK + ["sam:vit_l", "sam:vit_h", "sam2:hiera_s", "sam2:hiera_b+", "sam2:hiera_l", "dinov3:vitb16",
               "dinov3:vitl16"]


def measure(name: str, size: int, repeats: int, device: str = "cpu") -> dict:
    """Run in a child process: build, warm up once, then time ``repeats`` embeddings."""
    import resource

    import numpy as np

    import vfm_features as vf

    spec = vf.get_spec(name)
    options = {"pretrained": False, "device": device} if spec.requires and "torch" in spec.requires else {}
    ext = vf.get_extractor(name, **options)
    image = (np.random.default_rng(0).random((size, size)) * 4095).astype(np.uint16)
    t0 = time.perf_counter()
    emb = ext.embed(image)  # first call also builds the model
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ext.embed(image)
        times.append(time.perf_counter() - t0)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"name": spec.name, "first_s": first, "embed_s": min(times) if times else first,
            "peak_rss_mib": peak_mib, "shape": list(emb.data.shape), "step": list(emb.geometry.step)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="extractor names (default: one per family)")
    p.add_argument("--all", action="store_true", help="every architecture")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=1, help="timed runs after the first (default 1)")
    p.add_argument("--device", default="cpu", help="torch device for the model extractors (cpu, cuda, mps, auto)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.size, args.repeats, args.device)))
        return 0
    names = args.names or (ALL if args.all else QUICK)
    import torch

    print(f"extractors on a {args.size}x{args.size} uint16 image, random weights, device {args.device}, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"{'extractor':<18} {'first call s':>12} {'embed s':>9} {'peak RSS MiB':>13}  embedding (C, h, w), step px")
    rows = []
    for name in names:
        proc = subprocess.run([sys.executable, __file__, "--child", name, "--size", str(args.size),
                               "--repeats", str(args.repeats), "--device", args.device],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{name:<18} failed: {last}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(r)
        step = ", ".join(f"{s:g}" for s in r["step"])
        print(f"{r['name']:<18} {r['first_s']:>12.2f} {r['embed_s']:>9.2f} {r['peak_rss_mib']:>13.0f}  "
              f"{tuple(r['shape'])}, {step}")
    if len(rows) > 1 and rows[0]["name"].startswith("filters"):
        base = rows[0]["embed_s"]
        print("ratios to the filter bank: " + ", ".join(f"{r['name']} {r['embed_s'] / base:.1f}x" for r in rows[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
