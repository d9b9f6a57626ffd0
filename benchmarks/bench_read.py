"""Dense read + forest predict of a view from a cached 64 x 64 x 256 embedding, quiet and under load.

The default ``rf`` head, fitted on 10 000 labelled pixels, predicts a 1024 x 1024
view on a 512 x 512 working grid (then resized to the view) and on the full grid,
exactly as ``PixelClassifier.predict_proba_plane`` does with a cached embedding;
the same with the read as it was before issue 12 (``legacy.py``). Each figure is
the median of ``repeats`` runs on the machine as it is, then under a CPU-bound
load on every core (``load.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data import class_embedding, labelled_pixels, scene
from legacy import predict_view_before
from load import quiet_and_loaded
from view import fit_head, predict_view
from vfm_features import get_upsampler


@dataclass
class Row:
    name: str
    grid: int
    quiet: float
    loaded: float

    @property
    def ratio(self) -> float:
        return self.loaded / self.quiet


def run(*, view: int = 1024, repeats: int = 3, log=print) -> list[Row]:
    s = scene(view, seed=0)
    emb = class_embedding(s.semantic, channels=256, patch=view // 64)  # 64 x 64 x 256, like SAM
    coords, y = labelled_pixels(s.semantic, 10_000, seed=0)
    head = fit_head(get_upsampler("bilinear").sparse(emb, None, coords), y)
    log(f"  embedding {emb.data.shape}, view {view}x{view}, head rf ({head.n_estimators} trees, depth "
        f"{head.max_depth}), median of {repeats}")
    rows = []
    for grid in (view // 2, view):
        for name, fn in (("read + predict", lambda g=grid: predict_view(head, emb, view, g)),
                         ("before issue 12 (batched matmul read)",
                          lambda g=grid: predict_view_before(head.forest_, emb, view, g))):
            quiet, loaded = quiet_and_loaded(fn, repeats=repeats)
            rows.append(Row(name, grid, float(np.median(quiet)), float(np.median(loaded))))
            log(f"  {name}, grid {grid}: quiet {rows[-1].quiet:.2f} s, loaded {rows[-1].loaded:.2f} s")
    return rows


def table(rows: list[Row]) -> str:
    lines = [f"{'dense read + rf predict of the view':<40} {'grid':>5} {'quiet s':>8} {'loaded s':>9} "
             f"{'loaded/quiet':>12}"]
    for r in rows:
        lines.append(f"{r.name:<40} {r.grid:>5} {r.quiet:>8.2f} {r.loaded:>9.2f} {r.ratio:>11.2f}x")
    new = {r.grid: r for r in rows if r.name == "read + predict"}
    small, full = sorted(new)
    lines.append(f"working grid {small} vs full grid {full}: {new[full].quiet / new[small].quiet:.1f}x faster quiet, "
                 f"{new[full].loaded / new[small].loaded:.1f}x faster loaded")
    return "\n".join(lines)
