"""Torch eager vs onnxruntime (float32, int8) per 1024 x 1024 image, at real size with random weights.

    python benchmarks/bench_onnx.py                       # sam:vit_b, sam2:hiera_b+, dinov3:vits16, musam:vit_t_lm
    python benchmarks/bench_onnx.py sam:vit_b --repeats 3
    python benchmarks/bench_onnx.py --arena               # also: onnxruntime's memory arena on vs off (SAM ViT-B)

Each model runs in its own process (its peak memory is its own): the extractor is
built with random weights, exported to float32 and int8 ONNX folders (the export
checks parity itself), then the same image is embedded by torch eager float32,
torch eager bfloat16 (autocast, where the CPU has it), onnxruntime float32 and
onnxruntime int8. Per-image times are medians of ``--repeats`` calls after one
warm-up call (which builds the model or session and is reported as "first").
Cosines compare each embedding with torch float32's. All figures come from one
run on one machine; on a shared machine compare the ratios, not the seconds.
Real-size exports are slow and large (ViT-B: ~360 MB float32): they live here,
never in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT = ["sam:vit_b", "sam2:hiera_b+", "dinov3:vits16", "musam:vit_t_lm"]


def _image(size: int):
    import numpy as np

    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(0)
    return (0.5 + 0.3 * np.sin(12 * x) * np.cos(9 * y) + 0.1 * rng.standard_normal((size, size))).astype(np.float32)


def _timed(fn, repeats: int) -> tuple[float, float, object]:
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times), out


def _cosine(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, size: int, repeats: int, threads: int | None, workdir: str) -> dict:
    """Child process: export, then time every backend on one image."""
    import numpy as np
    import torch

    import vfm_features as vf
    from vfm_features.models.onnx_export import export_onnx

    if threads:
        torch.set_num_threads(threads)
    image = _image(size)
    rows: list[dict] = []
    ex = vf.get_extractor(name, pretrained=False, device="cpu")
    first, per, emb = _timed(lambda: ex.embed(image), repeats)
    ref = emb.data
    rows.append({"backend": "torch eager float32", "first_s": first, "image_s": per, "cosine": 1.0})
    exports = {}
    for q in (None, "int8"):
        t0 = time.perf_counter()
        meta = export_onnx(ex, os.path.join(workdir, name.replace(":", "-") + (f"-{q}" if q else "")),
                           int8=q is not None, overwrite=True, n_threads=threads)
        exports[q] = {"export_s": time.perf_counter() - t0, "mib": meta["files"]["model.onnx"]["bytes"] / 2**20,
                      "parity_cosine": meta["parity"]["cosine"], "parity_max_abs": meta["parity"]["max_abs"]}
    bf16 = vf.get_extractor(name, pretrained=False, device="cpu", precision="bfloat16")
    try:
        first, per, emb = _timed(lambda: bf16.embed(image), repeats)
        rows.append({"backend": "torch eager bfloat16", "first_s": first, "image_s": per,
                     "cosine": _cosine(emb.data, ref)})
    except Exception as exc:  # noqa: BLE001 - a CPU without bfloat16 kernels
        rows.append({"backend": f"torch eager bfloat16: {type(exc).__name__}", "first_s": 0, "image_s": 0,
                     "cosine": 0})
    del bf16
    for q in (None, "int8"):
        folder = os.path.join(workdir, name.replace(":", "-") + (f"-{q}" if q else ""))
        on = vf.get_extractor("onnx:folder", path=folder, n_threads=threads)
        first, per, emb = _timed(lambda: on.embed(image), repeats)
        rows.append({"backend": f"onnxruntime {q or 'float32'}", "first_s": first, "image_s": per,
                     "cosine": _cosine(emb.data, ref), **exports[q]})
        del on
    return {"name": name, "rows": rows, "peak_rss_mib": _rss_mib(), "shape": list(ref.shape),
            "threads": threads or torch.get_num_threads()}


def arena(name: str, size: int, calls: int, threads: int | None, workdir: str) -> dict:
    """Child process: one float32 session with the memory arena on, one with it off; time each call."""
    import onnxruntime as ort

    import vfm_features as vf
    from vfm_features.models.contract import InputContract  # noqa: F401 - the contract comes from the folder
    from vfm_features.models.onnx_backend import model_input, session_options
    from vfm_features.models.onnx_export import export_onnx
    from vfm_features.models.onnx_folder import read_folder

    folder = os.path.join(workdir, name.replace(":", "-") + "-arena")
    export_onnx(vf.get_extractor(name, pretrained=False, device="cpu"), folder, overwrite=True)
    f = read_folder(folder)
    contract = f.contract
    image = _image(size)
    x = model_input(image[..., None].repeat(3, -1), contract.layout(image.shape), contract)
    out = {}
    for on in (False, True):
        opts = session_options(threads)
        opts.enable_cpu_mem_arena = on
        before = _rss_mib()
        session = ort.InferenceSession(str(f.model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            session.run(None, {"images": x})
            times.append(time.perf_counter() - t0)
        out["on" if on else "off"] = {"calls_s": times, "peak_rss_growth_mib": _rss_mib() - before}
        del session
    return {"name": name, "arena": out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"extractor names (default: {' '.join(DEFAULT)})")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=2, help="timed calls after the warm-up (median; default 2)")
    p.add_argument("--threads", type=int, help="torch and onnxruntime threads (default: every usable core)")
    p.add_argument("--arena", action="store_true", help="also compare onnxruntime's memory arena on and off")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-arena", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.size, args.repeats, args.threads, args.workdir)))
        return 0
    if args.child_arena:
        print(json.dumps(arena(args.child_arena, args.size, 4, args.threads, args.workdir)))
        return 0

    names = args.names or DEFAULT
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as workdir:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        jobs = [("--child", n) for n in names] + ([("--child-arena", "sam:vit_b")] if args.arena else [])
        for flag, name in jobs:
            cmd = [sys.executable, __file__, flag, name, "--size", str(args.size), "--repeats", str(args.repeats),
                   "--workdir", workdir] + (["--threads", str(args.threads)] if args.threads else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    _report(results, args)
    return 0


def _report(results: list[dict], args) -> None:
    import platform

    import onnxruntime
    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
          f"image {args.size} x {args.size}, median of {args.repeats} after a warm-up")
    for r in results:
        if "arena" in r:
            print(f"\n{r['name']} float32, onnxruntime memory arena (seconds per call 1..4, peak RSS growth):")
            for k, v in r["arena"].items():
                calls = " ".join(f"{t:.2f}" for t in v["calls_s"])
                print(f"  arena {k:3s}: {calls}   +{v['peak_rss_growth_mib']:.0f} MiB")
            continue
        print(f"\n{r['name']}: output {tuple(r['shape'])}, {r['threads']} threads, "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB")
        eager = r["rows"][0]["image_s"]
        print(f"  {'backend':24s} {'s/image':>8s} {'x eager':>8s} {'cosine':>9s} {'first s':>8s}  export")
        for row in r["rows"]:
            ratio = eager / row["image_s"] if row["image_s"] else 0
            export = (f"{row['export_s']:.0f} s, {row['mib']:.0f} MiB, parity cosine {row['parity_cosine']:.6f}"
                      if "export_s" in row else "")
            print(f"  {row['backend']:24s} {row['image_s']:8.2f} {ratio:8.2f} {row['cosine']:9.6f} "
                  f"{row['first_s']:8.2f}  {export}")


if __name__ == "__main__":
    sys.exit(main())
