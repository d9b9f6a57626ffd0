"""vfm-features benchmarks: one command, every figure measured quiet and under load, ratios from this run.

    python benchmarks/run.py                       # everything (~15 min on 2 busy cores)
    python benchmarks/run.py --quick               # fewer options and repeats
    python benchmarks/run.py --only read aggregate --micro-sam-python /tmp/peers/bin/python

Sections: read (dense read + forest predict of a view, working grid vs full grid),
aggregate (per-object features, against micro-sam in its own interpreter), forest
(the interactive retrain + predict loop against RandomForest(200, depth 10) on all
cores), filters (the filter bank against fastfilters2), memory (peak memory of a
large prediction). Every timing is taken twice: on the machine as it is ("quiet")
and with a CPU-bound load that the benchmark starts on every core (one spinning
process per core, stopped at the end of each figure and never running longer
than 10 minutes; ``load.py``); both are printed with their ratio. The first line
measures what that load leaves to a perfectly parallel task, which bounds every
loaded/quiet ratio below it (fair sharing: n threads against one spinning process
per core get n / (n + cores) of the machine). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SECTIONS = ("read", "aggregate", "forest", "filters", "memory")


def _header() -> str:
    import numpy
    import sklearn

    import vfm_features
    from vfm_features.threads import thread_budget

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"vfm-features {vfm_features.__version__} | Python {platform.python_version()} | numpy {numpy.__version__} "
            f"| scikit-learn {sklearn.__version__} | {os.cpu_count()} CPU cores, thread budget {thread_budget()} "
            f"| load average {load:.1f} at start")


def _scheduler_share() -> str:
    """Loaded/quiet time of a perfectly parallel CPU-bound task (hashing on every thread): the floor of any ratio."""
    from load import quiet_and_loaded
    from vfm_features.threads import thread_budget

    block = os.urandom(1 << 24)
    n = thread_budget()

    def work() -> None:
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda _: [hashlib.sha256(block).digest() for _ in range(12)], range(n)))

    quiet, loaded = quiet_and_loaded(work, repeats=3)
    q, l = sorted(quiet)[1], sorted(loaded)[1]
    return (f"scheduler: a perfectly parallel task on {n} threads takes {q:.2f} s quiet, {l:.2f} s under the load "
            f"({l / q:.2f}x): no loaded/quiet ratio below can be much lower")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer options and repeats")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument("--micro-sam-python", default=os.environ.get("VFM_BENCH_MICRO_SAM_PYTHON"), metavar="PYTHON",
                   help="interpreter of a separate virtual environment with micro-sam 1.8.14 "
                        "(python3 -m venv /tmp/peers && /tmp/peers/bin/pip install micro-sam==1.8.14); "
                        "default: $VFM_BENCH_MICRO_SAM_PYTHON")
    args = p.parse_args(argv)
    sections = args.only or SECTIONS
    print(_header())
    t_all = time.perf_counter()
    print(_scheduler_share())

    if "read" in sections:
        import bench_read

        print("\n== dense read + forest predict of a 1024x1024 view from a 64x64x256 embedding ==")
        rows = bench_read.run(repeats=3 if args.quick else 5)
        print(bench_read.table(rows))

    if "aggregate" in sections:
        import bench_aggregate

        print("\n== per-object features: 125 objects, 512x512 image, 64x64x256 embedding ==")
        rows, note = bench_aggregate.run(repeats=5, micro_sam_python=args.micro_sam_python, large=not args.quick)
        print(bench_aggregate.table(rows, note))

    if "forest" in sections:
        import bench_forest

        print("\n== interactive loop: retrain on 10000 labels + predict a 1024x1024 view from a cached embedding ==")
        results = bench_forest.run(quick=args.quick)
        print(bench_forest.table(results))

    if "filters" in sections:
        import bench_filters
        from load import cpu_load

        size = 512 if args.quick else 1024
        print(f"\n== filter bank around {size}x{size}, quiet ==")
        rows = bench_filters.run(size=size, repeats=2 if args.quick else 3)
        print(bench_filters.table(rows, size))
        print(f"\n== filter bank around {size}x{size}, under load ==")
        with cpu_load(seconds=600):
            loaded = bench_filters.run(size=size, repeats=2 if args.quick else 3)
        print(bench_filters.table(loaded, size))

    if "memory" in sections:
        import bench_memory

        msize = 2048 if args.quick else 4096
        print(f"\n== peak memory (tracemalloc) of predicting a {msize}x{msize} image (a memory figure: quiet only) ==")
        rows = bench_memory.run(size=msize)
        print(bench_memory.table(rows))

    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
