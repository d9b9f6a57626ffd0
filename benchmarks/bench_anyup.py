"""AnyUp on the CPU: memory of training on 1e4 labels, cost per megapixel, and an evaluation against bilinear and PCA.

    python benchmarks/bench_anyup.py            # everything, figures and ratios from this one run
    python benchmarks/bench_anyup.py --quick    # a 512 x 512 image and a smaller evaluation

1. **memory**: a PixelClassifier (forest head ``rf``) trained on 10 000 labelled pixels
   of a 1024 x 1024 image whose embedding is 256 x 64 x 64 (a 16-pixel patch grid, as
   SAM's), with ``upsampler="anyup"``, in a fresh process. The peak resident memory
   above the process before ``fit`` (modules imported, network loaded) is sampled every
   2 ms (it sees torch's and numpy's allocations); tracemalloc gives numpy's share.
   The target: under 1 GiB. For scale, a 256 x 1024 x 1024 float32 map is 1 GiB.
2. **cost**: per image, what AnyUp computes once (GroupNorm statistics over the image,
   keys); dense AnyUp at full resolution per megapixel; on a 256 x 256 working grid;
   the seed's route (AnyUp on a 256 x 256 grid, read bilinearly); sparse per 10 000
   pixels; bilinear for comparison.
3. **evaluation** on the shipped synthetic data (``synthetic_dataset``) with an
   extractor registered here: the filter bank averaged over 8 x 8-pixel cells (24
   channels, a low-resolution embedding whose content is known). One
   ``evaluate(...)`` call per configuration: bilinear, AnyUp (RANDOM weights: the
   authors' checkpoint cannot be downloaded here, so its features say nothing about
   AnyUp's quality), PCA to 8 channels + each (PCA fitted on every cell of the
   dataset's embeddings: unsupervised, labels unused).

Timings are taken on the machine as it is (shared, noisy): compare ratios within
one run. The AnyUp weights are random throughout: cost and memory do not depend on
the weights' values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LOG = print


# -- extractors registered by this benchmark ---------------------------------------------------------------------
def register_extractors() -> None:
    """``bench:patch16`` (256 x H/16 x W/16, a fixed random patch projection) and ``bench:pooled8`` (filters / 8 px)."""
    import vfm_features as vf
    from vfm_features import Embedding, EmbeddingGeometry, ExtractorSpec, FeatureExtractor, hookimpl

    class Patch16(FeatureExtractor):
        """tanh of a fixed random projection of every 16 x 16 patch (intensities scaled to 0..1): a ViT-sized grid."""

        def __init__(self, spec, *, tile_shape=None, halo=None):
            super().__init__(spec)

        def n_features_for(self, n_channels):
            return 256

        def _embed_plane(self, plane):
            grey = plane.astype(np.float32).sum(-1)
            grey = (grey - grey.min()) / max(float(np.ptp(grey)), 1e-6)
            h, w = grey.shape[0] // 16, grey.shape[1] // 16
            patches = grey[: 16 * h, : 16 * w].reshape(h, 16, w, 16).transpose(0, 2, 1, 3).reshape(h * w, 256)
            proj = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32) / 16
            data = np.tanh((patches - patches.mean(1, keepdims=True)) @ proj * 4).T.reshape(256, h, w)
            return Embedding(np.ascontiguousarray(data), EmbeddingGeometry(plane.shape[:2], step=(16.0, 16.0)))

    class Pooled8(FeatureExtractor):
        """The filter bank (sigmas 1, 2, 4) averaged over 8 x 8-pixel cells."""

        def __init__(self, spec, *, tile_shape=None, halo=None):
            super().__init__(spec)
            self._filters = vf.get_extractor("filters", sigmas=[1.0, 2.0, 4.0])

        def n_features_for(self, n_channels):
            return self._filters.n_features_for(n_channels)

        def _embed_plane(self, plane):
            full = self._filters.embed_plane(plane).data
            C, H, W = full.shape
            h, w = H // 8, W // 8
            data = full[:, : 8 * h, : 8 * w].reshape(C, h, 8, w, 8).mean(axis=(2, 4))
            return Embedding(np.ascontiguousarray(data, np.float32), EmbeddingGeometry((H, W), step=(8.0, 8.0)))

    class Plugin:
        @staticmethod
        @hookimpl
        def vfm_features_extractors():
            return [ExtractorSpec("bench:patch16", factory=Patch16, patch_size=16, default=True),
                    ExtractorSpec("bench:pooled8", factory=Pooled8, patch_size=8)]

    vf.register_plugin(Plugin, name="bench-anyup")


# -- 1. memory (in a fresh process) --------------------------------------------------------------------------------
CHILD = r"""
import json, os, sys, threading, time, tracemalloc, warnings
import numpy as np
warnings.simplefilter("ignore")
sys.path.insert(0, {here!r})
from bench_anyup import register_extractors
import vfm_features as vf
if os.environ.get("BENCH_TORCH_THREADS"):
    import torch
    torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))
register_extractors()
size, upsampler, reduce = {size}, {upsampler!r}, {reduce!r}
data = vf.make_synthetic(1, (size, size), random_state=0)[0]
labels = data.scribbles(0.02 * (1024 / size) ** 2, random_state=0)
ext = vf.get_extractor("bench:patch16")
up = vf.get_upsampler(upsampler, **({{"pretrained": False, "device": "cpu"}} if upsampler == "anyup" else {{}}))
if upsampler == "anyup":
    up.load()
small = vf.make_synthetic(1, (64, 64), random_state=1)[0]  # warm-up: first use of sklearn, torch's pools
vf.PixelClassifier(ext, upsampler=up, reduce=reduce, head_options={{"n_estimators": 2}}).fit(
    small.image, small.scribbles(0.1, random_state=0))
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
peak = [0]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
before = rss()
thread = threading.Thread(target=sample, daemon=True)
tracemalloc.start()
thread.start()
t0 = time.perf_counter()
clf = vf.PixelClassifier(ext, upsampler=up, reduce=reduce, budget=10_000).fit(data.image, labels)
seconds = time.perf_counter() - t0
done.set(); thread.join()
np_peak = tracemalloc.get_traced_memory()[1]
emb = ext.embed_plane(data.image[..., None])
print(json.dumps({{"rss_peak_above": max(peak[0], rss()) - before, "numpy_peak": np_peak,
                   "embedding": emb.data.nbytes, "labels": int((labels > 0).sum()), "used": clf.n_training_pixels_,
                   "seconds": seconds, "dense_map": emb.n_features * size * size * 4}}))
"""


def memory(size: int) -> list[tuple[str, dict]]:
    rows = []
    for upsampler, reduce in (("bilinear", None), ("anyup", None), ("anyup", 32)):
        code = CHILD.format(here=str(HERE), size=size, upsampler=upsampler, reduce=reduce)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            LOG(f"  memory run {upsampler} failed: {out.stderr.strip().splitlines()[-3:]}")
            continue
        rows.append((upsampler if reduce is None else f"pca{reduce}+{upsampler}", json.loads(out.stdout)))
    return rows


def memory_table(rows, size) -> str:
    mib = 2 ** 20
    lines = [f"fit on 10 000 labels of a {size}x{size} image, 256 x {size // 16} x {size // 16} embedding, rf head",
             f"{'upsampler':<18} {'peak RSS above MiB':>18} {'numpy peak MiB':>14} {'embedding MiB':>13} "
             f"{'C x H x W MiB':>13} {'fit s':>7}"]
    for name, d in rows:
        lines.append(f"{name:<18} {d['rss_peak_above'] / mib:>18.0f} {d['numpy_peak'] / mib:>14.0f} "
                     f"{d['embedding'] / mib:>13.1f} {d['dense_map'] / mib:>13.0f} {d['seconds']:>7.1f}")
    return "\n".join(lines)


# -- 2. cost ----------------------------------------------------------------------------------------------------
def cost(size: int) -> list[tuple[str, float, str]]:
    import torch

    import vfm_features as vf

    register_extractors()
    data = vf.make_synthetic(1, (size, size), random_state=0)[0]
    plane = data.image[..., None]
    emb = vf.get_extractor("bench:patch16").embed_plane(plane)
    mp = size * size / 1e6
    coords = np.argwhere(data.scribbles(0.02 * (1024 / size) ** 2, random_state=0) > 0)[:10_000]
    scattered = np.random.default_rng(0).integers(0, size, (10_000, 2))
    rows = []

    def timed(label, fn, per, unit):
        t0 = time.perf_counter()
        fn()
        s = time.perf_counter() - t0
        rows.append((label, s / per, unit))
        return s

    up = vf.get_upsampler("anyup", pretrained=False, device="cpu")
    up.load()
    timed("anyup: per-image state (GroupNorm statistics, keys)", lambda: up._state(emb, plane), mp, "s/MP")

    def dense(u, out_shape=None, band=64):
        H = out_shape[0] if out_shape else size
        for r in range(0, H, band):
            u.dense(emb, plane, out_shape, slice(r, min(H, r + band)))

    timed("anyup: dense, every pixel (state reused)", lambda: dense(up), mp, "s/MP")
    timed("anyup: dense on a 256x256 working grid (state reused)", lambda: dense(up, (256, 256)), mp, "s/MP of image")
    timed("anyup: sparse at 10 000 scribbled pixels (state reused)", lambda: up.sparse(emb, plane, coords), 1,
          "s/1e4 px")
    timed("anyup: sparse at 10 000 scattered pixels (state reused)", lambda: up.sparse(emb, plane, scattered), 1,
          "s/1e4 px")
    seed = vf.get_upsampler("anyup", pretrained=False, device="cpu", grid=256)
    seed.load()
    seed._state(emb, plane)
    timed("anyup grid=256 (the seed's route): dense, every pixel", lambda: dense(seed), mp, "s/MP")
    timed("anyup grid=256: sparse at 10 000 scribbled pixels", lambda: seed.sparse(emb, plane, coords), 1, "s/1e4 px")
    bil = vf.get_upsampler("bilinear")
    timed("bilinear: dense, every pixel", lambda: dense(bil), mp, "s/MP")
    timed("bilinear: sparse at 10 000 pixels", lambda: bil.sparse(emb, plane, coords), 1, "s/1e4 px")
    rows.append(("torch threads", float(torch.get_num_threads()), ""))
    return rows


def cost_table(rows, size) -> str:
    lines = [f"{size}x{size} image, 256 x {size // 16} x {size // 16} embedding, random AnyUp weights, CPU",
             f"{'what':<62} {'seconds':>9} {'per':<14}"]
    lines += [f"{label:<62} {value:>9.2f} {unit:<14}" if unit else f"{label:<62} {value:>9.0f}"
              for label, value, unit in rows]
    by = {label: value for label, value, _ in rows}
    full = by["anyup: dense, every pixel (state reused)"] + by["anyup: per-image state (GroupNorm statistics, keys)"]
    sparse = by["anyup: sparse at 10 000 scribbled pixels (state reused)"]
    lines.append(f"ratio anyup / bilinear, dense every pixel (with the state): "
                 f"{full / max(by['bilinear: dense, every pixel'], 1e-9):.0f}x; sparse scribbles: "
                 f"{sparse / max(by['bilinear: sparse at 10 000 pixels'], 1e-9):.0f}x")
    return "\n".join(lines)


# -- 3. evaluation ----------------------------------------------------------------------------------------------
def evaluation(n_images: int, shape: tuple[int, int], budgets: list[int], pixels_per_image: int, n_folds: int,
               weights: str | None = None):
    import warnings

    import vfm_features as vf
    from vfm_features.evaluation.datasets import synthetic_dataset
    from vfm_features.evaluation.evaluate import evaluate
    from vfm_features.evaluation.protocol import Protocol
    from vfm_features.features.reduce import ChannelPCA, ReducedUpsampler

    register_extractors()
    dataset = synthetic_dataset(n_images, shape, random_state=0)
    extractor = vf.get_extractor("bench:pooled8")
    embeddings = [extractor.embed(image) for image in dataset.images]
    pca = ChannelPCA(8).fit(embeddings)  # every cell of every image: unsupervised
    anyup = {"weights": weights, "device": "cpu"} if weights else {"pretrained": False, "device": "cpu"}
    tag = "" if weights else " (random weights)"
    configs = [("bilinear", "bilinear", None), (f"anyup{tag}", "anyup", anyup),
               ("pca8 + bilinear", ReducedUpsampler(pca, vf.get_upsampler("bilinear")), None),
               (f"pca8 + anyup{tag}", ReducedUpsampler(pca, vf.get_upsampler("anyup", **anyup)), None),
               (f"anyup grid={shape[0] // 2} (seed's route){tag}", "anyup", {**anyup, "grid": shape[0] // 2})]
    results = []
    for label, upsampler, options in configs:
        logged = []
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = evaluate(dataset, extractors=["bench:pooled8"], heads=["rf"], tasks=["pixels"],
                              pixel_budgets=budgets, pixels_per_image=pixels_per_image,
                              protocol=Protocol(n_folds=n_folds, n_repeats=1, seed=0), upsampler=upsampler,
                              upsampler_options=options, log=logged.append)
        total = time.perf_counter() - t0
        feature_s = next((float(line.rsplit(": ", 1)[1].split()[0]) for line in logged
                          if line.startswith("features")), float("nan"))
        for budget in budgets:
            rows = [r for r in result.rows if r.budget == budget]
            results.append({"config": label, "budget": budget, "n_features": rows[0].n_features,
                            "macro_f1": float(np.nanmean([r.macro_f1 for r in rows])),
                            "f1_sd": float(np.nanstd([r.macro_f1 for r in rows])),
                            "features_s": feature_s, "train_s": float(np.mean([r.train_s for r in rows])),
                            "predict_s": float(np.mean([r.predict_s for r in rows])), "total_s": total})
    return results


def evaluation_table(results, n_images, shape, pixels_per_image, n_folds) -> str:
    lines = [f"synthetic_dataset({n_images}, {shape}), pixels task, bench:pooled8 (filters over 8 x 8 px cells, "
             f"24 ch), rf head, {n_folds} folds x 1 repeat, {pixels_per_image} labelled px per image",
             f"{'configuration':<40} {'budget':>6} {'ch':>3} {'macro-F1':>9} {'sd':>6} {'features s':>10} "
             f"{'train s':>8} {'predict s':>9}"]
    for r in results:
        lines.append(f"{r['config']:<40} {r['budget']:>6} {r['n_features']:>3} {r['macro_f1']:>9.3f} "
                     f"{r['f1_sd']:>6.3f} {r['features_s']:>10.1f} {r['train_s']:>8.2f} {r['predict_s']:>9.3f}")
    base = {r["budget"]: r for r in results if r["config"] == "bilinear"}
    for r in results:
        if r["config"] != "bilinear":
            lines.append(f"  {r['config']} / bilinear at budget {r['budget']}: macro-F1 "
                         f"{r['macro_f1'] - base[r['budget']]['macro_f1']:+.3f}, feature time "
                         f"{r['features_s'] / max(base[r['budget']]['features_s'], 1e-9):.1f}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a 512 x 512 image and a smaller evaluation")
    p.add_argument("--only", nargs="+", choices=("memory", "cost", "evaluation"), help="run these sections only")
    p.add_argument("--anyup-weights", metavar="PATH",
                   help="evaluate AnyUp with this checkpoint (anyup_paper.pth) instead of random weights")
    p.add_argument("--threads", type=int, help="torch threads of this run (default: torch's own choice); on a "
                                              "machine busier than its cores, 1 avoids threads waiting on each other")
    args = p.parse_args(argv)
    size = 512 if args.quick else 1024
    sections = args.only or ("memory", "cost", "evaluation")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["BENCH_TORCH_THREADS"] = str(args.threads)  # for the memory runs' processes

    LOG(f"# bench_anyup: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}")
    if "memory" in sections:
        LOG("\n## 1. memory of training with AnyUp\n" + memory_table(memory(size), size))
    if "cost" in sections:
        LOG("\n## 2. cost on the CPU\n" + cost_table(cost(size), size))
    if "evaluation" in sections:
        n, shape, ppi, folds = (3, (128, 128), 1000, 3) if args.quick else (6, (256, 256), 5000, 3)
        budgets = [100, 1000] if args.quick else [100, 1000, 10000]
        which = f"weights {args.anyup_weights}" if args.anyup_weights else "RANDOM weights"
        LOG(f"\n## 3. evaluation (AnyUp with {which})\n"
            + evaluation_table(evaluation(n, shape, budgets, ppi, folds, args.anyup_weights), n, shape, ppi, folds))
    LOG(f"\n# load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
