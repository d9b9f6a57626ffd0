"""vfm-features benchmarks: one command, every figure and ratio measured in this run.

    python benchmarks/run.py            # full: 1024 x 1024 views, 4096 x 4096 memory run (~5 min on 2 cores)
    python benchmarks/run.py --quick    # smaller images, fewer options (~1 min)
    python benchmarks/run.py --only forest filters

Sections: forest (the interactive retrain + predict loop), filters (filter bank
against peers), aggregate (per-object features), memory (peak memory of a large
prediction). See docs/performance.md for the numbers and the choices they led to.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SECTIONS = ("forest", "filters", "aggregate", "memory")


def _header() -> str:
    import numpy
    import sklearn

    import vfm_features

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"vfm-features {vfm_features.__version__} | Python {platform.python_version()} | numpy {numpy.__version__} "
            f"| scikit-learn {sklearn.__version__} | {os.cpu_count()} CPU cores | load average {load:.1f} at start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller images and fewer options")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    args = p.parse_args(argv)
    sections = args.only or SECTIONS
    size = 512 if args.quick else 1024
    print(_header())
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print("note: the machine is busy with other work; absolute times are inflated, ratios less so")
    t_all = time.perf_counter()

    if "forest" in sections:
        import bench_forest

        print(f"\n== interactive loop: retrain on 10000 labels x 256 features + predict a {size}x{size} view ==")
        results = bench_forest.run(size=size, quick=args.quick)
        print(bench_forest.table(results))
        base = results[0]
        default = next(r for r in results if r.name.startswith("DEFAULT RF"))
        grid = next((r for r in results if "working grid" in r.name), None)  # the view/2 grid
        print(f"default loop vs reference (1 core): {base.loop_s / default.loop_s:.1f}x faster, "
              f"macro-F1 {default.f1 - base.f1:+.4f}")
        reference_all = results[1]
        print(f"default loop vs reference (all cores): {reference_all.loop_s / default.loop_s:.1f}x faster")
        if grid:
            print(f"{grid.name} vs reference (1 core): {base.loop_s / grid.loop_s:.1f}x faster, "
                  f"macro-F1 {grid.f1 - base.f1:+.4f}")

    if "filters" in sections:
        import bench_filters

        print(f"\n== filter bank on a {size}x{size} image (best of 3) ==")
        rows = bench_filters.run(size=size, repeats=2 if args.quick else 3)
        print(bench_filters.table(rows, size))

    if "aggregate" in sections:
        import bench_aggregate

        print(f"\n== object aggregation, {size}x{size}, 256 channels ==")
        rows = bench_aggregate.run(size=size)
        print(bench_aggregate.table(rows))

    if "memory" in sections:
        import bench_memory

        msize = 2048 if args.quick else 4096
        print(f"\n== peak memory (tracemalloc) of predicting a {msize}x{msize} image ==")
        rows = bench_memory.run(size=msize)
        print(bench_memory.table(rows))

    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
