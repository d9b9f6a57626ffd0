"""Evaluation output: the CSV, the F1-against-budget plot and a text summary."""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Sequence

import numpy as np

from vfm_features.evaluation.rows import EvalRow
from vfm_features.io import atomic_path

TASK_UNITS = {"pixels": "labelled pixels used for training", "objects": "labelled objects used for training"}


def _columns() -> list[str]:
    return [f.name for f in fields(EvalRow)]


def write_csv(rows: Sequence, path: str | os.PathLike) -> Path:
    """One line per row; ``budget`` is written as ``all`` for None, times in seconds."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=_columns())
            writer.writeheader()
            for row in rows:
                d = asdict(row)
                d["budget"] = "all" if d["budget"] is None else d["budget"]
                for key in ("macro_f1", "train_s", "predict_s"):
                    d[key] = f"{d[key]:.6g}"
                writer.writerow(d)
    return path


def read_csv(path: str | os.PathLike) -> list:
    """Rows written by :func:`write_csv`, back as ``EvalRow`` objects."""

    types = {f.name: f.type for f in fields(EvalRow)}
    out = []
    with open(path, newline="") as fh:
        for d in csv.DictReader(fh):
            kw = {}
            for key, value in d.items():
                t = str(types[key])
                if key == "budget":
                    kw[key] = None if value == "all" else int(value)
                elif t == "int":
                    kw[key] = int(value)
                elif t == "float":
                    kw[key] = float(value)
                else:
                    kw[key] = value
            out.append(EvalRow(**kw))
    return out


def _clipped_as_all(rows: Sequence) -> dict[tuple, list]:
    """Rows grouped by (task, extractor, head, budget), budgets that never got their labels merged into None ("all").

    A budget every one of whose runs trained on fewer labels than it asked for
    drew every training sample, like "all": files written before the harness
    folded such budgets into one run show them once, too (one run per repeat and fold).
    """
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r.task, r.extractor, r.head, r.budget), []).append(r)
    merged: dict[tuple, list] = {}
    for (task, ext, head, budget), rs in sorted(groups.items(), key=lambda kv: (kv[0][:3], kv[0][3] is not None,
                                                                              kv[0][3] or 0)):
        if budget is not None and all(r.n_train < budget for r in rs):
            budget = None
        into = merged.setdefault((task, ext, head, budget), [])
        seen = {(r.repeat, r.fold) for r in into}
        into.extend(r for r in rs if (r.repeat, r.fold) not in seen)
    return merged


def curves(rows: Sequence) -> dict[tuple[str, str, str], list[tuple]]:
    """``(task, extractor, head)`` -> points sorted by budget, clipped budgets shown once as "all".

    Each point: ``(budget, mean n_train, mean F1, std F1, runs, mean train s, mean predict s)``.
    """
    groups = _clipped_as_all(rows)
    out: dict[tuple[str, str, str], list[tuple]] = {}
    for (task, ext, head, budget), rs in groups.items():
        f1 = np.array([r.macro_f1 for r in rs], float)
        ok = f1[np.isfinite(f1)]
        out.setdefault((task, ext, head), []).append((
            budget, float(np.mean([r.n_train for r in rs])),
            float(ok.mean()) if ok.size else float("nan"), float(ok.std()) if ok.size else float("nan"),
            len(rs), float(np.nanmean([r.train_s for r in rs])), float(np.nanmean([r.predict_s for r in rs]))))
    for pts in out.values():
        pts.sort(key=lambda p: (p[0] is None, p[0] or 0))
    return out


def summary_table(rows: Sequence) -> str:
    """A fixed-width table: mean +- std macro-F1 and times per task, extractor, head and budget."""
    lines = [f"{'task':<8} {'extractor':<16} {'head':<13} {'budget':>7} {'n train':>8} {'macro-F1':>8} "
             f"{'+- std':>7} {'runs':>5} {'train s':>8} {'predict s':>9}"]
    for (task, ext, head), pts in sorted(curves(rows).items()):
        for budget, n, mean, std, runs, tr, pr in pts:
            lines.append(f"{task:<8} {ext:<16} {head:<13} {'all' if budget is None else budget:>7} {n:>8.0f} "
                         f"{mean:>8.3f} {std:>7.3f} {runs:>5} {tr:>8.3f} {pr:>9.3f}")
    return "\n".join(lines)


def _tick_label(budget, n: float) -> str:
    if budget is None:
        return f"all ({n:.0f})"
    return f"{n / 1000:g}k" if n >= 1000 and n % 1000 == 0 else f"{n:.0f}"


def axis_ticks(data: dict, task: str) -> dict[int, str]:
    """Tick position (labels used) -> label on the ``task`` panel of :func:`plot_curves`: one "all (N)" per N."""
    ticks: dict[int, str] = {}
    for (t, _ext, _head), pts in sorted(data.items()):
        if t == task:
            for budget, n, *_ in pts:
                ticks.setdefault(round(n), _tick_label(budget, n))
    return dict(sorted(ticks.items()))


def plot_curves(rows: Sequence, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Macro-F1 (mean +- std over folds x repeats) against the labels used, one panel per task."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("Plotting needs matplotlib: pip install 'vfm-features[plot]'") from None
    from matplotlib.ticker import FixedLocator, NullLocator

    data = curves(rows)
    tasks = [t for t in ("pixels", "objects") if any(k[0] == t for k in data)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.2 * len(tasks), 4.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        ticks = axis_ticks(data, task)
        low = 1.0
        for (t, ext, head), pts in sorted(data.items()):
            if t != task:
                continue
            x = np.array([p[1] for p in pts])  # labels actually used (mean over folds)
            mean = np.array([p[2] for p in pts])
            std = np.array([p[3] for p in pts])
            ax.errorbar(x, mean, yerr=std, marker="o", ms=4, capsize=3, lw=1.5, label=f"{ext} + {head}")
            low = min(low, float(np.nanmin(mean - std)) if np.isfinite(mean).any() else low)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sorted(ticks)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([ticks[k] for k in sorted(ticks)], rotation=30 if len(ticks) > 6 else 0)
        ax.set_xlabel(TASK_UNITS[task] + " (log scale)")
        ax.set_ylabel("macro-F1 (mean ± std over folds × repeats)")
        ax.set_title(task)
        ax.set_ylim(max(0.0, np.floor((low - 0.05) * 10) / 10), 1.0)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
