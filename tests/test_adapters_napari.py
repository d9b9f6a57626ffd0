"""The napari adapter: the Qt-free session everywhere, the dock widget headless where napari is installed.

The widget tests use napari's ``make_napari_viewer`` and pytest-qt's ``qtbot`` fixtures. napari's
canvas needs OpenGL, which Qt's offscreen platform lacks, so they need a display: run them under
``xvfb-run -a python -m pytest tests/test_adapters_napari.py`` on a machine without one. They are
skipped where napari or pytest-qt is missing, or where there is no display.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import vfm_features as vf
from vfm_napari import Progress, Session, Settings, image_axes

FAST = Settings(head_options={"n_estimators": 10}, probabilities=True)


@pytest.fixture(scope="module")
def data():
    d = vf.make_synthetic(2, (64, 64), random_state=5)
    return d, d[0].scribbles(0.05, random_state=0)


def counting(session: Session, name: str) -> list:
    ext = session.extractor(name)
    embed, calls = ext.embed_plane, []
    ext.embed_plane = lambda *a, **k: (calls.append(1), embed(*a, **k))[1]
    return calls


# -- the session, without Qt ----------------------------------------------------------------------
def test_session_trains_predicts_and_reports_each_step(tmp_path, data):
    pytest.importorskip("zarr")
    d, strokes = data
    session = Session(tmp_path / "cache.zarr")
    calls = counting(session, "filters:default")
    steps: list[Progress] = []
    result = session.run(d[0].image, strokes, FAST, progress=steps.append)
    assert [s.stage for s in steps] == ["embedding", "training", "training", "predicting"]
    assert result.classes.shape == (64, 64) and list(result.class_ids) == [1, 2, 3, 4]
    assert result.probabilities.shape == (4, 64, 64)
    assert vf.macro_f1(d[0].semantic, result.classes) > 0.6
    assert calls == [1]
    more = np.where(strokes > 0, strokes, d[0].scribbles(0.05, random_state=1))
    session.run(d[0].image, more, Settings(head="rf-reference", head_options={"n_estimators": 5}))
    assert calls == [1], "retraining recomputed the embedding"


def test_session_takes_rgb_images_and_stacks(data):
    d, strokes = data
    session = Session()
    rgb = np.repeat(d[0].image[..., None], 3, axis=-1)
    assert image_axes(rgb, rgb=True) == "YXC"
    assert session.run(rgb, strokes, FAST, rgb=True).classes.shape == (64, 64)
    stack = np.stack([d[0].image, d[1].image])
    labels = np.stack([strokes, np.zeros_like(strokes)])
    result = session.run(stack, labels, FAST)
    assert result.classes.shape == (2, 64, 64) and result.probabilities.shape == (4, 2, 64, 64)
    with pytest.raises(vf.InputError, match="labels layer has shape"):
        session.run(d[0].image, strokes[:10], FAST)
    with pytest.raises(vf.InputError, match="2D images, RGB images and 3D stacks"):
        session.run(np.zeros((2, 2, 8, 8)), np.zeros((2, 2, 8, 8), int), FAST)
    session.close()


# -- the widget, headless ---------------------------------------------------------------------------
@pytest.fixture
def gui(request):
    """(viewer, qtbot), asked for only once napari, pytest-qt and a display are known to be there."""
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        pytest.skip("napari's canvas needs OpenGL and so a display; run under xvfb-run -a")
    return request.getfixturevalue("make_napari_viewer")(), request.getfixturevalue("qtbot")


def test_the_manifest_names_the_widget():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("vfm-features")
    widget = manifest.contributions.widgets[0]
    command = next(c for c in manifest.contributions.commands if c.id == widget.command)
    module, name = command.python_name.split(":")
    pytest.importorskip("qtpy")
    import importlib

    assert getattr(importlib.import_module(module), name).__name__ == "ClassifierWidget"


def test_the_widget_trains_in_a_worker_while_the_viewer_stays_live(gui, data):
    from qtpy.QtCore import QTimer

    from vfm_napari.widget import SEGMENTATION, ClassifierWidget

    viewer, qtbot = gui
    d, strokes = data
    viewer.add_image(d[0].image, name="cells")
    viewer.add_labels(strokes, name="strokes")
    widget = ClassifierWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image_combo.currentText() == "cells" and widget.labels_combo.currentText() == "strokes"
    widget.trees.setValue(10)
    widget.probabilities.setChecked(True)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(1)
    with qtbot.waitSignal(widget.run_button.clicked, timeout=1000):
        widget.run_button.click()
    assert not widget.run_button.isEnabled()  # running
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    timer.stop()
    assert ticks, "the Qt event loop did not run while the worker worked"
    assert widget.status.text().startswith("Done"), widget.status.text()
    assert widget.progress.value() == widget.progress.maximum() == 100
    assert widget.run_button.isEnabled()
    segmentation = viewer.layers[SEGMENTATION].data
    assert vf.macro_f1(d[0].semantic, segmentation) > 0.6
    assert [layer.name for layer in viewer.layers if layer.name.startswith("vfm p(")] == [
        f"vfm p(class {k})" for k in (1, 2, 3, 4)]
    assert SEGMENTATION not in [widget.labels_combo.itemText(i) for i in range(widget.labels_combo.count())]
    # again, after more strokes: the layer is updated in place
    viewer.layers["strokes"].data = np.where(strokes > 0, strokes, d[0].scribbles(0.05, random_state=1))
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert len([layer for layer in viewer.layers if layer.name == SEGMENTATION]) == 1


def test_the_widget_reports_errors(gui, data):
    from vfm_napari.widget import ClassifierWidget

    viewer, qtbot = gui
    d, _ = data
    viewer.add_image(d[0].image, name="cells")
    viewer.add_labels(np.zeros((64, 64), np.int32), name="nothing drawn")
    widget = ClassifierWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.status.text().startswith("Error:") and widget.run_button.isEnabled()
    assert "vfm segmentation" not in viewer.layers


def test_a_weights_error_in_the_worker_is_reported_too(gui, data):
    """WeightsError is a RuntimeError, which superqt's worker would otherwise drop silently."""
    from vfm_napari.widget import ClassifierWidget

    class Offline(Session):
        def steps(self, *args, **kwargs):
            yield Progress("embedding", 0, 1)
            raise vf.WeightsError("Downloading weights for x failed; pass weights=PATH.")

    viewer, qtbot = gui
    d, strokes = data
    viewer.add_image(d[0].image, name="cells")
    viewer.add_labels(strokes, name="strokes")
    widget = ClassifierWidget(viewer, session=Offline())
    viewer.window.add_dock_widget(widget)
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.status.text() == "Error: Downloading weights for x failed; pass weights=PATH."
    assert widget.run_button.isEnabled()
