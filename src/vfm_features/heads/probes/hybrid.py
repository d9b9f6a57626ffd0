"""The ``hybrid`` heads: the forest answers at once; a probe trains in the background and takes over when better.

``fit(samples)`` trains the random forest in the caller's thread (seconds) and
hands the same samples to a background thread, which runs *rounds*: hold out
``val_fraction`` of the labels (whole 32-pixel blocks for pixels), train a
forest and the probe on the rest, and score both with macro-F1 on the held-out
labels. The probe becomes the answering head only when its score is higher
(or when the user pins it). Labels added meanwhile - another ``fit`` call with
more samples - are used by the next round: the forest answers them at once, a
round that finishes on older labels is recorded but not applied, and the next
round starts on the newest labels.

The head says which head answers and why (``active_``, ``reason_``,
:meth:`status`); :meth:`pin` fixes either. A round that fails leaves the forest
answering, stores the exception in ``error_`` and warns
(:class:`ProbeTrainingWarning`); nothing is swallowed. Saved like any head: the
answering choice, the reason and both heads' arrays (``forest.*``, ``probe.*``).
"""

from __future__ import annotations

import atexit
import threading
import time
import warnings
import weakref
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from vfm_features.errors import InputError
from vfm_features.heads.base import ObjectHead, PixelHead
from vfm_features.registry import default_registry, get_head
from vfm_features.validation import (
    check_bool,
    check_classes_present,
    check_is_fitted,
    check_n_jobs,
    check_options_dict,
    check_random_state,
)

from .options import check_float
from .probe import RUNTIME, Probe
from .sampling import validation_split
from .state import bad_file, check_params
from .training import macro_f1

PINS = (None, "forest", "probe")
BLOCK = 32  # pixels: side of the blocks held out together for validation
_TRAINING: "weakref.WeakSet[_Hybrid]" = weakref.WeakSet()  # heads with a background round, stopped at exit


def _stop_all() -> None:
    """At interpreter exit, cancel the background rounds: each stops at its next iteration and is joined.

    Registered with ``threading._register_atexit`` (as ``concurrent.futures``
    does), which runs before non-daemon threads are joined and before torch's
    own exit handlers, so no round is cut off while torch is being torn down.
    """
    for head in list(_TRAINING):
        cancel = getattr(head, "_cancel", None)
        if cancel is not None:
            cancel.set()


try:
    threading._register_atexit(_stop_all)  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - Python < 3.9
    atexit.register(_stop_all)


class ProbeTrainingWarning(UserWarning):
    """A hybrid head's background probe training failed; the forest keeps answering."""


class _Hybrid(BaseEstimator):
    """Forest + background probe; see the module docstring. Subclasses fix the kind and the default probe."""

    needs_embeddings = True
    _KIND = "pixel"

    def __init__(self, *, probe: str = "deap", probe_options: dict | None = None,
                 forest_options: dict | None = None, pinned: str | None = None, val_fraction: float = 0.2,
                 background: bool = True, random_state: int | None = None, n_jobs: int | None = -1) -> None:
        self.probe = probe
        self.probe_options = probe_options
        self.forest_options = forest_options
        self.pinned = pinned
        self.val_fraction = val_fraction
        self.background = background
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- parameters ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        if not isinstance(self.probe, str):
            raise InputError(f"probe={self.probe!r} is not valid; give the name of a registered probe head "
                             "such as 'deap' or 'obap'.")
        spec = default_registry().head_spec(self.probe, self._KIND)
        factory = spec.load_factory()
        if not (isinstance(factory, type) and issubclass(factory, Probe)):
            raise InputError(f"probe={self.probe!r} is not an attentive probe; use 'deap' for pixels or 'obap' for "
                             "objects.")
        check_options_dict(self.probe_options, "probe_options")
        check_options_dict(self.forest_options, "forest_options")
        if self.pinned not in PINS:
            raise InputError(f"pinned={self.pinned!r} is not valid; use None (the better head answers), 'forest' "
                             "or 'probe'.")
        check_float(self.val_fraction, "val_fraction", low=0.0, high=0.5, low_open=True,
                    hint="the share of the labels held out to compare the forest and the probe")
        check_bool(self.background, "background")
        check_random_state(self.random_state)
        check_n_jobs(self.n_jobs)

    def _new_forest(self) -> Any:
        options = {"random_state": self.random_state, "n_jobs": self.n_jobs, **(self.forest_options or {})}
        return get_head("rf", self._KIND, **options)

    def _new_probe(self) -> Any:
        options = {"random_state": self.random_state, **(self.probe_options or {})}
        return get_head(self.probe, self._KIND, **options)

    def _runtime(self) -> None:
        if getattr(self, "_lock", None) is None:
            self._lock = threading.Lock()
            self._thread: threading.Thread | None = None
            self._pending: Any = None
            self._running = False
            self._generation = 0
            self._cancel = threading.Event()

    # -- training -----------------------------------------------------------------------------
    def fit(self, samples: Any) -> "_Hybrid":
        """Fit the forest now (it answers at once) and queue a probe round on the same samples."""
        self._check_params()
        if samples.y is None:
            raise InputError("fit() needs samples with classes (y).")
        check_classes_present(np.unique(np.asarray(samples.y)), what="labels given to the hybrid head")
        self._runtime()
        forest = self._new_forest().fit(samples)
        with self._lock:
            self._generation += 1
            self.forest_ = forest
            self.classes_ = np.asarray(forest.classes_)
            self.n_features_in_ = int(forest.n_features_in_)
            for attr, default in (("probe_", None), ("error_", None), ("rounds_", [])):
                if not hasattr(self, attr):
                    setattr(self, attr, default)
            if self.probe_ is not None and not np.array_equal(self.probe_.classes_, self.classes_):
                self.probe_ = None  # trained on other classes: never answers again
            self._pending = samples
            self._decide(f"the forest answers; a probe round on {len(samples)} labels is queued")
            if self._cancel.is_set():  # stopped before: new labels get a fresh signal (a running worker goes on)
                self._cancel = threading.Event()
            start = not self._running
            if start:
                self._running = True
                if self.background:
                    self._thread = threading.Thread(target=self._work, name="vfm-features hybrid probe")
        if start and self.background:
            _TRAINING.add(self)
            self._thread.start()
        elif start:
            self._work()
        return self

    def _work(self) -> None:
        """Run rounds until no labels are pending (in the background thread, or in fit when background=False)."""
        finished = False
        try:
            finished = self._rounds()
        finally:
            if not finished:  # interrupted (KeyboardInterrupt, SystemExit): the next fit starts a new worker
                with self._lock:
                    self._running = False

    def _rounds(self) -> bool:
        """The worker's loop; returns True after it marked itself stopped (under the lock, with no labels pending)."""
        while True:
            with self._lock:
                samples, generation = self._pending, self._generation
                self._pending = None
                number = len(self.rounds_) + 1
                if samples is None or self._cancel.is_set():
                    self._running = False
                    return True
            try:
                record, probe, cancel = self._round(samples, number)
            except Exception as exc:  # noqa: BLE001 - reported below, never swallowed
                with self._lock:
                    self.error_ = exc
                    self.rounds_.append({"round": number, "n_labels": len(samples), "error": repr(exc),
                                         "applied": False})
                    self._decide(f"the forest answers: probe round {number} failed ({type(exc).__name__}: {exc})",
                                 fallback=True)
                warnings.warn(f"The hybrid head's probe round {number} failed ({type(exc).__name__}: {exc}); the "
                              "forest keeps answering. See the head's error_ attribute; fix the cause and call fit "
                              "again.", ProbeTrainingWarning, stacklevel=2)
                continue
            with self._lock:
                record["cancelled"] = cancel.is_set()
                record["applied"] = generation == self._generation and not record["cancelled"]
                self.rounds_.append(record)
                if record["applied"]:
                    self.probe_ = probe
                    self.error_ = None
                    self._decide()
                elif record["cancelled"]:
                    self._decide(f"the forest answers: probe round {number} was stopped")
                else:
                    self._decide(f"the forest answers: probe round {number} finished on older labels; the next "
                                 "round uses the newest")

    def _groups(self, samples: Any) -> np.ndarray:
        if self._KIND == "pixel":
            c = samples.coords // BLOCK
            return samples.image_index * (1 << 42) + c[:, 0] * (1 << 21) + c[:, 1]
        return np.arange(len(samples))

    def _round(self, samples: Any, number: int) -> tuple[dict[str, Any], Any, threading.Event]:
        """Train a forest and a probe on part of the labels and score both on the rest.

        Returns the record, the probe and the stop signal the probe was given.
        """
        t0 = time.perf_counter()
        seed = 0 if self.random_state is None else int(self.random_state)
        y = np.asarray(samples.y)
        train, val = validation_split(self._groups(samples), y, self.val_fraction, random_state=seed + number)
        probe = self._new_probe()
        with self._lock:
            cancel = probe._cancel = self._cancel
        if val is None:
            probe.fit(samples)
            return {"round": number, "n_labels": len(samples), "n_val": 0, "forest_f1": None, "probe_f1": None,
                    "seconds": time.perf_counter() - t0}, probe, cancel
        forest = self._new_forest().fit(samples.subset(train))
        held_out = samples.subset(val)
        forest_f1 = macro_f1(y[val], forest.classes_[forest.predict_proba(held_out).argmax(1)])
        probe.fit(samples.subset(train))
        probe_f1 = macro_f1(y[val], probe.classes_[probe.predict_proba(held_out).argmax(1)])
        return {"round": number, "n_labels": len(samples), "n_val": len(val), "forest_f1": forest_f1,
                "probe_f1": probe_f1, "seconds": time.perf_counter() - t0}, probe, cancel

    def _decide(self, note: str | None = None, *, fallback: bool = False) -> None:
        """Set ``active_`` and ``reason_`` (call under the lock).

        A pin wins; ``fallback`` (a failed round) makes the forest answer; a
        ``note`` (labels queued, a stale round) keeps a probe that answers and
        otherwise explains why the forest does; else the last applied round decides.
        """
        probe = getattr(self, "probe_", None)
        usable = probe is not None and np.array_equal(probe.classes_, getattr(self, "classes_", probe.classes_))
        last = next((r for r in reversed(getattr(self, "rounds_", [])) if r.get("applied")), None)
        compared = last is not None and last.get("probe_f1") is not None
        if self.pinned == "forest":
            self.active_, self.reason_ = "forest", "the forest answers: pinned by the user"
        elif self.pinned == "probe":
            self.active_ = "probe" if usable else "forest"
            self.reason_ = ("the probe answers: pinned by the user" if usable else
                            "the forest answers until a probe is trained (the probe is pinned)")
        elif fallback or (note is not None and not (usable and getattr(self, "active_", "") == "probe")):
            self.active_, self.reason_ = "forest", note or "the forest answers"
        elif usable and compared and last["probe_f1"] > last["forest_f1"]:
            self.active_ = "probe"
            self.reason_ = (f"the probe answers: its validation macro-F1 {last['probe_f1']:.3f} beats the forest's "
                            f"{last['forest_f1']:.3f} on {last['n_val']} held-out labels (round {last['round']})")
        elif compared:
            self.active_ = "forest"
            self.reason_ = (f"the forest answers: its validation macro-F1 {last['forest_f1']:.3f} is at least the "
                            f"probe's {last['probe_f1']:.3f} on {last['n_val']} held-out labels "
                            f"(round {last['round']})")
        else:
            self.active_ = "forest"
            self.reason_ = ("the forest answers: too few labels to compare it with the probe on held-out labels"
                            if last is not None else note or "the forest answers")

    # -- control ------------------------------------------------------------------------------
    def pin(self, which: str | None) -> "_Hybrid":
        """Fix the answering head: 'forest', 'probe' (once one is trained), or None (the better one answers)."""
        if which not in PINS:
            raise InputError(f"pin({which!r}) is not valid; use None, 'forest' or 'probe'.")
        self._runtime()
        with self._lock:
            self.pinned = which
            if hasattr(self, "forest_"):
                self._decide()
        return self

    def status(self) -> dict[str, Any]:
        """Which head answers and why, whether a round is running, the rounds so far and the last error."""
        check_is_fitted(self, "forest_")
        self._runtime()
        with self._lock:
            return {"active": self.active_, "reason": self.reason_, "training": self.training,
                    "rounds": [dict(r) for r in self.rounds_], "error": self.error_}

    @property
    def training(self) -> bool:
        """True while a round runs or labels wait for one."""
        return bool(getattr(self, "_running", False))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no round runs (at most ``timeout`` seconds); True when idle."""
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not self.training

    def stop(self, timeout: float | None = None) -> bool:
        """Cancel the running round (its probe stops at the next iteration) and drop pending labels."""
        self._runtime()
        with self._lock:
            self._pending = None
            self._cancel.set()
        return self.wait(timeout)

    # -- prediction ---------------------------------------------------------------------------
    def _answering(self) -> Any:
        check_is_fitted(self, "forest_")
        self._runtime()
        with self._lock:
            return self.probe_ if self.active_ == "probe" else self.forest_

    def predict_proba(self, samples: Any) -> np.ndarray:
        return self._answering().predict_proba(samples)

    # -- saving -------------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        check_is_fitted(self, "forest_")
        self._runtime()
        with self._lock:
            forest, probe, active, reason = self.forest_, self.probe_, self.active_, self.reason_
        forest_params, forest_arrays = forest.get_state()
        options = self.get_params(deep=False)
        options["probe_options"] = {k: v for k, v in (self.probe_options or {}).items() if k not in RUNTIME} or None
        params = {"options": options, "active": active, "reason": reason,
                  "forest": forest_params, "probe_state": None}
        arrays = {f"forest.{k}": v for k, v in forest_arrays.items()}
        if probe is not None:
            probe_params, probe_arrays = probe.get_state()
            params["probe_state"] = probe_params
            arrays.update({f"probe.{k}": v for k, v in probe_arrays.items()})
        return params, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], *, n_features: int) -> "_Hybrid":
        """Rebuild from a file: options, choice and reason checked; forest and probe rebuilt by their own checks."""
        params = check_params(params, {"options": dict, "active": str, "reason": str, "forest": dict,
                                       "probe_state": (dict, type(None))})
        expected = {"probe": str, "probe_options": (dict, type(None)), "forest_options": (dict, type(None)),
                    "pinned": (str, type(None)), "val_fraction": (int, float), "background": bool,
                    "random_state": (int, type(None)), "n_jobs": (int, type(None))}
        head = cls(**check_params(params["options"], expected))
        try:
            head._check_params()
        except InputError as exc:
            raise bad_file(f"its hybrid options are not valid ({exc})") from None
        if params["active"] not in ("forest", "probe") or len(params["reason"]) > 1000:
            raise bad_file("its answering head is neither 'forest' nor 'probe'")
        unknown = [k for k in arrays if not k.startswith(("forest.", "probe."))]
        if unknown:
            raise bad_file(f"it holds unexpected arrays {sorted(unknown)[:3]}")
        forest_factory = default_registry().head_spec("rf", cls._KIND).load_factory()
        forest = forest_factory.from_state(params["forest"], _part(arrays, "forest."), n_features=n_features)
        probe = None
        if params["probe_state"] is not None:
            probe_factory = default_registry().head_spec(head.probe, cls._KIND).load_factory()
            width = params["probe_state"].get("n_features_in")
            if not isinstance(width, int) or isinstance(width, bool):
                raise bad_file("its probe has no feature count")
            probe = probe_factory.from_state(params["probe_state"], _part(arrays, "probe."), n_features=width)
            if not np.array_equal(probe.classes_, forest.classes_):
                raise bad_file("its probe and its forest have different classes")
        elif any(k.startswith("probe.") for k in arrays) or params["active"] == "probe":
            raise bad_file("its probe arrays and its probe parameters do not go together")
        head._runtime()
        head.forest_, head.probe_ = forest, probe
        head.classes_ = np.asarray(forest.classes_)
        head.n_features_in_ = int(forest.n_features_in_)
        head.error_, head.rounds_ = None, []
        head.active_, head.reason_ = params["active"], params["reason"]
        return head

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_lock", "_thread", "_pending", "_cancel", "_running", "_generation"):
            state.pop(key, None)
        return state


def _part(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


class HybridPixelHead(_Hybrid, PixelHead):
    """Pixels: the ``rf`` forest answers at once; a ``deap`` probe trains in the background and takes over when better.

    Parameters: ``probe`` (a registered probe head, 'deap'), ``probe_options`` and
    ``forest_options`` (their options), ``pinned`` (None, 'forest' or 'probe'; see
    :meth:`pin`),
    ``val_fraction`` (labels held out to compare them), ``background`` (False:
    ``fit`` runs the round before returning), ``random_state``, ``n_jobs`` (forest).
    """

    _KIND = "pixel"

    @property
    def context_px(self) -> int:  # type: ignore[override]
        """The answering head's context (it changes when the probe takes over)."""
        return int(getattr(self._answering(), "context_px", 0))

    @property
    def block_alignment(self) -> int:  # type: ignore[override]
        return int(getattr(self._answering(), "block_alignment", 1))

    def predict_proba_dense(self, embedding: Any, image: Any, upsampler: Any, out_shape: tuple[int, int],
                            region: Any = None) -> np.ndarray:
        return self._answering().predict_proba_dense(embedding, image, upsampler, out_shape, region)


class HybridObjectHead(_Hybrid, ObjectHead):
    """Objects: the ``rf`` forest answers at once; an ``obap`` probe trains in the background (see the pixel hybrid)."""

    _KIND = "object"

    def __init__(self, *, probe: str = "obap", probe_options: dict | None = None,
                 forest_options: dict | None = None, pinned: str | None = None, val_fraction: float = 0.2,
                 background: bool = True, random_state: int | None = None, n_jobs: int | None = -1) -> None:
        super().__init__(probe=probe, probe_options=probe_options, forest_options=forest_options, pinned=pinned,
                         val_fraction=val_fraction, background=background, random_state=random_state,
                         n_jobs=n_jobs)
