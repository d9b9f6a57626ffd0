"""The interactive loop: retrain on 1e4 labelled pixels x 256 features, then predict a whole view.

Every option is trained on the same labels of one synthetic scene and predicts
every pixel of another scene from precomputed features (the cached-embedding
case); macro-F1 is scored on every pixel of that scene. Times are wall-clock on
this machine, in this run, so the ratios compare like with like.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sklearn.ensemble import ExtraTreesClassifier

from vfm_features.heads.forest_predict import blocked_predict_proba, make_forest, reference_forest
from vfm_features.geometry import Embedding, EmbeddingGeometry
from vfm_features.evaluation.metrics import macro_f1
from vfm_features import get_upsampler
from vfm_features.features.upsample import resize_probabilities

from data import class_embedding, dense_features, labelled_pixels, scene


@dataclass
class Option:
    name: str
    fit: Callable  # (X, y) -> model
    predict: Callable  # (model, X) -> proba (n, K)
    grid: int | None = None  # predict on a grid x grid working grid and interpolate
    needs: str | None = None  # optional package
    exactness: Callable | None = None  # (model, X) -> max |proba - sklearn proba|


@dataclass
class Result:
    name: str
    fit_s: float
    predict_s: float
    f1: float
    note: str = ""

    @property
    def loop_s(self) -> float:
        return self.fit_s + self.predict_s


def _sk(model, X):
    return model.predict_proba(X)


def _blocked(model, X):
    return blocked_predict_proba(model, X)


def _onnx(model, X):
    """skl2onnx conversion + onnxruntime session (built per fit, counted in predict time)."""
    import onnxruntime as ort
    from skl2onnx import to_onnx

    onx = to_onnx(model, X[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X})[1]


def _treelite(model, X):
    import treelite

    return np.asarray(treelite.gtil.predict(treelite.sklearn.import_model(model), X)).reshape(len(X), -1)


def _pca_fit(X, y, n_components=32):
    from sklearn.decomposition import PCA

    pca = PCA(n_components, random_state=0).fit(X)
    forest = make_forest(random_state=0).fit(pca.transform(X).astype(np.float32), y)
    return pca, forest


def _pca_predict(model, X):
    pca, forest = model
    return blocked_predict_proba(forest, pca.transform(X).astype(np.float32))


def _lgbm_fit(X, y):
    import lightgbm

    return lightgbm.LGBMClassifier(boosting_type="rf", n_estimators=64, num_leaves=128, max_depth=10, max_bin=63,
                                   subsample=0.632, subsample_freq=1, colsample_bytree=0.5,
                                   class_weight="balanced", verbose=-1, random_state=0).fit(X, y)


def options(quick: bool, size: int) -> list[Option]:
    ref1 = lambda X, y: reference_forest(n_jobs=None, random_state=0).fit(X, y)  # noqa: E731
    refn = lambda X, y: reference_forest(n_jobs=-1, random_state=0).fit(X, y)  # noqa: E731
    default = lambda X, y: make_forest(random_state=0).fit(X, y)  # noqa: E731

    def extra(max_features):
        return lambda X, y: ExtraTreesClassifier(64, max_depth=10, max_features=max_features, n_jobs=-1,
                                                 class_weight="balanced", random_state=0).fit(X, y)

    out = [
        Option("reference RF 200 trees d10, 1 core (sklearn)", ref1, _sk),
        Option("reference RF, all cores (sklearn)", refn, _sk),
        Option("reference RF, all cores, blocked predictor", refn, _blocked),
        Option("ExtraTrees 64 d10 sqrt(F), blocked", extra("sqrt"), _blocked),
        Option("ExtraTrees 64 d10 32 feats/split, blocked", extra(32), _blocked),
        Option("DEFAULT RF 64 trees d10, blocked", default, _blocked),
        Option(f"DEFAULT + {size // 2}x{size // 2} working grid", default, _blocked, grid=size // 2),
        Option("DEFAULT + 256x256 working grid", default, _blocked, grid=256),
        Option("DEFAULT, onnxruntime (skl2onnx)", default, _onnx, needs="skl2onnx"),
        Option("PCA 32 + DEFAULT", _pca_fit, _pca_predict),
    ]
    if not quick:
        out.append(Option("DEFAULT, treelite GTIL", default, _treelite, needs="treelite"))
        out.append(Option("LightGBM rf mode, 64 trees", _lgbm_fit, _sk, needs="lightgbm"))
    return out


def _time(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def _upsample_proba(proba_grid: np.ndarray, grid: int, shape: tuple[int, int]) -> np.ndarray:
    K = proba_grid.shape[1]
    return resize_probabilities(proba_grid.T.reshape(K, grid, grid).copy(), shape).reshape(K, -1).T


def run(*, size: int = 1024, n_labels: int = 10_000, channels: int = 256, quick: bool = False,
        log=print) -> list[Result]:
    t0 = time.perf_counter()
    train, test = scene(size, seed=0), scene(size, seed=1)
    emb_train = class_embedding(train.semantic, channels=channels, model_seed=0, image_seed=0)
    emb_test = class_embedding(test.semantic, channels=channels, model_seed=0, image_seed=1)
    coords, y = labelled_pixels(train.semantic, n_labels, seed=0)
    X = get_upsampler("bilinear").sparse(emb_train, None, coords)
    X_view = dense_features(emb_test)
    grids = {g: dense_features(emb_test, (g, g)) for g in {256, size // 2}}
    truth = test.semantic.ravel()
    log(f"data: {len(y)} labels x {X.shape[1]} features; view {size}x{size} = {len(X_view)} pixels "
        f"({X_view.nbytes / 2**30:.2f} GiB of features); prepared in {time.perf_counter() - t0:.0f} s")
    results: list[Result] = []
    for opt in options(quick, size):
        if opt.needs and importlib.util.find_spec(opt.needs) is None:
            log(f"  {opt.name}: skipped ({opt.needs} is not installed)")
            continue
        model, fit_s = _time(opt.fit, X, y)
        if opt.grid:
            proba_grid, predict_s = _time(opt.predict, model, grids[opt.grid])
            proba, up_s = _time(_upsample_proba, proba_grid, opt.grid, (size, size))
            predict_s += up_s
        else:
            proba, predict_s = _time(opt.predict, model, X_view)
        classes = model[1].classes_ if isinstance(model, tuple) else model.classes_
        f1 = macro_f1(truth, classes[np.argmax(proba, axis=1)])
        note = ""
        if opt.predict in (_blocked, _onnx, _treelite) and not isinstance(model, tuple):
            # exactness against scikit-learn's own predict_proba on a slice
            ref = model.predict_proba(X_view[:65_536])
            diff = float(np.abs(np.asarray(proba[:65_536], np.float64) - ref).max())
            same = float(np.mean(np.argmax(proba[:65_536], 1) == np.argmax(ref, 1)))
            note = f"max |dp| {diff:.1e}, same class {same:.4%}"
        results.append(Result(opt.name, fit_s, predict_s, f1, note))
        log(f"  {opt.name}: fit {fit_s:.2f} s, predict {predict_s:.2f} s, macro-F1 {f1:.4f} {note}")
    return results


def table(results: list[Result]) -> str:
    base = results[0]
    lines = [f"{'option':<46} {'fit s':>7} {'predict s':>9} {'loop s':>7} {'speed-up':>8} {'macro-F1':>8} "
             f"{'dF1':>7}  exactness vs sklearn"]
    for r in results:
        lines.append(f"{r.name:<46} {r.fit_s:>7.2f} {r.predict_s:>9.2f} {r.loop_s:>7.2f} "
                     f"{base.loop_s / r.loop_s:>7.1f}x {r.f1:>8.4f} {r.f1 - base.f1:>+7.4f}  {r.note}")
    return "\n".join(lines)
