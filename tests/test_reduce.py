"""Channel reduction (reduce=k): the PCA arithmetic, its composition with any upsampler, classifiers, files, CLI."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import vfm_features as vf
from vfm_features import Embedding, EmbeddingGeometry, ExtractorMismatchError, InputError
from vfm_features.cli import main
from vfm_features.features.reduce import ChannelPCA, ReducedUpsampler


def embedding(C=12, h=20, w=24, seed=0, offset=0.0):
    """Correlated channels: 3 latent maps mixed into C channels, plus a little noise."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((3, h * w)) * np.array([[5.0], [2.0], [1.0]])
    mix = rng.standard_normal((C, 3))
    data = mix @ latent + 0.01 * rng.standard_normal((C, h * w)) + offset
    return Embedding(data.reshape(C, h, w).astype(np.float32), EmbeddingGeometry((4 * h, 4 * w), step=(4.0, 4.0)))


# -- the arithmetic ----------------------------------------------------------------------------------------------
def test_pca_equals_scikit_learn_up_to_sign():
    from sklearn.decomposition import PCA

    emb = embedding()
    X = emb.data.reshape(12, -1).T.astype(np.float64)
    ref = PCA(3, svd_solver="full").fit(X)
    pca = ChannelPCA(3).fit([emb])
    signs = np.sign(np.sum(pca.components_ * ref.components_, axis=1))
    np.testing.assert_allclose(pca.components_, ref.components_ * signs[:, None], atol=1e-5)
    np.testing.assert_allclose(pca.mean_, ref.mean_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pca.explained_variance_, ref.explained_variance_ * (len(X) - 1) / len(X), rtol=1e-4)
    got = pca.transform(emb).data.reshape(3, -1).T
    np.testing.assert_allclose(got, ref.transform(X) * signs, atol=1e-3 * np.abs(got).max())


def test_streaming_over_images_equals_fitting_their_cells_together():
    a, b = embedding(seed=1), embedding(seed=2, h=10)
    both = Embedding(np.concatenate([a.data.reshape(12, -1), b.data.reshape(12, -1)], 1)[:, :, None],
                     EmbeddingGeometry((1, 1)))
    one, two = ChannelPCA(4).fit([a, b]), ChannelPCA(4).fit([both])
    np.testing.assert_allclose(one.components_, two.components_, atol=1e-5)
    np.testing.assert_allclose(one.mean_, two.mean_, rtol=1e-6)


def test_a_large_offset_does_not_cost_precision():
    near, far = ChannelPCA(3).fit([embedding()]), ChannelPCA(3).fit([embedding(offset=1e4)])
    np.testing.assert_allclose(far.components_, near.components_, atol=1e-4)


def test_transform_keeps_geometry_and_has_a_fixed_sign():
    emb = embedding()
    pca = ChannelPCA(2).fit([emb])
    out = pca.transform(emb)
    assert out.data.shape == (2, 20, 24) and out.geometry == emb.geometry and out.data.dtype == np.float32
    biggest = np.argmax(np.abs(pca.components_), axis=1)
    assert (pca.components_[np.arange(2), biggest] > 0).all()


def test_bad_requests_are_refused():
    with pytest.raises(InputError, match="more components than the 12 channels"):
        ChannelPCA(13).fit([embedding()])
    with pytest.raises(InputError, match="reduce="):
        ChannelPCA(0)
    pca = ChannelPCA(2).fit([embedding()])
    with pytest.raises(InputError, match="fitted on 12"):
        pca.transform(embedding(C=5))
    with pytest.raises(InputError, match="same channels"):
        ChannelPCA(2).fit([embedding(), embedding(C=5)])


@pytest.mark.parametrize("arrays", [
    lambda m, c: {"mean": m},
    lambda m, c: {"mean": m, "components": c, "x": m},
    lambda m, c: {"mean": m, "components": c.astype(np.float64)},
    lambda m, c: {"mean": m, "components": c[:1]},
    lambda m, c: {"mean": m, "components": np.where(c == c.max(), np.nan, c).astype(np.float32)},
    lambda m, c: {"mean": m[:3], "components": c},
])
def test_state_from_a_file_is_checked(arrays):
    pca = ChannelPCA(2).fit([embedding()])
    with pytest.raises(InputError, match="damaged or edited"):
        ChannelPCA.from_state({"method": "pca", "n_components": 2}, arrays(pca.mean_, pca.components_))


@pytest.mark.parametrize("params", [{"method": "svd", "n_components": 2}, {"method": "pca", "n_components": -1},
                                    {"method": "pca", "n_components": 2, "whiten": True}, [1]])
def test_state_parameters_from_a_file_are_checked(params):
    pca = ChannelPCA(2).fit([embedding()])
    with pytest.raises(InputError):
        ChannelPCA.from_state(params, {"mean": pca.mean_, "components": pca.components_})


# -- composition with any upsampler ------------------------------------------------------------------------------
def test_it_composes_with_any_upsampler_and_reduces_each_embedding_once(monkeypatch):
    emb = embedding()
    pca = ChannelPCA(3).fit([emb])
    inner = vf.get_upsampler("bilinear")
    up = ReducedUpsampler(pca, inner)
    reduced = pca.transform(emb)
    coords = np.array([[0, 0], [10.5, 33.2], [79, 95]])
    np.testing.assert_array_equal(up.sparse(emb, None, coords), inner.sparse(reduced, None, coords))
    np.testing.assert_array_equal(up.dense(emb, None, (40, 48), (slice(3, 9), slice(None))),
                                  inner.dense(reduced, None, (40, 48), (slice(3, 9), slice(None))))
    assert up.n_features(emb) == 3 and up.name == "pca3+bilinear"
    assert up.signature()["reduce"] == pca.signature() and up.signature()["upsampler"] == "bilinear"
    calls = []
    monkeypatch.setattr(pca, "transform", lambda e: calls.append(e) or reduced)
    for rows in (slice(0, 8), slice(8, 16)):  # bands of one image
        up.dense(emb, None, None, rows)
    assert len(calls) <= 1


def test_the_signature_changes_with_the_arrays():
    a, b = ChannelPCA(2).fit([embedding(seed=1)]), ChannelPCA(2).fit([embedding(seed=2)])
    assert a.signature() != b.signature() and a.signature()["n_components"] == 2


# -- classifiers -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return vf.make_synthetic(3, (64, 64), random_state=3)


def pixel_clf(reduce=4, **kw):
    return vf.PixelClassifier("filters", extractor_options={"sigmas": [1.0, 2.0]}, reduce=reduce,
                              head_options={"n_estimators": 4}, **kw)


@pytest.fixture(scope="module")
def fitted(data):
    return pixel_clf().fit([d.image for d in data[:2]], [d.scribbles(0.05, random_state=i) for i, d in
                                                        enumerate(data[:2])])


def test_a_pixel_classifier_reduces_before_upsampling(fitted, data):
    assert fitted.n_features_in_ == 4 and fitted.reduction_.n_channels == 16
    assert fitted.signature_["reduce"] == fitted.reduction_.signature()
    assert fitted.predict(data[2].image).shape == (64, 64)
    out = vf.predict_block(fitted, data[2].image[:40, :40])
    assert out.shape == (len(fitted.classes_), 40, 40)


def test_a_reduced_classifier_saves_and_loads(tmp_path, fitted, data):
    path = fitted.save(tmp_path / "r.vfmc")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert {"reduce/mean.npy", "reduce/components.npy"} <= names
    meta = vf.read_metadata(path)
    assert meta["params"]["reduce"] == 4 and meta["reduce"]["params"] == {"method": "pca", "n_components": 4}
    again = vf.load_classifier(path)
    np.testing.assert_array_equal(again.reduction_.components_, fitted.reduction_.components_)
    np.testing.assert_array_equal(again.predict_proba(data[2].image), fitted.predict_proba(data[2].image))


def test_a_classifier_without_reduce_writes_the_file_as_before(tmp_path, data):
    clf = pixel_clf(reduce=None).fit(data[0].image, data[0].scribbles(0.05, random_state=0))
    meta = vf.read_metadata(clf.save(tmp_path / "plain.vfmc"))
    assert "reduce" not in meta["params"] and meta["reduce"] is None
    with zipfile.ZipFile(tmp_path / "plain.vfmc") as zf:
        assert "reduce" not in json.loads(zf.read("metadata.json"))


def _edit(src, dst, meta=None, members=None):
    with zipfile.ZipFile(src) as zf:
        content = {n: zf.read(n) for n in zf.namelist()}
    m = json.loads(content["metadata.json"])
    if meta:
        meta(m)
    content["metadata.json"] = json.dumps(m).encode()
    for name, value in (members or {}).items():
        if value is None:
            content.pop(name)
        else:
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=True)
            content[name] = buf.getvalue()
    with zipfile.ZipFile(dst, "w") as zf:
        for name, value in content.items():
            zf.writestr(name, value)
    return dst


def test_edited_reduction_files_are_refused(tmp_path, fitted):
    path = fitted.save(tmp_path / "r.vfmc")
    comps = fitted.reduction_.components_
    cases = [
        (dict(members={"reduce/components.npy": comps[::-1].copy()}), ExtractorMismatchError, "reduce"),
        (dict(members={"reduce/components.npy": None}), InputError, "missing"),
        (dict(members={"reduce/payload.npy": comps}), InputError, "not declared"),
        (dict(members={"reduce/components.npy": np.array([object()], dtype=object)},
              meta=lambda m: m["reduce"]["arrays"].update(components={"shape": [1], "dtype": "|O"})),
         InputError, "cannot be read|numeric"),
        (dict(meta=lambda m: m["params"].update(reduce=3)), InputError, "reduce parameter"),
        (dict(meta=lambda m: m["params"].pop("reduce")), InputError, "disagree"),
        (dict(meta=lambda m: m.update(reduce=[1, 2])), InputError, "wrong type"),
        (dict(meta=lambda m: m["reduce"]["params"].update(method="ica")), InputError, "PCA record"),
    ]
    for i, (edit, error, match) in enumerate(cases):
        with pytest.raises(error, match=match):
            vf.load_classifier(_edit(path, tmp_path / f"e{i}.vfmc", **edit))


def test_partial_fit_keeps_the_reduction_and_fit_refits_it(data, fitted):
    clf = pixel_clf().fit(data[0].image, data[0].scribbles(0.05, random_state=0))
    first = clf.reduction_
    clf.partial_fit(data[1].image, data[1].scribbles(0.05, random_state=1))
    assert clf.reduction_ is first
    clf.fit(data[1].image, data[1].scribbles(0.05, random_state=1))
    assert clf.reduction_ is not first
    clf.set_params(reduce=2)
    assert not hasattr(clf, "reduction_")
    assert clf.fit(data[1].image, data[1].scribbles(0.05, random_state=1)).n_features_in_ == 2


def test_bad_reduce_values_are_refused(data):
    with pytest.raises(InputError, match="reduce"):
        pixel_clf(reduce=0).fit(data[0].image, data[0].scribbles(0.05, random_state=0))
    with pytest.raises(InputError, match="more components than the 16 channels"):
        pixel_clf(reduce=40).fit(data[0].image, data[0].scribbles(0.05, random_state=0))
    d = data[0]
    with pytest.raises(InputError, match="object features itself"):
        vf.ObjectClassifier("regionprops", reduce=3).fit(d.image, d.instances, d.object_classes)


def test_an_object_classifier_aggregates_the_reduced_embedding(tmp_path, data):
    d = data[0]
    clf = vf.ObjectClassifier("filters", extractor_options={"sigmas": [1.0, 2.0]}, reduce=3,
                              head_options={"n_estimators": 4}).fit(d.image, d.instances, d.object_classes)
    assert clf.n_features_in_ == 3 + 1  # the mean of 3 components, and the area
    again = vf.load_classifier(clf.save(tmp_path / "o.vfmc"))
    np.testing.assert_array_equal(again.predict(data[1].image, data[1].instances).classes,
                                  clf.predict(data[1].image, data[1].instances).classes)


# -- command line ------------------------------------------------------------------------------------------------------
def test_train_takes_reduce(tmp_path, data, capsys):
    from vfm_features.io import write_image

    img, lab = tmp_path / "a.tif", tmp_path / "a_lab.tif"
    write_image(img, data[0].image)
    write_image(lab, data[0].scribbles(0.05, random_state=0))
    args = ["train", "pixels", "--images", str(img), "--labels", str(lab), "--jobs", "1", "-O", "sigmas=[1]",
            "--trees", "3"]
    assert main([*args, "-o", str(tmp_path / "r.vfmc"), "--reduce", "3"]) == 0
    meta = vf.read_metadata(tmp_path / "r.vfmc")
    assert meta["params"]["reduce"] == 3 and meta["n_features_in"] == 3
    assert main([*args, "-o", str(tmp_path / "bad.vfmc"), "--reduce", "0"]) != 0
    assert "--reduce 0" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "bad.vfmc"), "--upsampler-option", "grid=4"]) != 0
    assert "does not take" in capsys.readouterr().err
    assert not (tmp_path / "bad.vfmc").exists()
