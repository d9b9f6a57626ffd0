"""bioimage.io model packages of pixel and object classifiers (adapters/vfm_bioimageio), tested with bioimageio.core.

Two packages are built per module (a pixel classifier through the command, an object
classifier through Python), from a tiny random DINOv3 (no download) trained on the
synthetic data, and everything runs with the network cut: every socket connection
raises. Each package must pass ``bioimageio.core``'s model test, and
``bioimageio.core``'s prediction of an image of another size must equal the library's.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import socket
import zipfile

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")
pytest.importorskip("onnxscript")
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import vfm_features as vf  # noqa: E402
from vfm_features.errors import InputError  # noqa: E402

from vfm_bioimageio import (  # noqa: E402
    check_exportable,
    check_object_exportable,
    package_object_classifier,
    package_pixel_classifier,
)
from vfm_bioimageio.cli import main  # noqa: E402
from vfm_features.cli import main as vfm_features_main  # noqa: E402
from vfm_bioimageio.object_graph import object_module  # noqa: E402
from vfm_bioimageio.tree_ensemble import float32_thresholds, forest_module  # noqa: E402

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
        "num_register_tokens": 4}
EXTRACTOR = {"config": TINY, "pretrained": False, "device": "cpu", "input_size": 64}
TOLERANCE = 1e-4
MISMATCH_PPM = 1000  # what the packages declare: elements (per million) allowed to differ by more than TOLERANCE


def assert_agrees(got, expected, n_trees=None):
    """The graph agrees with the library: at most MISMATCH_PPM elements per million beyond TOLERANCE, and those
    by at most the vote of one tree in each of two probabilities (a feature within rounding of a split)."""
    diff = np.abs(np.asarray(got, np.float64) - expected)
    assert 1e6 * np.count_nonzero(diff > TOLERANCE) / diff.size <= MISMATCH_PPM
    if n_trees is not None:
        assert diff.max() <= 2 / n_trees + TOLERANCE


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No test here may reach the network: connecting a socket raises."""
    patch = pytest.MonkeyPatch()

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket, "create_connection", refuse)
    patch.setenv("VFM_FEATURES_OFFLINE", "1")
    patch.setenv("HF_HUB_OFFLINE", "1")
    yield
    patch.undo()


@pytest.fixture(scope="module")
def data():
    return vf.make_synthetic(2, (64, 64), random_state=3)


@pytest.fixture(scope="module")
def classifier(data):
    d = data[0]
    clf = vf.PixelClassifier("dinov3:vits16", extractor_options=EXTRACTOR, head_options={"n_estimators": 8},
                             n_jobs=1, random_state=0)
    return clf.fit(d.image, d.scribbles(0.05, random_state=0))


@pytest.fixture(scope="module")
def package(classifier, data, tmp_path_factory):
    """The package, built once through the command from the saved classifier (so loading is covered too)."""
    folder = tmp_path_factory.mktemp("pkg")
    classifier.save(folder / "clf.vfmc")
    np.save(folder / "test.npy", data[0].image)
    path = folder / "pixels.zip"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # through the core's command line: the adapter's command comes from the entry-point group
        code = vfm_features_main(["package-bioimageio", str(folder / "clf.vfmc"), "-o", str(path), "--test-image",
                                  str(folder / "test.npy"), "--author", "Test Author", "-O",
                                  "config=" + json.dumps(TINY)])
    assert code == 0
    return path, json.loads(out.getvalue())


def _rdf(path) -> dict:
    import yaml

    with zipfile.ZipFile(path) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


# -- the package ----------------------------------------------------------------------------------------
def test_package_passes_bioimageio_model_test_offline(package):
    from bioimageio.core import test_model

    path, summary = package
    result = test_model(path)
    assert result.status == "passed", result.format()
    names = [d.name for d in result.details]
    assert any("batch_size: 2" in n for n in names)  # dynamic batch
    assert sum("size parameter n: 2" in n for n in names) == 2  # and sizes min + 2 * step, batch 1 and 2
    assert summary["mismatched_per_million"] <= MISMATCH_PPM


def test_bioimageio_prediction_equals_the_library_at_another_size(package, classifier, data):
    from bioimageio.core import predict

    image = data[1].image[3:50, 5:64].astype(np.float32)  # 47 x 59: neither the test size nor the model input
    sample = predict(model=package[0], inputs={"image": image[None, None]})
    got = np.asarray(sample.members["probabilities"].data)
    expected = classifier.predict_proba(image)
    assert got.shape == (1,) + expected.shape
    assert_agrees(got[0], expected, n_trees=8)
    assert np.mean(np.argmax(got[0], axis=0) == np.argmax(expected, axis=0)) >= 0.999


def test_package_is_a_batch_of_images_through_one_graph(package, classifier, data):
    import onnxruntime as ort

    with zipfile.ZipFile(package[0]) as z:
        graph = z.read("classifier.onnx")
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    big = data[1].image[:, :].astype(np.float32)
    small = np.ascontiguousarray(big[::-1, :])
    out = session.run(None, {"image": np.stack([big, small])[:, None]})[0]
    assert out.shape == (2, len(classifier.classes_), 64, 64)
    for got, image in zip(out, (big, small)):
        assert_agrees(got, classifier.predict_proba(image), n_trees=8)


def test_package_contents_follow_the_rules(package, classifier):
    path, summary = package
    rdf = _rdf(path)
    text = json.dumps(rdf)
    assert "http://" not in text and "https://" not in text  # a URL field makes bioimageio go online
    assert all(c.get("doi") and "url" not in c for c in rdf["cite"])
    assert rdf["covers"] and rdf["documentation"] and rdf["license"] == "MIT"  # random weights
    assert rdf["authors"] == [{"name": "Test Author"}]
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    for tensor in (inp, out):
        assert tensor["id"].isidentifier() and len(tensor["id"]) <= 32
    space = [a for a in inp["axes"] if a["type"] == "space"]
    assert [a["id"] for a in space] == ["y", "x"]
    assert all(a["size"] == {"min": 16, "step": 1} and not a.get("concatenable", False) for a in space)
    channels = next(a for a in out["axes"] if a["type"] == "channel")
    assert channels["channel_names"] == [f"class_{c}" for c in classifier.classes_]
    assert list(rdf["weights"]) == ["onnx"]
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        arrays = {n: np.load(z.open(n), allow_pickle=False) for n in ("image_test.npy", "probabilities_test.npy")}
    assert not any(n.endswith((".pkl", ".pickle", ".pt", ".pth")) for n in names)
    assert {"cover.png", "README.md", "classifier.onnx"} <= names
    for a in arrays.values():
        assert np.abs(a).max() >= 1e-4
        assert all(s >= 16 for s in a.shape[2:])
    assert np.allclose(arrays["probabilities_test.npy"].sum(axis=1), 1, atol=1e-5)
    assert summary["classes"] == channels["channel_names"]


# -- refusals ---------------------------------------------------------------------------------------------
def _with(classifier, **attrs):
    other = copy.copy(classifier)
    other.__dict__.update(attrs)
    return other


def test_refuses_heads_extractors_and_options_that_do_not_export(classifier):
    class ProbeHead:  # any head without a fitted forest, such as the attentive probes
        pass

    cases = [
        (_with(classifier, head_=ProbeHead()), "head ProbeHead cannot be exported"),
        (_with(classifier, extractor_=vf.get_extractor("filters")), "not a neural-network model extractor"),
        (_with(classifier, working_shape=(32, 32)), "working_shape"),
        (_with(classifier, extractor_=vf.get_extractor("dinov3:vits16", **EXTRACTOR, normalization="percentile")),
         "percentile"),
        (_with(classifier, extractor_=vf.get_extractor("dinov3:vits16", **EXTRACTOR, channels="per_channel")),
         "per_channel"),
        (_with(classifier, extractor_=vf.get_extractor("dinov3:vits16", **{**EXTRACTOR, "input_size": None})),
         "depends on the image"),
        (_with(classifier, extractor_=vf.get_extractor("sam:vit_b", pretrained=False, device="cpu")),
         r"resize='longest'"),  # SAM: longest side to the input size, then padding
        (vf.PixelClassifier(), "not fitted"),
    ]
    for clf, message in cases:
        with pytest.raises(InputError, match=message):
            check_exportable(clf)
    check_exportable(classifier)  # the fitted one itself is fine


def test_refuses_bad_paths_and_test_images_and_never_leaves_a_partial_file(classifier, tmp_path):
    with pytest.raises(InputError, match=r"\.zip"):
        package_pixel_classifier(classifier, tmp_path / "model.yaml")
    existing = tmp_path / "old.zip"
    existing.write_bytes(b"keep")
    with pytest.raises(InputError, match="overwrite"):
        package_pixel_classifier(classifier, existing)
    with pytest.raises(InputError, match="at least 16"):
        package_pixel_classifier(classifier, tmp_path / "m.zip", test_image=np.ones((8, 40), np.float32))
    with pytest.raises(InputError, match="zeros"):
        package_pixel_classifier(classifier, tmp_path / "m.zip", test_image=np.zeros((20, 20), np.float32))
    assert existing.read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.zip"]


# -- the forest as a graph --------------------------------------------------------------------------------
def test_forest_module_matches_scikit_learn_at_and_next_to_thresholds(classifier):
    forest = classifier.head_.forest_
    module = forest_module(forest)
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((500, forest.n_features_in_)).astype(np.float32)
    thresholds = np.concatenate([e.tree_.threshold[e.tree_.feature >= 0] for e in forest.estimators_])
    features = np.concatenate([e.tree_.feature[e.tree_.feature >= 0] for e in forest.estimators_])
    for t, f in zip(thresholds[:100], features[:100]):  # rows exactly at / just past a split
        at = rows[rng.integers(len(rows))].copy()
        at[f] = float32_thresholds(np.array([t]))[0]
        past = at.copy()
        past[f] = np.nextafter(at[f], np.float32(np.inf))
        rows = np.vstack([rows, at, past])
    with torch.no_grad():
        got = module(torch.from_numpy(rows)).numpy()
    expected = forest.predict_proba(rows)
    assert np.abs(got - expected).max() < 1e-6


# -- the command ------------------------------------------------------------------------------------------
def test_command_summary_and_refusals(package, tmp_path, capsys):
    path, summary = package
    assert summary["path"] == str(path) and summary["mismatched_per_million"] <= MISMATCH_PPM
    assert summary["test_shape"] == [1, 1, 64, 64]
    clf = path.parent / "clf.vfmc"
    assert main([str(clf), "-o", str(path), "-O", "config=" + json.dumps(TINY)]) == 1  # exists, no --overwrite
    assert "overwrite" in capsys.readouterr().err
    assert main([str(clf), "-o", str(tmp_path / "x.zip"), "-O", "config"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


# -- object classifiers: image + instance mask -> class image ----------------------------------------------
@pytest.fixture(scope="module")
def object_classifier(data):
    d = data[0]
    clf = vf.ObjectClassifier("dinov3:vits16", extractor_options=EXTRACTOR, stats=["mean", "std"],
                              head_options={"n_estimators": 16}, n_jobs=1, random_state=0)
    return clf.fit(d.image, d.instances, d.object_classes)


@pytest.fixture(scope="module")
def object_package(object_classifier, data, tmp_path_factory):
    path = tmp_path_factory.mktemp("objpkg") / "objects.zip"
    summary = package_object_classifier(object_classifier, path, test_image=data[0].image,
                                        test_mask=data[0].instances)
    return path, summary


def _relabelled(mask):
    """The same objects under large, sparse ids (the graph renumbers ids; it must not depend on them)."""
    return np.where(mask > 0, mask.astype(np.int64) * 7919 + 100_003, 0)


def test_object_package_passes_bioimageio_model_test_offline(object_package):
    from bioimageio.core import test_model

    result = test_model(object_package[0])
    assert result.status == "passed", result.format()
    assert any("batch_size: 2" in d.name for d in result.details)
    assert object_package[1]["n_objects"] >= 2


def test_object_prediction_through_bioimageio_equals_the_library(object_package, object_classifier, data):
    from bioimageio.core import predict

    image = data[1].image[2:50, 3:60].astype(np.float32)
    mask = _relabelled(data[1].instances[2:50, 3:60])
    sample = predict(model=object_package[0], inputs={"image": image[None, None], "mask": mask[None]})
    expected = object_classifier.predict(image, mask)
    class_image = np.asarray(sample.members["class_image"].data)[0]
    proba = np.asarray(sample.members["probabilities"].data)[0]
    assert_agrees(class_image, expected.class_image)
    assert set(np.unique(class_image)) - {0} <= set(object_classifier.classes_.tolist())
    reference = np.zeros_like(proba)
    for i, p in zip(expected.ids, expected.probabilities):
        reference[:, mask == i] = p[:, None]
    assert_agrees(proba, reference, n_trees=16)
    assert np.all(proba[:, mask == 0] == 0)


def test_object_package_declares_two_inputs_and_no_tiling(object_package, object_classifier):
    rdf = _rdf(object_package[0])
    assert [t["id"] for t in rdf["inputs"]] == ["image", "mask"]
    assert [t["id"] for t in rdf["outputs"]] == ["class_image", "probabilities"]
    mask_axes = {a["id"]: a for a in rdf["inputs"][1]["axes"] if a["type"] == "space"}
    for axis in ("y", "x"):  # the mask has the image's size
        assert mask_axes[axis]["size"] == {"tensor_id": "image", "axis_id": axis}
    image_space = [a for a in rdf["inputs"][0]["axes"] if a["type"] == "space"]
    assert all(not a.get("concatenable", False) for a in image_space)
    assert rdf["outputs"][0]["data"]["values"] == [0] + object_classifier.classes_.tolist()
    assert "http://" not in json.dumps(rdf) and "https://" not in json.dumps(rdf)
    (tolerance,) = rdf["config"]["bioimageio"]["reproducibility_tolerance"]
    assert tolerance["mismatched_elements_per_million"] == MISMATCH_PPM
    assert tolerance["absolute_tolerance"] == TOLERANCE


def test_object_graph_reads_min_max_without_area_and_any_ids(data):
    d = data[0]
    clf = vf.ObjectClassifier("dinov3:vits16", extractor_options=EXTRACTOR, stats=["mean", "min", "max"],
                              include_area=False, head_options={"n_estimators": 4}, n_jobs=1)
    clf.fit(d.image, d.instances, d.object_classes)
    module = object_module(clf)
    for e in data:
        mask = _relabelled(e.instances)
        with torch.no_grad():
            class_image, _ = module(torch.from_numpy(e.image.astype(np.float32))[None, None],
                                    torch.from_numpy(mask)[None])
        assert_agrees(class_image[0].numpy(), clf.predict(e.image, mask).class_image)


def test_object_refusals(object_classifier, classifier, data, tmp_path):
    with pytest.raises(InputError, match="regionprops"):
        check_object_exportable(_with(object_classifier, extractor_=vf.get_extractor("regionprops")))
    with pytest.raises(InputError, match="not an ObjectClassifier"):
        check_object_exportable(classifier)
    with pytest.raises(InputError, match="not a PixelClassifier"):
        check_exportable(object_classifier)
    with pytest.raises(InputError, match="no object"):
        package_object_classifier(object_classifier, tmp_path / "o.zip", test_image=data[0].image,
                                  test_mask=np.zeros((64, 64), np.int32))
    assert not list(tmp_path.iterdir())


def test_command_asks_an_object_classifier_for_its_test_mask(object_classifier, tmp_path, capsys):
    saved = tmp_path / "objects.vfmc"
    object_classifier.save(saved)
    assert main([str(saved), "-o", str(tmp_path / "o.zip"), "-O", "config=" + json.dumps(TINY)]) == 1
    assert "--test-mask" in capsys.readouterr().err
    assert not (tmp_path / "o.zip").exists()
