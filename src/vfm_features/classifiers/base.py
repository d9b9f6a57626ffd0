"""What the pixel and object classifiers share: components, parameter checks, signatures, pickling, saving.

A classifier is a scikit-learn estimator that composes registered parts:
an extractor (name or instance), for pixel extractors an upsampler, and a head
(name or instance). Parameters are stored by ``__init__`` only and checked at
``fit``; everything learned ends in ``_``. With ``reduce=k`` the embedding
channels are reduced to ``k`` principal components before upsampling
(:mod:`vfm_features.features.reduce`), fitted on the training images' embeddings.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from vfm_features.errors import ExtractorMismatchError, InputError
from vfm_features.extractor import accepted_options
from vfm_features.features.reduce import ChannelPCA, ReducedUpsampler
from vfm_features.features.source import LastEmbedding, build_extractor, embed_plane
from vfm_features.hashing import canonical_json
from vfm_features.registry import default_registry, get_head, get_upsampler
from vfm_features.validation import (
    check_bool,
    check_budget,
    check_int,
    check_n_jobs,
    check_name_or_instance,
    check_options_dict,
    check_random_state,
)

_SAMPLE_LIMIT = 100_000  # pixels per plane used to estimate its intensity range
_KEEP_EMBEDDINGS = 256 << 20  # bytes of training embeddings kept between fitting the reduction and reading features


class IntensityWarning(UserWarning):
    """An image to predict has intensities far outside those the classifier was trained on."""


def intensity_range(plane: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel 1st and 99th percentiles of a (Y, X, C) plane (on a subsample of large planes)."""
    flat = plane.reshape(-1, plane.shape[-1])
    step = max(1, len(flat) // _SAMPLE_LIMIT)
    lo, hi = np.percentile(flat[::step].astype(np.float64), [1, 99], axis=0)
    return [float(v) for v in lo], [float(v) for v in hi]


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two signatures differ, as 'path: a vs b' lines (values shortened)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += differences(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        return out
    if a == b:
        return []

    def short(v: Any) -> str:
        text = json.dumps(v, sort_keys=True, default=repr)
        return text if len(text) <= 60 else text[:57] + "..."

    return [f"{path or 'signature'}: {short(a)} vs {short(b)}"]


def _rescaled(tl: float, th: float, lo: float, hi: float, factor: float = 1.8) -> bool:
    """True when an image's 1..99 % intensity range looks like the training range rescaled or shifted away.

    A darker or brighter field of view of the same acquisition keeps its background
    level (1st percentile) and overlaps the training range; a rescaled image (0..1
    instead of uint16, twice the exposure) moves both ends by one factor or leaves
    the range altogether.
    """
    if hi < tl or lo > th:
        return True
    if hi > 3 * th > 0:
        return True
    if tl > 0 and th > 0 and lo > 0:
        up = lo / tl >= factor and hi / th >= factor
        down = lo / tl <= 1 / factor and hi / th <= 1 / factor
        return up or down
    return False


class BaseClassifier(ClassifierMixin, BaseEstimator):
    """Shared machinery of :class:`PixelClassifier` and :class:`ObjectClassifier`."""

    _kind = "pixel"
    # everything fit() learns; set_params() + fit() start from none of it
    _LEARNED = ("classes_", "head_", "extractor_", "upsampler_", "signature_", "n_features_in_", "feature_names_",
                "n_training_pixels_", "n_training_objects_", "intensity_range_", "reduction_")

    # -- parameters -------------------------------------------------------------------------
    def _check_params(self) -> None:
        check_name_or_instance(self.extractor, "extractor", "extractor")
        check_name_or_instance(self.upsampler, "upsampler", "upsampler")
        check_name_or_instance(self.head, "head", "head")
        for name in ("extractor_options", "upsampler_options", "head_options"):
            check_options_dict(getattr(self, name), name)
        check_budget(self.budget)
        check_int(self.reduce, "reduce", allow_none=True,
                  hint="the number of principal components of the embedding channels, e.g. 16, or None")
        check_n_jobs(self.n_jobs)
        check_random_state(self.random_state)
        if not isinstance(self.progress, bool) and not callable(self.progress):
            raise InputError(f"progress must be True, False or a callable(done, total); got {self.progress!r}.")

    def set_params(self, **params: Any) -> "BaseClassifier":
        """Set parameters; a fitted classifier forgets what it learned (call fit again)."""
        super().set_params(**params)
        self._reset()
        return self

    # -- components ---------------------------------------------------------------------------
    def _components(self) -> tuple[Any, Any]:
        """(extractor, upsampler) in use; built from the parameters the first time.

        Once a channel reduction is fitted, the upsampler returned reads the reduced
        embedding (:class:`ReducedUpsampler` around ``upsampler_``).
        """
        if getattr(self, "extractor_", None) is None:
            extractor = build_extractor(self.extractor, self.extractor_options)
            self._check_extractor_kind(extractor)
            self.extractor_ = extractor
        if getattr(self, "upsampler_", None) is None:
            self.upsampler_ = (get_upsampler(self.upsampler, **(self.upsampler_options or {}))
                               if getattr(self.extractor_, "kind", "pixel") == "pixel" else None)
        reduction = getattr(self, "reduction_", None)
        if reduction is None or self.upsampler_ is None:
            return self.extractor_, self.upsampler_
        reduced = getattr(self, "_reduced", None)
        if reduced is None or reduced.reduction is not reduction or reduced.upsampler is not self.upsampler_:
            reduced = self._reduced = ReducedUpsampler(reduction, self.upsampler_)
        return self.extractor_, reduced

    def _fit_reduction(self, extractor: Any, planes: list[np.ndarray]) -> dict[int, Any]:
        """Fit ``reduction_`` (reduce=k) on the embeddings of ``planes``; returns the embeddings it could keep.

        Embeddings are kept (by position in ``planes``) while they take less than
        256 MiB in all, so that reading features does not embed those images twice.
        """
        if getattr(extractor, "kind", "pixel") != "pixel":
            raise InputError(f"reduce={self.reduce} reduces the channels of an embedding, but {extractor.name} "
                             "computes object features itself; drop reduce or use a pixel extractor.")
        if getattr(extractor, "volumetric", False):
            raise InputError(f"reduce={self.reduce} is not supported with a volumetric extractor (3D filters); "
                             "drop reduce, or use ndim=2.")
        kept: dict[int, Any] = {}
        size = 0

        def embeddings():
            nonlocal size
            for i, plane in enumerate(planes):
                emb = self._embed(extractor, plane)
                if size + emb.data.nbytes <= _KEEP_EMBEDDINGS:
                    kept[i] = emb
                    size += emb.data.nbytes
                yield emb

        self.reduction_ = ChannelPCA(self.reduce).fit(embeddings())
        return kept

    def _check_extractor_kind(self, extractor: Any) -> None:
        pass

    def _new_head(self) -> Any:
        """A fresh head; the classifier's ``random_state`` and ``n_jobs`` go to heads that take them."""
        if not isinstance(self.head, str):
            from sklearn.base import clone

            return clone(self.head)
        options = dict(self.head_options or {})
        spec = default_registry().head_spec(self.head, self._kind)
        accepted = accepted_options(spec.load_factory(), spec.options)
        for key in ("random_state", "n_jobs"):
            if key in accepted and key not in options:
                options[key] = getattr(self, key)
        return get_head(self.head, self._kind, **options)

    def _memo(self) -> LastEmbedding:
        if getattr(self, "_last_embedding", None) is None:
            self._last_embedding = LastEmbedding()
        return self._last_embedding

    def _embed(self, extractor: Any, plane: np.ndarray) -> Any:
        return embed_plane(extractor, plane, self.cache, self._memo())

    def _reset(self) -> None:
        self._samples: dict = {}
        self._intensities: dict = {}
        self.__dict__.pop("_last_embedding", None)
        self.__dict__.pop("_reduced", None)
        self.__dict__.pop("_intensity_warned", None)
        for attr in self._LEARNED:
            self.__dict__.pop(attr, None)

    def _start_partial_fit(self) -> None:
        """Refuse to extend a loaded classifier, whose training samples were not saved."""
        if not hasattr(self, "_samples"):
            if hasattr(self, "head_"):
                raise InputError(
                    "This classifier was loaded from a file, which keeps the head but not its training "
                    "samples, so partial_fit cannot add to them; call fit() with all the labels instead.")
            self._reset()

    # -- signatures ---------------------------------------------------------------------------
    def _current_signature(self) -> dict[str, Any]:
        extractor, _ = self._components()
        sig = {"extractor": extractor.signature()}
        if self.upsampler_ is not None:
            sig["upsampler"] = self.upsampler_.signature()
        if getattr(self, "reduction_", None) is not None:
            sig["reduce"] = self.reduction_.signature()
        return sig

    def _check_signature(self) -> None:
        """The features at prediction must be those of training: same extractor, options, weights, upsampler."""
        expected = getattr(self, "signature_", None)
        current = json.loads(canonical_json(self._current_signature()))
        if expected is not None and current != expected:
            diff = differences(expected, current)
            shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
            raise ExtractorMismatchError(
                f"This classifier was trained on other features than it is applied with ({shown}: trained "
                "with the first, now the second). Use the same extractor, options, weights, plugin version and "
                "upsampler (and channel reduction) as in training, or retrain.")

    # -- intensities --------------------------------------------------------------------------
    def _record_intensity(self, key: Any, plane: np.ndarray) -> None:
        self._intensities[key] = intensity_range(plane)

    def _intensity_summary(self) -> dict[str, Any] | None:
        values = list(self._intensities.values())
        if not values or len({len(v[0]) for v in values}) != 1:
            return None
        lo = np.min([v[0] for v in values], axis=0)
        hi = np.max([v[1] for v in values], axis=0)
        return {"p1": [float(v) for v in lo], "p99": [float(v) for v in hi]}

    def _raw_intensity_features(self) -> bool:
        """True when the extractor's features depend on raw intensities (no per-image scaling)."""
        extractor = self.extractor_
        return getattr(extractor, "options", {}).get("normalization", "none") in ("none", "dtype")

    def _warn_intensity(self, plane: np.ndarray) -> None:
        train = getattr(self, "intensity_range_", None)
        if (train is None or getattr(self, "_intensity_warned", False) or not self._raw_intensity_features()
                or len(train["p1"]) != plane.shape[-1]):
            return
        lo, hi = intensity_range(plane)
        for c, (tl, th, l, h) in enumerate(zip(train["p1"], train["p99"], lo, hi)):
            if _rescaled(tl, th, l, h):
                self._intensity_warned = True
                warnings.warn(
                    f"Channel {c} of this image has intensities {l:.4g}..{h:.4g} (1st..99th percentile), far "
                    f"from the {tl:.4g}..{th:.4g} the classifier was trained on, and {self.extractor_.name} uses "
                    "raw intensities: predictions may be wrong. Train and predict on images of the same "
                    "intensity scale, or train with extractor_options={'normalization': 'percentile'} (per-image "
                    "scaling; see docs/security.md and the extractor's options).", IntensityWarning, stacklevel=4)
                return

    # -- pickling and saving ----------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else dict(self.__dict__)
        state = dict(state)
        state.pop("_last_embedding", None)  # embeddings are large and recomputable
        if "_samples" in state:
            state["_samples"] = {k: s.without_embeddings() for k, s in state["_samples"].items()}
        return state

    def save(self, path: Any) -> Any:
        """Save to a ``.vfmc`` file (JSON metadata + numeric arrays); see :func:`vfm_features.load_classifier`."""
        from .fileformat import save_classifier

        return save_classifier(self, path)

    def _finish_fit(self, head: Any, signature: dict[str, Any]) -> None:
        self.head_ = head
        self.classes_ = np.asarray(head.classes_)
        self.n_features_in_ = int(head.n_features_in_)
        self.signature_ = json.loads(canonical_json(signature))  # as a file stores it
        self.intensity_range_ = self._intensity_summary()


def check_progress(progress: Any) -> Any:
    return progress if callable(progress) else check_bool(progress, "progress")
