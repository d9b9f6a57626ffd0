"""Object aggregation: per-object mean (and mean + std) of a 256-channel map over ~1000 objects."""

from __future__ import annotations

import time

import numpy as np

from vfm_features.features.aggregate import aggregate_embedding
from vfm_features.geometry import Embedding, EmbeddingGeometry


def run(*, size: int = 1024, channels: int = 256, log=print) -> list[tuple[str, int, float]]:
    from data import scene

    s = scene(size, seed=0, n_cells=size * size // 950)  # about 1000 objects in 1024 x 1024
    n = len(s.object_classes)
    rng = np.random.default_rng(0)
    coarse = Embedding(rng.standard_normal((channels, size // 16, size // 16)).astype(np.float32),
                       EmbeddingGeometry((size, size), step=(16.0, 16.0)))
    full = Embedding(rng.standard_normal((channels, size, size), dtype=np.float32), EmbeddingGeometry((size, size)))
    rows = []
    for label, emb in ((f"{size // 16}x{size // 16} embedding, upsampled", coarse), ("full-resolution map", full)):
        for stats in (("mean",), ("mean", "std")):
            t0 = time.perf_counter()
            feats = aggregate_embedding(emb, s.instances, stats=stats)
            rows.append((f"{label}, {'+'.join(stats)}", len(feats.ids), time.perf_counter() - t0))
    del full
    log(f"  {n} objects in a {size}x{size} mask, {channels} channels")
    return rows


def table(rows) -> str:
    lines = [f"{'aggregate_embedding':<52} {'objects':>7} {'s':>7} {'us/object':>9}"]
    for name, n, t in rows:
        lines.append(f"{name:<52} {n:>7} {t:>7.2f} {1e6 * t / n:>9.0f}")
    return "\n".join(lines)
