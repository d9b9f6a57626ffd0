"""Scale-out throughput: blockwise prediction of a large image on one core, threads, and a local Dask cluster.

    python benchmarks/bench_scale.py               # 4096 x 4096, blocks of 1024 (~3 min on 2 cores)
    python benchmarks/bench_scale.py --size 2048   # quicker

Prints, from one run on the same image and classifier: seconds, megapixels per
second, the speed-up over one core, and the peak memory (RSS) of each worker
process (of this process for the local schedulers), for pixel classification
(filter bank, 64-tree forest) and for object classification from partial sums.
"One task at a time" still gives each block the library's thread budget (the
filter bank and the forest use every core), as does each worker of the cluster;
on a 2-core machine the cluster rows measure its overhead, not scaling.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _peak_mib() -> float:
    """Peak RSS of this process in MiB: VmHWM (reset at exec, so a spawned worker reports its own peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kept across fork + exec: an upper bound


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--block", type=int, default=1024)
    args = p.parse_args(argv)

    import tifffile
    from distributed import Client, LocalCluster

    import vfm_features as vf
    from test_scale import big_scene
    from vfm_features.scale import predict_objects, predict_pixels

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    image, mask = big_scene(args.size // 512)
    tifffile.imwrite(tmp / "img.tif", image, tile=(512, 512))
    tifffile.imwrite(tmp / "mask.tif", mask, tile=(512, 512))
    train = vf.make_synthetic(2, (512, 512), random_state=0)[0]
    pixels = vf.PixelClassifier("filters", n_jobs=1).fit(train.image, train.scribbles(0.02, random_state=0))
    objects = vf.ObjectClassifier("filters", n_jobs=1).fit(train.image, train.instances, train.object_classes)
    mp = image.size / 1e6
    print(f"image {args.size} x {args.size} ({mp:.1f} MP, {int(mask.max())} objects), blocks {args.block}, "
          f"filters (32 features) + rf; {tmp}")

    rows = []

    def run(label: str, scheduler, workers=None, client=None) -> None:
        for what, fn in (("pixels", lambda out: predict_pixels(pixels, tmp / "img.tif", out, block_shape=args.block,
                                                               scheduler=client or scheduler, num_workers=workers)),
                         ("objects", lambda out: predict_objects(objects, tmp / "img.tif", tmp / "mask.tif", out,
                                                                 block_shape=args.block,
                                                                 scheduler=client or scheduler, num_workers=workers))):
            out = tmp / f"{label}-{what}.ome.zarr".replace(" ", "_")
            t0 = time.perf_counter()
            fn(out)
            seconds = time.perf_counter() - t0
            if client is not None:
                peaks = client.run(_peak_mib)
                mem = " / ".join(f"{v:.0f}" for v in peaks.values())
            else:
                mem = f"{_peak_mib():.0f}"
            rows.append((what, label, seconds, mp / seconds, mem))
            print(f"  {what:<8} {label:<26} {seconds:7.1f} s  {mp / seconds:6.2f} MP/s  peak MiB {mem}")

    run("one task at a time", "synchronous")
    run("threads (2)", "threads", workers=2)
    for n in (1, 2):
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            run(f"local cluster, {n} worker{'s' if n > 1 else ''}", None, client=client)

    print(f"\n{'task':<8} {'scheduler':<26} {'s':>7} {'MP/s':>7} {'x 1 task':>9}  peak MiB (per worker)")
    base = {what: s for what, label, s, _, _ in rows if label.startswith("one task")}
    for what, label, s, rate, mem in rows:
        print(f"{what:<8} {label:<26} {s:7.1f} {rate:7.2f} {base[what] / s:8.2f}x  {mem}")
    two = {what: s for what, label, s, _, _ in rows if label.endswith("2 workers")}
    one = {what: s for what, label, s, _, _ in rows if label.endswith("1 worker")}
    for what in two:
        print(f"scaling {what}: 2 workers / 1 worker = {one[what] / two[what]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
