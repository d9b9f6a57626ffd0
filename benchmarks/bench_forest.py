"""The interactive loop: retrain on 1e4 labelled pixels x 256 features, then predict a whole view.

Each option fits a head on the same labelled feature rows and predicts every
pixel of a 1024 x 1024 view from a cached embedding, through the head's own
``predict_proba_dense`` (dense read + predict, exactly as ``PixelClassifier``),
on the full grid or on a working grid at half the view's resolution; macro-F1 is
scored on every pixel of the view. CPU seconds (all threads) are printed next to
wall-clock seconds: other programs hardly move them, so on a shared machine
their ratio is the steadier estimate of the wall-clock ratio on a quiet one
(both sides use every core). The reference is scikit-learn's
RandomForest(200 trees, depth 10) on all cores with its own ``predict_proba``
(what micro-sam's object classifier and most napari plugins run), ``rf-reference``.

Two data sets: ``synthetic`` (the shipped synthetic scenes, a 256-channel
embedding on 8 x 8 px patches; train on one scene, predict another) and
``ihc`` (scikit-image's immunohistochemistry image with 252 multiscale filter
features, sparse brush strokes on it, predicted on the same view, as a user
would see it).

``PCA 32`` projects the embedding's channels on their 32 principal components,
fitted once on the training image's embedding cells and applied to every
image's embedding grid (unsupervised, before any label; its one-off cost is
printed and not counted in the loop, like the embedding). The reference and the
interactive loop are measured under load too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from data import class_embedding, labelled_pixels, realistic, scene
from load import cpu_load
from view import fit_head, predict_view
from vfm_features import get_upsampler
from vfm_features.evaluation.metrics import macro_f1
from vfm_features.geometry import Embedding
from vfm_features.heads.forest_predict import MAX_DEPTH, MAX_SAMPLES, N_ESTIMATORS

REFERENCE = dict(n_estimators=200, max_depth=10, max_samples=None, fast=False)  # "rf-reference"


@dataclass
class Option:
    name: str
    params: dict
    half_grid: bool = False
    pca: bool = False
    n_jobs: int | None = -1
    loaded: bool = False  # measured under load too


@dataclass
class Result:
    name: str
    fit_s: float
    predict_s: float
    f1: float
    cpu_s: float = float("nan")  # CPU seconds of the loop, all threads (hardly moved by other programs)
    loaded: tuple[float, float] | None = None  # fit, predict under load

    @property
    def loop_s(self) -> float:
        return self.fit_s + self.predict_s


def options(quick: bool) -> list[Option]:
    before = {"n_estimators": 64, "max_samples": None}  # the rf default before issue 12
    out = [
        Option("reference RF 200 d10, all cores (sklearn)", REFERENCE, loaded=True),
        Option("reference RF 200 d10, 1 core (sklearn)", REFERENCE, n_jobs=None),
        Option(f"rf default ({N_ESTIMATORS} d{MAX_DEPTH}, <= {MAX_SAMPLES} per tree)", {}),
        Option("rf default, half grid: THE INTERACTIVE LOOP", {}, half_grid=True, loaded=True),
        Option("rf before (64 d10, all labels per tree)", before),
        Option("rf before, half grid", before, half_grid=True),
        Option("rf 32 trees d10, half grid", {"n_estimators": 32, "max_samples": None}, half_grid=True),
        Option("PCA 32 + rf default, half grid", {}, half_grid=True, pca=True),
    ]
    if not quick:
        out.append(Option("rf, <= 2500 per tree, half grid", {"max_samples": 2500}, half_grid=True))
    return out


def _pca(fit_on: Embedding, n: int = 32):
    """A projection of the channels on their ``n`` principal components, fitted on the cells of ``fit_on``."""
    from sklearn.decomposition import PCA

    C = fit_on.data.shape[0]
    cells = fit_on.data.reshape(C, -1).T
    pca = PCA(n, svd_solver="randomized", random_state=0).fit(cells[:: max(1, len(cells) // 50_000)])

    def project(embedding: Embedding) -> Embedding:
        flat = embedding.data.reshape(C, -1).T
        data = pca.transform(flat).astype(np.float32).T.reshape(n, *embedding.data.shape[1:])
        return Embedding(np.ascontiguousarray(data), embedding.geometry, extractor="pca")

    return project


def datasets(size: int, n_labels: int):
    """name -> (train embedding, test embedding, labelled coords, classes, truth of the test view)."""
    train, test = scene(size, seed=0), scene(size, seed=1)
    coords, y = labelled_pixels(train.semantic, n_labels, seed=0)
    yield "synthetic", (class_embedding(train.semantic, model_seed=0, image_seed=0),
                        class_embedding(test.semantic, model_seed=0, image_seed=1), coords, y, test.semantic)
    emb, truth = realistic(size)
    coords, y = labelled_pixels(truth, n_labels, seed=0)
    yield "ihc", (emb, emb, coords, y, truth)


def _loop(opt: Option, emb_train, emb_test, coords, y, size: int):
    up = get_upsampler("bilinear")
    X = up.sparse(emb_train, None, coords)
    c0, t0 = time.process_time(), time.perf_counter()
    head = fit_head(X, y, n_jobs=opt.n_jobs, **opt.params)
    t1 = time.perf_counter()
    proba = predict_view(head, emb_test, size, size // 2 if opt.half_grid else None)
    t2 = time.perf_counter()
    return head, proba, t1 - t0, t2 - t1, time.process_time() - c0


def run(*, size: int = 1024, n_labels: int = 10_000, quick: bool = False, loaded: bool = True,
        log=print) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = {}
    for name, (emb_train, emb_test, coords, y, truth) in datasets(size, n_labels):
        t0 = time.perf_counter()
        project = _pca(emb_train)  # one basis for every image, fitted on the first one
        pca_train = project(emb_train)
        pca_test = pca_train if emb_test is emb_train else project(emb_test)
        pca_s = time.perf_counter() - t0
        log(f"  {name}: {len(y)} labels x {emb_train.data.shape[0]} features, view {size}x{size}, "
            f"embedding {emb_train.data.shape}; PCA 32 fitted and applied once {pca_s:.2f} s (not in the loop)")
        results = []
        for opt in options(quick):
            tr, te = (pca_train, pca_test) if opt.pca else (emb_train, emb_test)
            head, proba, fit_s, predict_s, cpu_s = _loop(opt, tr, te, coords, y, size)
            f1 = macro_f1(truth.ravel(), np.asarray(head.classes_)[np.argmax(proba, axis=0)].ravel())
            res = Result(opt.name, fit_s, predict_s, f1, cpu_s)
            if loaded and opt.loaded:
                with cpu_load(seconds=600):
                    _, _, lf, lp, _ = _loop(opt, tr, te, coords, y, size)
                res.loaded = (lf, lp)
            results.append(res)
            log(f"    {opt.name}: fit {fit_s:.2f} s, predict {predict_s:.2f} s, macro-F1 {f1:.4f}"
                + f" (CPU {cpu_s:.1f} s)"
                + (f"; under load fit {res.loaded[0]:.2f} s, predict {res.loaded[1]:.2f} s" if res.loaded else ""))
        out[name] = results
    return out


def table(results: dict[str, list[Result]]) -> str:
    lines = []
    for name, rows in results.items():
        ref = rows[0]
        lines.append(f"[{name}] {'option':<44} {'fit s':>6} {'pred s':>6} {'loop s':>6} {'vs ref':>7} {'CPU s':>6} "
                     f"{'vs ref':>7} {'macro-F1':>8} {'dF1':>7} {'loaded loop s':>13} {'vs ref':>7} "
                     f"{'loaded/quiet':>12}")
        for r in rows:
            loaded = ""
            if r.loaded and ref.loaded:
                ll = sum(r.loaded)
                loaded = f"{ll:>13.2f} {sum(ref.loaded) / ll:>6.1f}x {ll / r.loop_s:>11.2f}x"
            lines.append(f"{'':<{len(name) + 3}}{r.name:<44} {r.fit_s:>6.2f} {r.predict_s:>6.2f} {r.loop_s:>6.2f} "
                         f"{ref.loop_s / r.loop_s:>6.1f}x {r.cpu_s:>6.1f} {ref.cpu_s / r.cpu_s:>6.1f}x "
                         f"{r.f1:>8.4f} {r.f1 - ref.f1:>+7.4f} {loaded}")
        loop = next(r for r in rows if "INTERACTIVE" in r.name)
        lines.append(f"{'':<{len(name) + 3}}interactive loop vs reference on all cores: "
                     f"{ref.loop_s / loop.loop_s:.1f}x "
                     f"faster quiet" + (f", {sum(ref.loaded) / sum(loop.loaded):.1f}x under load"
                                        if ref.loaded and loop.loaded else "")
                     + f", {ref.cpu_s / loop.cpu_s:.1f}x less CPU time"
                     + f"; macro-F1 {loop.f1 - ref.f1:+.4f}")
    return "\n".join(lines)
