"""The napari dock widget: pick an Image and a Labels layer, an extractor, upsampler and head; train and predict.

The work runs in napari's ``thread_worker`` (a generator: each step it yields moves the
progress bar), so the viewer stays responsive while a model embeds the image. The result is
a Labels layer ``vfm segmentation`` (the stroke ids, so the colours match) and, when asked,
one Image layer of probabilities per class. Registered in ``napari.yaml`` (npe2).
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

import vfm_features as vf

from vfm_napari.session import Progress, Result, Session, Settings

SEGMENTATION = "vfm segmentation"
_STAGES = ("embedding", "training", "predicting")


class _Failure:
    def __init__(self, error: Exception) -> None:
        self.error = error


def _guarded(session: Session, *args: Any, **kwargs: Any) -> Generator[Progress, None, Result | _Failure]:
    """The session's steps, with an error returned rather than raised.

    superqt's worker drops a RuntimeError raised in the thread (it takes it for a deleted Qt
    object) without emitting ``errored`` or ``finished``; WeightsError is a RuntimeError.
    """
    try:
        return (yield from session.steps(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - every error is shown to the user
        return _Failure(exc)


class ClassifierWidget(QWidget):
    """Pixel classification with any registered extractor, upsampler and head on the layers you draw."""

    def __init__(self, napari_viewer: Any, *, session: Session | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session or Session()
        self.worker: Any = None
        self.last_result: Result | None = None

        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        self.extractor_combo = QComboBox()
        self.extractor_combo.addItems(vf.list_extractors(kind="pixel"))
        self.extractor_combo.setCurrentText(Settings.extractor)  # the filter bank when it is installed
        self.upsampler_combo = QComboBox()
        self.upsampler_combo.addItems(vf.list_upsamplers())
        self.upsampler_combo.setCurrentText(Settings.upsampler)
        self.head_combo = QComboBox()
        self.head_combo.addItems(vf.list_heads("pixel"))
        self.head_combo.setCurrentText(Settings.head)
        self.trees = QSpinBox()
        self.trees.setRange(1, 1000)
        self.trees.setValue(64)
        self.trees.setToolTip("Trees of the forest heads (rf, rf-reference)")
        self.probabilities = QCheckBox("add probability layers")
        self.run_button = QPushButton("Train and predict")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Draw strokes of two or more labels, then train.")
        self.status.setWordWrap(True)

        form = QFormLayout(self)
        form.addRow("image", self.image_combo)
        form.addRow("strokes", self.labels_combo)
        form.addRow("extractor", self.extractor_combo)
        form.addRow("upsampler", self.upsampler_combo)
        form.addRow("head", self.head_combo)
        form.addRow("trees", self.trees)
        form.addRow(self.probabilities)
        form.addRow(self.run_button)
        form.addRow(self.progress)
        form.addRow(self.status)

        self.run_button.clicked.connect(self.run)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    # -- layers --------------------------------------------------------------------------------
    def _refresh_layers(self, *_: Any) -> None:
        from napari.layers import Image, Labels

        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            current = combo.currentText()
            names = [layer.name for layer in self.viewer.layers
                     if isinstance(layer, kind) and not layer.name.startswith("vfm ")]
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)

    def settings(self) -> Settings:
        head = self.head_combo.currentText()
        options = {"n_estimators": self.trees.value()} if head in ("rf", "rf-reference") else {}
        return Settings(extractor=self.extractor_combo.currentText(), upsampler=self.upsampler_combo.currentText(),
                        head=head, head_options=options, probabilities=self.probabilities.isChecked())

    # -- running -------------------------------------------------------------------------------
    def run(self) -> Any:
        """Start training and prediction in a worker thread; returns the worker (None if nothing to do)."""
        from napari.qt.threading import thread_worker

        if self.worker is not None:
            return None
        names = [layer.name for layer in self.viewer.layers]
        image_name, labels_name = self.image_combo.currentText(), self.labels_combo.currentText()
        if image_name not in names or labels_name not in names:
            self.status.setText("Choose an image layer and a labels layer with strokes.")
            return None
        image_layer, labels_layer = self.viewer.layers[image_name], self.viewer.layers[labels_name]
        image = np.asarray(image_layer.data)
        strokes = np.array(labels_layer.data, copy=True)  # the user may draw on while we train
        worker = thread_worker(_guarded, ignore_errors=True)(self.session, image, strokes, self.settings(),
                                                             rgb=bool(image_layer.rgb))
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_result)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.setEnabled(False)
        self.progress.setRange(0, 0)  # busy until the first step reports
        self.status.setText(f"Embedding with {self.extractor_combo.currentText()}...")
        worker.start()
        return worker

    def _on_progress(self, step: Progress) -> None:
        share = (_STAGES.index(step.stage) + step.done / max(step.total, 1)) / len(_STAGES)
        self.progress.setRange(0, 100)
        self.progress.setValue(round(100 * share))
        self.status.setText(f"{step.stage} {step.done}/{step.total}")

    def _on_result(self, result: Result | _Failure) -> None:
        if isinstance(result, _Failure):
            self._on_error(result.error)
            return
        self.last_result = result
        self._set_layer(SEGMENTATION, result.classes, kind="labels")
        if result.probabilities is not None:
            for class_id, proba in zip(result.class_ids, result.probabilities):
                self._set_layer(f"vfm p(class {int(class_id)})", proba, kind="image")
        s = result.seconds
        self.status.setText(f"Done: embedding {s['embedding']:.1f} s, training {s['training']:.1f} s, "
                            f"prediction {s['predicting']:.1f} s.")

    def _set_layer(self, name: str, data: np.ndarray, *, kind: str) -> None:
        if name in [layer.name for layer in self.viewer.layers]:
            layer = self.viewer.layers[name]
            if layer.data.shape == data.shape:
                layer.data = data
                return
            self.viewer.layers.remove(layer)
        if kind == "labels":
            self.viewer.add_labels(data, name=name, opacity=0.5)
        else:
            self.viewer.add_image(data, name=name, colormap="magma", blending="additive", visible=False,
                                  contrast_limits=(0.0, 1.0))

    def _on_error(self, exc: Exception) -> None:
        self.status.setText(f"Error: {exc}")
        try:
            from napari.utils.notifications import show_error

            show_error(str(exc))
        except Exception:  # noqa: BLE001 - the status line already says it
            pass

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
