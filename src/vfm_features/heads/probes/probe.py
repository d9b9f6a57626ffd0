"""What the DeAP and ObAP heads share: parameters, seeds, device, and saving as JSON + float32 arrays.

A probe is a scikit-learn style estimator (parameters in ``__init__`` only,
learned attributes end in ``_``). Saved state: every constructor parameter but
the runtime ones (``device``, ``progress``: how to run, not what was learned),
the learned scalars (initial sigma in pixels, attention window, iterations, best
validation score), and arrays: ``classes``, the feature standardisation
``feature_mean`` / ``feature_std`` and the network's parameters ``net.*``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from vfm_features.errors import InputError
from vfm_features.validation import check_classes_present

from .options import check_training_params
from .state import bad_file, check_classes, check_params, check_vector, load_network, network_arrays

RUNTIME = ("device", "progress")
# learned scalars saved with the parameters: name -> type
LEARNED = {"n_features_in": int, "sigma_px": float, "window": int, "n_iter": int, "best_score": (float, type(None))}
MAX_FEATURES = 1 << 16


class Probe(BaseEstimator):
    """Base of the attentive probes (not registered itself)."""

    needs_embeddings = True

    # -- parameters ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        check_training_params(self)

    def _seed(self) -> int:
        if self.random_state is None:
            return int(np.random.SeedSequence().generate_state(1)[0])
        return int(self.random_state)

    def _device(self) -> str:
        """The torch device to run on; torch's threads get the library's thread budget (threads.py)."""
        from vfm_features.models.device import resolve_device
        from vfm_features.threads import apply_torch_threads

        apply_torch_threads()
        return resolve_device(self.device)

    def _classes(self, y: Any) -> np.ndarray:
        if y is None:
            raise InputError("fit() needs samples with classes (y).")
        classes = np.unique(np.asarray(y))
        check_classes_present(classes, what="labels given to the probe")
        return classes

    def _sigma_px(self, sides: list[float]) -> float:
        """The attention's initial width in pixels: ``sigma`` times the mean image side."""
        return float(self.sigma * np.mean(sides))

    def _window(self, sigma_px: float, cell: float) -> int:
        """Cells (of ``cell`` pixels) around a query that attention sees: ``context`` or three initial sigmas."""
        context = self.context if self.context is not None else 3.0 * sigma_px
        return int(np.clip(np.ceil(context / cell), 1, 16))

    def _train(self, net: Any, *, batch: Any, loss: Any, validate: Any, val_idx: Any, rng: np.random.Generator,
               device: str, desc: str) -> "Probe":
        """Run the training loop with this probe's settings and keep its log (``n_iter_``, ``history_``, ...)."""
        from .training import train

        log = train(net, batch=batch, loss=loss, validate=None if val_idx is None else validate, rng=rng,
                    lr=self.lr, weight_decay=self.weight_decay, max_iter=self.max_iter, val_every=self.val_every,
                    patience=self.patience, max_time=self.max_time, device=device, precision=self.precision,
                    progress=self.progress, desc=desc, cancel=getattr(self, "_cancel", None))
        self.n_iter_ = log.n_iter
        self.best_score_ = log.best_score
        self.history_ = log.history
        self.train_log_ = log
        self.n_val_ = 0 if val_idx is None else len(val_idx)
        return self

    # -- the network --------------------------------------------------------------------------
    def _build_net(self, n_features: int, n_classes: int, sigma_px: float) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _standardize(self, feats: np.ndarray) -> np.ndarray:
        """(C, ...) features minus the training mean, over the training standard deviation."""
        shape = (-1,) + (1,) * (feats.ndim - 1)
        return (feats - self.feature_mean_.reshape(shape)) / self.feature_std_.reshape(shape)

    @staticmethod
    def _feature_stats(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation (float32) of (C, n) feature blocks."""
        total = sum(p.shape[1] for p in parts)
        mean = sum(p.astype(np.float64).sum(1) for p in parts) / total
        var = sum(((p.astype(np.float64) - mean[:, None]) ** 2).sum(1) for p in parts) / total
        std = np.sqrt(var)
        std = np.where(std > 1e-6 * max(1.0, float(np.abs(mean).max(initial=0.0))), std, 1.0)
        return mean.astype(np.float32), std.astype(np.float32)

    # -- saving -------------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {k: v for k, v in self.get_params(deep=False).items() if k not in RUNTIME}
        params.update({"n_features_in": int(self.n_features_in_), "sigma_px": float(self.sigma_px_),
                       "window": int(self.window_), "n_iter": int(self.n_iter_),
                       "best_score": None if self.best_score_ is None else float(self.best_score_)})
        arrays = {"classes": np.asarray(self.classes_, np.int64), "feature_mean": self.feature_mean_,
                  "feature_std": self.feature_std_, **network_arrays(self.net_)}
        return params, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], *, n_features: int) -> "Probe":
        """Rebuild a fitted probe from a file: types and ranges of every parameter, then every array, are checked."""
        defaults = {k: v for k, v in cls().get_params(deep=False).items() if k not in RUNTIME}
        expected = {k: _json_types(v) for k, v in defaults.items()}
        expected.update(LEARNED)
        params = check_params(params, expected)
        learned = {k: params.pop(k) for k in LEARNED}
        head = cls(**params)
        try:
            head._check_params()
        except InputError as exc:
            raise bad_file(f"a parameter is out of range ({exc})") from None
        if learned["n_features_in"] != n_features or not 1 <= n_features <= MAX_FEATURES:
            raise bad_file(f"it was trained on {learned['n_features_in']} features, its classifier says {n_features}")
        if not 0 < learned["sigma_px"] <= 1e5 or not 1 <= learned["window"] <= 16 or learned["n_iter"] < 0:
            raise bad_file("its learned sigma, window or iteration count is out of range")
        classes = check_classes(arrays)
        unknown = set(arrays) - {"classes", "feature_mean", "feature_std"} - {k for k in arrays if k.startswith("net.")}
        if unknown:
            raise bad_file(f"it holds unexpected arrays {sorted(unknown)[:3]}")
        head.feature_mean_ = check_vector(arrays, "feature_mean", n_features)
        head.feature_std_ = check_vector(arrays, "feature_std", n_features, positive=True)
        net = head._build_net(n_features, len(classes), learned["sigma_px"])
        load_network(net, arrays)
        net.eval()
        head.net_ = net
        head.classes_ = classes
        head.n_features_in_ = n_features
        head.sigma_px_ = learned["sigma_px"]
        head.window_ = learned["window"]
        head.n_iter_ = learned["n_iter"]
        head.best_score_ = learned["best_score"]
        head.history_ = []
        return head

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_cancel", None)  # a hybrid head's stop signal (a threading.Event) is not data
        return state


def _json_types(default: Any) -> type | tuple[type, ...]:
    """The JSON types a saved parameter may have, judged from its default."""
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, str):
        return str
    if default is None:
        return (int, float, type(None))
    return type(default)
