"""Peak memory of predicting a large image with a PixelClassifier, measured in a fresh process.

The classifier uses the built-in ``filters`` extractor (32 full-resolution channels)
and is trained on scribbles of a small synthetic image; prediction of the large
image runs in bands of rows, so the peak is the embedding plus one band of
features plus the output probabilities. tracemalloc sees numpy's allocations.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time, tracemalloc
import numpy as np
sys.path.insert(0, {here!r})
from data import scene
from vfm_features import PixelClassifier
size, working = {size}, {working}
small = scene(256, seed=0)
clf = PixelClassifier("filters", working_shape=working).fit(small.image, small.scribbles(0.05, random_state=0))
image = np.tile(small.image, (size // 256, size // 256))
tracemalloc.start()
t0 = time.perf_counter()
proba = clf.predict_proba(image)
t = time.perf_counter() - t0
current, peak = tracemalloc.get_traced_memory()
print(json.dumps({{"peak": peak, "output": proba.nbytes, "embedding": 32 * image.size * 4, "seconds": t}}))
"""


def run(*, size: int = 4096, log=print) -> list[tuple[str, dict]]:
    rows = []
    # every pixel, and a quarter-resolution working grid whose probabilities are interpolated back
    for working in (None, (size // 4, size // 4)):
        code = CHILD.format(here=str(Path(__file__).parent), size=size, working=working)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            log(f"  memory benchmark failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        grid = "every pixel" if working is None else f"{working[0]}x{working[1]} working grid"
        rows.append((f"{size}x{size} image, filters (32 ch), {grid}", json.loads(out.stdout)))
    return rows


def table(rows) -> str:
    lines = [f"{'PixelClassifier.predict_proba':<52} {'peak MiB':>8} {'embedding MiB':>13} {'output MiB':>10} "
             f"{'s':>6}"]
    for name, d in rows:
        lines.append(f"{name:<52} {d['peak'] / 2**20:>8.0f} {d['embedding'] / 2**20:>13.0f} "
                     f"{d['output'] / 2**20:>10.0f} {d['seconds']:>6.1f}")
    return "\n".join(lines)
