"""Attentive probes on the CPU: training speed, prediction speed, and macro-F1 against training time.

    python benchmarks/bench_probes.py                 # everything (about 20 min on 2 cores)
    python benchmarks/bench_probes.py --quick         # fewer points (about 6 min)
    python benchmarks/bench_probes.py --threads 1 --out /tmp/probes

Figures, all from this run:

1. speed: training seconds per 1000 iterations of ``deap`` and ``obap`` (float32
   and bfloat16), on cached ``filters`` embeddings of 256 x 256 synthetic images;
   prediction seconds per 1024 x 1024 image (deap on a full-resolution filter
   bank and on a 256-channel ViT-like embedding on 8 x 8 px patches, obap on
   every object of a 1024 x 1024 scene). The GPU too when one is present.
2. the goal: on the shipped synthetic data (4 training images with scribbles,
   2 test images scored on every pixel / object), macro-F1 of the forest (8 to
   200 trees) and of each probe trained for 3 to 120 seconds (``max_time``,
   early stopping on held-out labels), on the standard task and on the
   neighbourhood-context task (``make_synthetic(context=True)``). Written to
   ``probes_f1_time.csv`` and plotted in ``probes_f1_time.png`` (F1 against
   training time).

Wall-clock and CPU seconds are printed side by side: other programs move the
first, hardly the second. Embeddings are computed once, before any timing (the
probes train on cached embeddings).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vfm_features as vf  # noqa: E402
from vfm_features.evaluation.metrics import macro_f1  # noqa: E402
from vfm_features.evaluation.synthetic import make_synthetic  # noqa: E402
from vfm_features.features.aggregate import DEFAULT_STATS, Aggregator  # noqa: E402
from vfm_features.heads.base import ObjectSamples, PixelSamples  # noqa: E402

SIZE, N_TRAIN, N_TEST, SCRIBBLES = 256, 4, 2, 0.02  # as the demo (vfm-features demo)
DEAP = {"dim": 32, "n_heads": 8, "decoder_width": 8, "crop": 10, "batch_size": 4, "val_every": 25, "patience": 8}
OBAP = {"dim": 32, "n_heads": 8, "batch_size": 64, "val_every": 25, "patience": 8}


class Task:
    """Cached embeddings of training and test images, as pixel and object samples."""

    def __init__(self, context: bool, seed: int = 0) -> None:
        self.name = "context" if context else "standard"
        data = make_synthetic(N_TRAIN + N_TEST, (SIZE, SIZE), random_state=seed, context=context)
        ext, self.up = vf.get_extractor("filters"), vf.get_upsampler("bilinear")
        self.data = data
        self.embs = [ext.embed(d.image) for d in data]
        self.train = range(N_TRAIN)
        self.test = range(N_TRAIN, N_TRAIN + N_TEST)

    def pixels(self, which, dense: bool = False) -> PixelSamples:
        parts = []
        for i in which:
            lab = self.data[i].semantic if dense else self.data[i].scribbles(SCRIBBLES, random_state=i)
            yy, xx = np.nonzero(lab)
            parts.append(PixelSamples([self.embs[i]], [self.data[i].image[..., None]], np.zeros(len(yy), np.int64),
                                      np.stack([yy, xx], 1), self.up, lab[yy, xx].astype(np.int64)))
        return PixelSamples.concat(parts)

    def objects(self, which) -> ObjectSamples:
        embs, imgs, masks, index, ids, ys = [], [], [], [], [], []
        for k, i in enumerate(which):
            oid = np.array(sorted(self.data[i].object_classes), np.int64)
            embs.append(self.embs[i])
            imgs.append(self.data[i].image[..., None])
            masks.append(self.data[i].instances)
            index.append(np.full(len(oid), k))
            ids.append(oid)
            ys.append([self.data[i].object_classes[o] for o in oid])
        return ObjectSamples(np.concatenate(index), np.concatenate(ids), np.concatenate(ys).astype(np.int64),
                             embeddings=embs, images=imgs, masks=masks, aggregator=Aggregator(DEFAULT_STATS, True),
                             upsampler=self.up)

    def pixel_f1(self, head) -> float:
        truth, pred = [], []
        for i in self.test:
            d = self.data[i]
            proba = head.predict_proba_dense(self.embs[i], d.image[..., None], self.up, d.image.shape)
            truth.append(d.semantic.ravel())
            pred.append(np.asarray(head.classes_)[proba.argmax(0)].ravel())
        return macro_f1(np.concatenate(truth), np.concatenate(pred))

    def object_f1(self, head, test: ObjectSamples) -> float:
        return macro_f1(test.y, np.asarray(head.classes_)[head.predict_proba(test).argmax(1)], ignore=None)


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


# -- 1. speed ----------------------------------------------------------------------------------------------
def speed(task: Task, quick: bool, devices: list[str], log) -> None:
    from vfm_features.heads.probes.deap import DeapPixelHead
    from vfm_features.heads.probes.obap import ObapObjectHead

    from vfm_features.threads import apply_torch_threads, set_threads, thread_budget, usable_cpus

    n = 40 if quick else 100
    pixels, objects = task.pixels(task.train), task.objects(task.train)
    log(f"\n1. speed ({task.name} data, {SIZE}x{SIZE} images, filters embeddings cached; {n} iterations timed, "
        "scaled to 1000)")
    log(f"{'head':<6} {'device':<6} {'threads':>7} {'precision':<9} {'s / 1000 it':>12} {'CPU s / 1000 it':>16}")
    budget = thread_budget()
    for device in devices:
        for threads in (sorted({1, usable_cpus()}) if device == "cpu" else [budget]):
            previous = set_threads(threads)
            apply_torch_threads()
            for precision in ("float32", "bfloat16"):
                for name, cls, options, samples in (("deap", DeapPixelHead, DEAP, pixels),
                                                     ("obap", ObapObjectHead, OBAP, objects)):
                    head = cls(**options, max_iter=n, val_fraction=0.0, device=device, precision=precision,
                               random_state=0)
                    _, wall, cpu = timed(lambda: head.fit(samples))
                    log(f"{name:<6} {device:<6} {threads:>7} {precision:<9} {wall * 1000 / n:>12.1f} "
                        f"{cpu * 1000 / n:>16.1f}")
            set_threads(previous)
            apply_torch_threads()
    from data import class_embedding, scene

    big = scene(1024, seed=3)
    image = big.image[..., None]
    filters = vf.get_extractor("filters").embed(big.image)
    vit = class_embedding(big.semantic, channels=256, patch=8)
    log("\nprediction of one 1024 x 1024 image (after training on the 256 x 256 images above)")
    log(f"{'head':<6} {'device':<6} {'embedding':<28} {'s / image':>10} {'CPU s':>8}")
    for device in devices:
        for label, emb, train_task in (("filters (32 x 1024 x 1024)", filters, pixels),):
            head = DeapPixelHead(**DEAP, max_iter=2, val_fraction=0.0, device=device, random_state=0).fit(train_task)
            _, wall, cpu = timed(lambda: head.predict_proba_dense(emb, image, task.up, (1024, 1024)))
            log(f"{'deap':<6} {device:<6} {label:<28} {wall:>10.2f} {cpu:>8.2f}")
        vit_samples = _vit_samples(task, device)
        head = DeapPixelHead(**DEAP, max_iter=2, val_fraction=0.0, device=device, random_state=0).fit(vit_samples)
        _, wall, cpu = timed(lambda: head.predict_proba_dense(vit, None, task.up, (1024, 1024)))
        log(f"{'deap':<6} {device:<6} {'ViT-like (256 x 128 x 128)':<28} {wall:>10.2f} {cpu:>8.2f}")
        head = ObapObjectHead(**OBAP, max_iter=2, val_fraction=0.0, device=device, random_state=0).fit(objects)
        ids = np.unique(big.instances[big.instances > 0])
        many = ObjectSamples(np.zeros(len(ids), np.int64), ids, embeddings=[filters], images=[image],
                             masks=[big.instances], upsampler=task.up)
        _, wall, cpu = timed(lambda: head.predict_proba(many))
        log(f"{'obap':<6} {device:<6} {f'filters, {len(ids)} objects':<28} {wall:>10.2f} {cpu:>8.2f}")


def _vit_samples(task: Task, device: str) -> PixelSamples:
    """Scribbles on the training images with ViT-like embeddings of them (for the 256-channel prediction timing)."""
    from data import class_embedding

    parts = []
    for i in task.train:
        d = task.data[i]
        lab = d.scribbles(SCRIBBLES, random_state=i)
        yy, xx = np.nonzero(lab)
        emb = class_embedding(d.semantic, channels=256, patch=8, image_seed=i)
        parts.append(PixelSamples([emb], [None], np.zeros(len(yy), np.int64), np.stack([yy, xx], 1), task.up,
                                  lab[yy, xx].astype(np.int64)))
    return PixelSamples.concat(parts)


# -- 2. F1 against training time ------------------------------------------------------------------------------
def f1_curves(task: Task, budgets: list[float], precision: str, log) -> list[dict]:
    from vfm_features.heads.forest_heads import ForestObjectHead, ForestPixelHead
    from vfm_features.heads.probes.deap import DeapPixelHead
    from vfm_features.heads.probes.obap import ObapObjectHead

    rows = []
    pixels, objects, test_objects = task.pixels(task.train), task.objects(task.train), task.objects(task.test)
    for kind, forest_cls, probe, probe_cls, options, samples in (
            ("pixels", ForestPixelHead, "deap", DeapPixelHead, DEAP, pixels),
            ("objects", ForestObjectHead, "obap", ObapObjectHead, OBAP, objects)):
        score = task.pixel_f1 if kind == "pixels" else (lambda h: task.object_f1(h, test_objects))
        for trees in (8, 16, 32, 64, 200):
            head, wall, cpu = timed(lambda: forest_cls(n_estimators=trees, random_state=0).fit(samples))
            rows.append(dict(task=task.name, kind=kind, head="rf", setting=f"{trees} trees", budget_s="",
                             train_s=wall, cpu_s=cpu, n_iter="", f1=score(head)))
            log(_row(rows[-1]))
        for budget in budgets:
            head, wall, cpu = timed(lambda: probe_cls(**options, max_iter=100_000, max_time=budget,
                                                      precision=precision, random_state=0).fit(samples))
            rows.append(dict(task=task.name, kind=kind, head=probe, setting=f"{precision}, {head.train_log_.stopped}",
                             budget_s=budget, train_s=wall, cpu_s=cpu, n_iter=head.n_iter_, f1=score(head)))
            log(_row(rows[-1]))
    return rows


def _row(r: dict) -> str:
    return (f"{r['task']:<9} {r['kind']:<8} {r['head']:<5} {r['setting']:<22} {str(r['budget_s']):>7} "
            f"{r['train_s']:>8.1f} {r['cpu_s']:>8.1f} {str(r['n_iter']):>6} {r['f1']:>7.3f}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, k) for t in ("standard", "context") for k in ("pixels", "objects")]
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 7.5))
    for ax, (task, kind) in zip(axes.ravel(), panels):
        for head, style in (("rf", "o-"), ("deap", "s-"), ("obap", "s-")):
            pts = [(r["train_s"], r["f1"]) for r in rows if (r["task"], r["kind"], r["head"]) == (task, kind, head)]
            if pts:
                label = "forest (8, 16, 32, 64, 200 trees)" if head == "rf" else f"{head} (max_time 3-120 s)"
                ax.plot(*zip(*pts), style, label=label)
        forest = [r["f1"] for r in rows if (r["task"], r["kind"], r["head"], r["setting"]) ==
                  (task, kind, "rf", "64 trees")]
        if forest:
            ax.axhline(forest[0], color="C0", lw=0.8, ls="--")
        ax.axvline(120, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("training time (s, wall clock)")
        ax.set_ylabel("macro-F1 on held-out images")
        ax.set_title(f"{task} task, {kind}")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle("F1 against training time on 2 CPU cores (dashed: the default forest; dotted: 2 minutes)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer iterations and time budgets")
    p.add_argument("--threads", type=int, default=None, help="the library's thread budget (default: every core)")
    p.add_argument("--out", default=".", help="folder for probes_f1_time.csv and .png (default: here)")
    p.add_argument("--skip-speed", action="store_true", help="only the F1 against time curves")
    args = p.parse_args(argv)
    import torch

    from vfm_features.threads import apply_torch_threads, set_threads, thread_budget

    if args.threads:
        set_threads(args.threads)
    apply_torch_threads()
    bf16 = "bfloat16" if _bf16_fast(torch) else "float32"
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"vfm-features {vf.__version__} | torch {torch.__version__} | {os.cpu_count()} CPU cores, thread budget "
          f"{thread_budget()} | load average {load:.1f} at start | bfloat16 fast on this CPU: {bf16 == 'bfloat16'}")
    tasks = [Task(context=False), Task(context=True)]
    if not args.skip_speed:
        speed(tasks[0], args.quick, devices, print)
    budgets = [7.0, 30.0] if args.quick else [3.0, 7.0, 15.0, 30.0, 60.0, 120.0]
    print("\n2. macro-F1 against training time (test images; probes stop early on held-out labels or at max_time)")
    print(f"{'task':<9} {'kind':<8} {'head':<5} {'setting':<22} {'budget':>7} {'train s':>8} {'CPU s':>8} "
          f"{'iters':>6} {'F1':>7}")
    rows = []
    for task in tasks:
        rows += f1_curves(task, budgets, bf16, print)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "probes_f1_time.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "probes_f1_time.png")
    print(f"\nwrote {out / 'probes_f1_time.csv'} and {out / 'probes_f1_time.png'}")
    print("\nthe goal: a probe reaches the forest's macro-F1 (64 trees, the default) within 120 s")
    for task in tasks:
        for kind, probe in (("pixels", "deap"), ("objects", "obap")):
            forest = next(r["f1"] for r in rows if (r["task"], r["kind"], r["head"], r["setting"]) ==
                          (task.name, kind, "rf", "64 trees"))
            best = max((r for r in rows if (r["task"], r["kind"], r["head"]) == (task.name, kind, probe)
                        and r["train_s"] <= 125), key=lambda r: r["f1"], default=None)
            verdict = ("no run" if best is None else
                       f"{'reached' if best['f1'] >= forest else 'NOT reached'}: {probe} {best['f1']:.3f} after "
                       f"{best['train_s']:.0f} s vs forest {forest:.3f}")
            print(f"  {task.name:<9} {kind:<8} {verdict}")


def _bf16_fast(torch) -> bool:
    """True when this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX), as torch reports it."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


if __name__ == "__main__":
    main()
