"""A third-party plugin (tests/toy_plugin/vfm_toy.py), installed through entry points as pip would, works like a built-in.

It registers an extractor, a model extractor, an upsampler and a pixel and an
object head; they work through the classifiers, save/load, evaluation and the
command line, pass the conformance checks, and their provenance is recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import vfm_features as vf
import vfm_features.registry as registry_module
from plugin_tools import install_toy
from vfm_features import ExtractorMismatchError, UnknownExtractorError, load_classifier
from vfm_features.evaluation.datasets import synthetic_dataset
from vfm_features.evaluation.evaluate import evaluate
from vfm_features.evaluation.protocol import Protocol
from vfm_features.testing import check_extractor


def _use(monkeypatch, site):
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "vfm_toy", raising=False)
    reg = registry_module.Registry()
    monkeypatch.setattr(registry_module, "_default_registry", reg)
    return reg


@pytest.fixture
def toy(tmp_path, monkeypatch):
    site = install_toy(tmp_path / "site")
    reg = _use(monkeypatch, site)
    yield site
    sys.modules.pop("vfm_toy", None)


def test_everything_it_registers_is_listed(toy):
    assert "toy:blocks" in vf.list_extractors() and vf.get_spec("toy").name == "toy:blocks"
    assert "nearest" in vf.list_upsamplers()
    assert "centroid" in vf.list_heads("pixel") and "centroid" in vf.list_heads("object")
    spec = vf.get_spec("toy:blocks")
    assert (spec.distribution, spec.plugin_version) == ("vfm-toy", "0.1")


def test_its_extractors_pass_the_conformance_checks(toy):
    check_extractor("toy:blocks")
    check_extractor("toy:blocks", block=8, channels=(1, 2))


@pytest.mark.torch
def test_its_model_extractor_passes_and_takes_any_channel_count(toy):
    pytest.importorskip("torch")
    ran = check_extractor("toy:conv", device="cpu", channels=(1, 2, 3, 4))
    assert "two threads" in ran
    two = vf.get_extractor("toy:conv", device="cpu", channels="per_channel").embed(
        np.random.default_rng(0).random((40, 50, 2)).astype(np.float32))
    assert two.n_features == 16 and two.image_shape == (40, 50)
    with pytest.raises(vf.UnknownOptionError, match="chanels.*channels"):
        vf.get_extractor("toy:conv", chanels="sum")


def test_pixel_classifier_with_its_parts_saves_and_loads(toy, tmp_path, small_data):
    d, t = small_data[0], small_data[1]
    clf = vf.PixelClassifier("toy:blocks", upsampler="nearest", head="centroid", working_shape=(48, 48)).fit(
        d.image, d.scribbles(0.05, random_state=0))
    assert type(clf.head_).__name__ == "CentroidPixelHead" and clf.score(t.image, t.semantic) > 0.3
    clf.save(tmp_path / "toy.vfmc")
    meta = vf.read_metadata(tmp_path / "toy.vfmc")
    assert meta["head"]["name"] == "centroid" and meta["upsampler"]["name"] == "nearest"
    assert meta["extractor"]["provenance"] == {"distribution": "vfm-toy", "version": "0.1"}
    loaded = load_classifier(tmp_path / "toy.vfmc")
    np.testing.assert_array_equal(loaded.predict_proba(t.image), clf.predict_proba(t.image))


def test_object_classifier_with_its_parts(toy, tmp_path, small_data):
    d = small_data[0]
    clf = vf.ObjectClassifier("toy:blocks", upsampler="nearest", head="centroid").fit(d.image, d.instances,
                                                                                     d.object_classes)
    clf.save(tmp_path / "obj.vfmc")
    ids, proba = load_classifier(tmp_path / "obj.vfmc").predict_proba(d.image, d.instances)
    np.testing.assert_array_equal(proba, clf.predict_proba(d.image, d.instances)[1])


def test_evaluation_takes_its_head_and_upsampler(toy):
    ds = synthetic_dataset(3, (64, 64), random_state=0)
    res = evaluate(ds, extractors=["toy:blocks"], heads=["rf", "centroid"], tasks=["pixels"], pixel_budgets=[50],
                   protocol=Protocol(n_folds=2, n_repeats=1), pixels_per_image=300, upsampler="nearest", n_jobs=1)
    assert {r.head for r in res.rows} == {"rf", "centroid"}
    assert all(np.isfinite(r.macro_f1) for r in res.rows)


def test_uninstalled_plugin_is_named_and_a_new_version_is_a_new_signature(toy, tmp_path, monkeypatch, small_data):
    d = small_data[0]
    clf = vf.PixelClassifier("toy:blocks", head="centroid").fit(d.image, d.scribbles(0.05, random_state=0))
    clf.save(tmp_path / "toy.vfmc")
    monkeypatch.syspath_prepend(str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(toy)])
    monkeypatch.delitem(sys.modules, "vfm_toy", raising=False)
    monkeypatch.setattr(registry_module, "_default_registry", registry_module.Registry())
    with pytest.raises(UnknownExtractorError, match="vfm-toy 0.1.*pip install 'vfm-toy'"):
        load_classifier(tmp_path / "toy.vfmc")
    _use(monkeypatch, install_toy(tmp_path / "site2", version="0.2"))
    with pytest.raises(ExtractorMismatchError, match="version"):
        load_classifier(tmp_path / "toy.vfmc")


def test_the_command_line_uses_it(toy, tmp_path, small_data):
    tifffile = pytest.importorskip("tifffile")
    d = small_data[0]
    tifffile.imwrite(tmp_path / "img.tif", d.image)
    tifffile.imwrite(tmp_path / "lab.tif", d.scribbles(0.05, random_state=0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy), os.environ.get("PYTHONPATH", "")])}

    def cli(*args):
        code = "import sys; from vfm_features.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path)

    listing = cli("list", "--heads")
    assert listing.returncode == 0 and "centroid" in listing.stdout, listing.stderr
    train = cli("train", "pixels", "--images", "img.tif", "--labels", "lab.tif", "-e", "toy:blocks",
                "--upsampler", "nearest", "--head", "centroid", "-o", "toy.vfmc")
    assert train.returncode == 0, train.stderr
    predict = cli("predict", "toy.vfmc", "--images", "img.tif", "-o", "out")
    assert predict.returncode == 0, predict.stderr
    assert (tmp_path / "out" / "img_classes.tif").exists()
