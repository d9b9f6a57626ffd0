"""The random forest as ONNX: conversion with skl2onnx, prediction with onnxruntime (the ``rf-onnx`` heads).

:func:`forest_to_onnx` turns a fitted scikit-learn forest into an ONNX graph of
one ``ai.onnx.ml`` TreeEnsembleClassifier (float32 input, probabilities out, no
ZipMap). The ``rf-onnx`` heads fit exactly as ``rf`` (the same forest, saved as
the same checked arrays: a classifier file never holds a graph) and predict
through onnxruntime; the graph is rebuilt from the forest when first needed.

Agreement with the native head (tests/test_onnx.py): the split decisions are
identical - skl2onnx stores float32 thresholds that send every float32 input
the way scikit-learn's float64 thresholds do, also at and next to a threshold -
and the probabilities are summed in float32 instead of float64, so they differ
by at most :data:`PROBABILITY_TOLERANCE` (measured: 2e-7); the predicted class
is the same wherever the two largest probabilities differ by more than that.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from vfm_features.errors import InputError
from vfm_features.threads import n_threads

from .forest_heads import ForestObjectHead, ForestPixelHead

__all__ = ["PROBABILITY_TOLERANCE", "OnnxForestObjectHead", "OnnxForestPixelHead", "forest_to_onnx",
           "forest_session"]

#: largest difference between onnxruntime's and scikit-learn's forest probabilities that the tests allow
PROBABILITY_TOLERANCE = 1e-5
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
_CONVERT = threading.Lock()


def forest_to_onnx(forest: Any, n_features: int) -> bytes:
    """A fitted RandomForestClassifier as serialised ONNX: input "X" (n, F) float32; outputs label, probabilities."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    model = to_onnx(forest, initial_types=[("X", FloatTensorType([None, int(n_features)]))],
                    options={id(forest): {"zipmap": False}}, target_opset=TARGET_OPSET)
    return model.SerializeToString()


def forest_session(model: bytes, n_jobs: int | None = -1) -> Any:
    """An onnxruntime session for a forest graph on the CPU, with ``n_jobs`` threads (scikit-learn's convention)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = n_threads(n_jobs)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


class _OnnxPrediction:
    """Prediction of a fitted forest through onnxruntime; the graph is built on first use and never pickled."""

    def fit(self, samples: Any) -> Any:
        self.__dict__.pop("_onnx", None)
        return super().fit(samples)  # type: ignore[misc]

    def _onnx_session(self) -> Any:
        with _CONVERT:
            if self.__dict__.get("_onnx") is None:
                self._onnx = forest_session(forest_to_onnx(self.forest_, self.n_features_in_), self.n_jobs)
            return self._onnx

    def predict_rows(self, X: np.ndarray) -> np.ndarray:
        """(n, K) float32 probabilities of feature rows ``X`` (n, F), computed by onnxruntime."""
        if X.shape[1] != self.n_features_in_:
            raise InputError(f"The input gives {X.shape[1]} features but the head was trained on "
                             f"{self.n_features_in_}; use images with the same channels as in training.")
        session = self._onnx_session()
        if len(X) == 0:
            return np.zeros((0, len(self.classes_)), np.float32)
        proba = session.run(["probabilities"], {"X": np.ascontiguousarray(X, dtype=np.float32)})[0]
        return np.asarray(proba, np.float32)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        state.pop("_onnx", None)
        return state


class OnnxForestPixelHead(_OnnxPrediction, ForestPixelHead):
    """``rf`` for pixels (64 trees of depth 10, at most 4096 labels per tree), predicted by onnxruntime."""


class OnnxForestObjectHead(_OnnxPrediction, ForestObjectHead):
    """``rf`` for objects (200 trees grown to pure leaves), predicted by onnxruntime."""
