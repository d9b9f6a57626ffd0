"""Attentive probes (deap, obap) and the hybrid heads: quality above chance, band invariance, files, bad input.

Small sizes throughout (64 x 64 images, a few dozen iterations); the library's
thread budget is one thread here, which keeps torch from spinning when other
programs hold the cores. Speed is measured in benchmarks/bench_probes.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

import vfm_features as vf
from vfm_features.errors import ExtractorMismatchError, InputError
from vfm_features.evaluation.metrics import macro_f1
from vfm_features.evaluation.synthetic import make_synthetic
from vfm_features.features.aggregate import DEFAULT_STATS, Aggregator
from vfm_features.heads.base import ObjectSamples, PixelHead, PixelSamples

torch = pytest.importorskip("torch")

from vfm_features.heads.probes.deap import DeapPixelHead  # noqa: E402
from vfm_features.heads.probes.hybrid import HybridObjectHead, HybridPixelHead, ProbeTrainingWarning  # noqa: E402
from vfm_features.heads.probes.obap import ObapObjectHead  # noqa: E402
from vfm_features.heads.probes.probe import Probe  # noqa: E402
from vfm_features.heads.probes.sampling import LabelBudgetWarning, seed_pixel_budget, validation_split  # noqa: E402

pytestmark = pytest.mark.torch

FAST = dict(dim=16, crop=7, batch_size=2, lr=5e-3, random_state=0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    from vfm_features.threads import set_threads

    previous, torch_threads = set_threads(1), torch.get_num_threads()
    yield
    set_threads(previous)
    torch.set_num_threads(torch_threads)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(3, (64, 64), random_state=1)


@pytest.fixture(scope="module")
def embedded(data):
    ext = vf.get_extractor("filters")
    return [ext.embed(d.image) for d in data]


def pixel_samples(data, embedded, idx, *, dense=False, fraction=0.08):
    up = vf.get_upsampler("bilinear")
    parts = []
    for k, i in enumerate(idx):
        lab = data[i].semantic if dense else data[i].scribbles(fraction, random_state=i)
        yy, xx = np.nonzero(lab)
        parts.append(PixelSamples([embedded[i]], [data[i].image[..., None]], np.zeros(len(yy), np.int64),
                                  np.stack([yy, xx], 1), up, lab[yy, xx].astype(np.int64)))
    return PixelSamples.concat(parts)


def object_samples(data, embedded, idx):
    embs, imgs, masks, index, ids, ys = [], [], [], [], [], []
    for k, i in enumerate(idx):
        oid = np.array(sorted(data[i].object_classes), np.int64)
        embs.append(embedded[i])
        imgs.append(data[i].image[..., None])
        masks.append(data[i].instances)
        index.append(np.full(len(oid), k))
        ids.append(oid)
        ys.append([data[i].object_classes[o] for o in oid])
    return ObjectSamples(np.concatenate(index), np.concatenate(ids), np.concatenate(ys).astype(np.int64),
                         embeddings=embs, images=imgs, masks=masks, aggregator=Aggregator(DEFAULT_STATS, True),
                         upsampler=vf.get_upsampler("bilinear"))


@pytest.fixture(scope="module")
def deap(data, embedded):
    """Trained for 80 iterations on the scribbles of two 64 x 64 images (a few seconds on two idle cores)."""
    options = {**FAST, "lr": 2e-3, "batch_size": 4, "crop": 8, "val_fraction": 0.0}
    return DeapPixelHead(max_iter=80, **options).fit(pixel_samples(data, embedded, [0, 1]))


@pytest.fixture(scope="module")
def obap():
    data = make_synthetic(4, (96, 96), random_state=2)
    ext = vf.get_extractor("filters")
    embedded = [ext.embed(d.image) for d in data]
    head = ObapObjectHead(dim=16, max_iter=80, val_fraction=0.0, random_state=0, lr=3e-3)
    train = object_samples(data, embedded, [0, 1, 2])
    return head.fit(train), object_samples(data, embedded, [3]), train


# -- registration --------------------------------------------------------------------------------------------
def test_the_probes_are_registered_and_listing_imports_no_torch():
    code = ("import sys, vfm_features as v; p, o = v.list_heads('pixel'), v.list_heads('object'); "
            "assert {'deap', 'hybrid'} <= set(p) and {'obap', 'hybrid'} <= set(o), (p, o); "
            "from vfm_features.cli import main; main(['list', '--heads']); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    spec = vf.Registry().head_spec("deap", "pixel")
    assert spec.requires == ("torch",) and spec.install == "vfm-features[torch]"


# -- the neighbourhood task ----------------------------------------------------------------------------------
def test_the_context_task_is_decided_by_the_neighbourhood():
    from scipy import ndimage as ndi

    from vfm_features.evaluation.synthetic import FAR, NEAR

    for d in make_synthetic(2, (128, 128), random_state=3, context=True):
        classes = np.array(list(d.object_classes.values()))
        assert {1, 2, 3} <= set(classes) and abs(np.sum(classes == 1) - np.sum(classes == 2)) <= 2
        landmarks = np.isin(d.instances, [i for i, c in d.object_classes.items() if c == 3])
        gap = ndi.distance_transform_edt(~landmarks)
        for oid, cls in d.object_classes.items():
            rim = gap[d.instances == oid].min()  # from the cell's nearest pixel to the nearest landmark pixel
            assert (rim <= NEAR + 2) if cls == 1 else (rim >= FAR - 2) if cls == 2 else rim == 0
        assert set(np.unique(d.semantic)) == {1, 2, 3, 4}
        # alike cells: near and far cells have the same brightness distribution
        near = d.image[np.isin(d.instances, [i for i, c in d.object_classes.items() if c == 1])].mean()
        far = d.image[np.isin(d.instances, [i for i, c in d.object_classes.items() if c == 2])].mean()
        assert abs(near - far) < 0.35 * max(near, far)


# -- quality -------------------------------------------------------------------------------------------------
def test_deap_beats_chance_by_a_wide_margin(deap, data, embedded):
    test = pixel_samples(data, embedded, [2], dense=True)
    pred = deap.classes_[deap.predict_proba(test).argmax(1)]
    chance = macro_f1(test.y, np.full_like(test.y, np.bincount(test.y).argmax()))  # the majority class: 0.23
    assert macro_f1(test.y, pred) > 0.42 > 1.8 * chance


def test_validation_and_early_stopping(data, embedded):
    head = DeapPixelHead(max_iter=400, val_every=2, patience=2, **FAST).fit(pixel_samples(data, embedded, [0, 1]))
    assert head.train_log_.stopped == "early" and head.n_iter_ < 400 and head.n_val_ > 0
    scores = [h[3] for h in head.history_]
    assert head.best_score_ == max(scores) and head.n_iter_ == head.history_[-1][0]
    timed = DeapPixelHead(max_iter=10_000, val_fraction=0.0, max_time=0.5, **FAST)
    timed.fit(pixel_samples(data, embedded, [0]))
    assert timed.train_log_.stopped == "max_time" and timed.n_iter_ < 10_000


def test_obap_beats_chance_by_a_wide_margin(obap):
    head, test, _ = obap
    pred = head.classes_[head.predict_proba(test).argmax(1)]
    assert macro_f1(test.y, pred, ignore=None) >= 0.7  # three balanced classes: chance is about 1/3


def test_training_is_deterministic_under_a_seed(data, embedded):
    train = pixel_samples(data, embedded, [0])
    a = DeapPixelHead(max_iter=5, **FAST).fit(train)
    b = DeapPixelHead(max_iter=5, **FAST).fit(train)
    test = pixel_samples(data, embedded, [2], fraction=0.02)
    np.testing.assert_array_equal(a.predict_proba(test), b.predict_proba(test))


# -- prediction geometry -------------------------------------------------------------------------------------
def test_dense_prediction_does_not_depend_on_bands_or_blocks(deap, data, embedded):
    up, image = vf.get_upsampler("bilinear"), data[2].image[..., None]
    whole = deap.predict_proba_dense(embedded[2], image, up, (64, 64))
    assert whole.shape == (4, 64, 64) and np.allclose(whole.sum(0), 1, atol=1e-5)
    bands = np.concatenate([deap.predict_proba_dense(embedded[2], image, up, (64, 64), (slice(r, r + 9), slice(0, 64)))
                            for r in range(0, 64, 9)], axis=1)
    np.testing.assert_allclose(bands, whole, atol=1e-5)
    block = deap.predict_proba_dense(embedded[2], image, up, (64, 64), (slice(13, 41), slice(30, 57)))
    np.testing.assert_allclose(block, whole[:, 13:41, 30:57], atol=1e-5)
    coarse = deap.predict_proba_dense(embedded[2], image, up, (20, 30), (slice(5, 12), slice(None)))
    assert coarse.shape == (4, 7, 30)
    np.testing.assert_allclose(coarse, deap.predict_proba_dense(embedded[2], image, up, (20, 30))[:, 5:12], atol=1e-5)


def test_a_block_aligned_to_the_query_grid_predicts_as_the_whole_image(deap):
    image = make_synthetic(1, (256, 256), random_state=5)[0].image
    ext, up = vf.get_extractor("filters"), vf.get_upsampler("bilinear")
    whole = deap.predict_proba_dense(ext.embed(image), image[..., None], up, (256, 256))
    y0, x0 = 64, 128  # multiples of the query stride
    block = image[y0:, x0:250]
    part = deap.predict_proba_dense(ext.embed(block), block[..., None], up, block.shape)
    m = deap.context_px + ext.spec.halo  # what the block's border changes
    assert 0 < m < 80
    np.testing.assert_allclose(part[:, m:-m, m:-m], whole[:, y0 + m:256 - m, x0 + m:250 - m], atol=1e-4)


def test_blockwise_prediction_of_a_probe_classifier_equals_the_whole_image(data, tmp_path):
    from vfm_features.classifiers.blocks import block_alignment, default_halo, predict_blockwise

    image = make_synthetic(1, (420, 470), random_state=5)[0].image
    images, labels = [d.image for d in data[:2]], [d.scribbles(0.08, random_state=0) for d in data[:2]]
    clf = vf.PixelClassifier("filters", head="deap", head_options={**FAST, "max_iter": 5}).fit(images, labels)
    step = block_alignment(clf)
    assert step == 64 and default_halo(clf) % step == 0
    assert default_halo(clf) >= clf.head_.context_px + clf.extractor_.spec.halo
    whole = clf.predict_proba(image)
    np.testing.assert_allclose(predict_blockwise(clf, image, block_shape=320), whole, atol=1e-4)
    from vfm_features.scale.run import predict_pixels

    with pytest.raises(InputError, match="multiples of 64"):
        np.save(tmp_path / "image.npy", image)
        predict_pixels(clf, tmp_path / "image.npy", tmp_path / "out.ome.zarr", block_shape=100)
    assert not (tmp_path / "out.ome.zarr").exists()


def test_pixel_probabilities_match_the_dense_grid(deap, data, embedded):
    test = pixel_samples(data, embedded, [2], fraction=0.05)
    dense = deap.predict_proba_dense(embedded[2], data[2].image[..., None], vf.get_upsampler("bilinear"), (64, 64))
    np.testing.assert_allclose(deap.predict_proba(test), dense[:, test.coords[:, 0], test.coords[:, 1]].T, atol=1e-5)


def test_odd_image_sizes(data):
    image = data[0].image[:50, :37]
    clf = vf.PixelClassifier("filters", head="deap", head_options={**FAST, "max_iter": 3}, band_rows=16)
    labels = data[0].semantic[:50, :37] * (np.arange(50)[:, None] % 5 == 0)
    proba = clf.fit(image, labels).predict_proba(image)
    assert proba.shape == (4, 50, 37) and np.isfinite(proba).all()


def test_an_object_classifier_trains_obap_on_several_images_and_saves_it(tmp_path):
    data = make_synthetic(3, (96, 96), random_state=2)
    clf = vf.ObjectClassifier("filters", head="obap", head_options={"dim": 16, "max_iter": 40, "random_state": 0,
                                                                    "val_fraction": 0.0})
    clf.fit([d.image for d in data[:2]], [d.instances for d in data[:2]], [d.object_classes for d in data[:2]])
    ids, proba = clf.predict_proba(data[2].image, data[2].instances)
    assert proba.shape == (len(ids), len(clf.classes_)) and np.allclose(proba.sum(1), 1, atol=1e-5)
    again = vf.load_classifier(clf.save(tmp_path / "obap.vfmc"))
    np.testing.assert_array_equal(again.predict_proba(data[2].image, data[2].instances)[1], proba)


def test_object_samples_keep_embeddings_and_masks_when_concatenated(obap):
    _, test, train = obap
    merged = ObjectSamples.concat([train, test])
    assert len(merged.embeddings) == len(train.embeddings) + len(test.embeddings) == len(merged.masks)
    assert merged.image_index.max() == len(merged.embeddings) - 1
    rows_only = ObjectSamples.concat([train.without_embeddings(), test.without_embeddings()])
    assert rows_only.embeddings is None
    np.testing.assert_array_equal(rows_only.image_index, merged.image_index)


def test_obap_chunks_objects_and_drops_none(obap):
    head, test, _ = obap
    small = ObapObjectHead(**{**head.get_params(), "max_objects": 3})
    small.__dict__.update({k: v for k, v in head.__dict__.items() if k.endswith("_")})
    np.testing.assert_allclose(small.predict_proba(test), head.predict_proba(test), atol=1e-5)
    assert len(head.predict_proba(test)) == len(test)


# -- saving ------------------------------------------------------------------------------------------------
def _roundtrip(head, n_features):
    params, arrays = head.get_state()
    params = json.loads(json.dumps(params))  # as a file stores them
    return type(head).from_state(params, {k: np.array(v) for k, v in arrays.items()}, n_features=n_features)


def test_save_and_load_give_equal_predictions(deap, obap, data, embedded):
    test = pixel_samples(data, embedded, [2], fraction=0.05)
    np.testing.assert_array_equal(_roundtrip(deap, 32).predict_proba(test), deap.predict_proba(test))
    head, objects, _ = obap
    np.testing.assert_array_equal(_roundtrip(head, 32).predict_proba(objects), head.predict_proba(objects))
    params, arrays = deap.get_state()
    assert all(a.dtype.kind in "if" for a in arrays.values()) and "device" not in params


def test_a_classifier_file_round_trips_and_refuses_other_features(tmp_path, data):
    images, labels = [d.image for d in data[:2]], [d.scribbles(0.08, random_state=0) for d in data[:2]]
    clf = vf.PixelClassifier("filters", head="deap", head_options={**FAST, "max_iter": 5}).fit(images, labels)
    path = clf.save(tmp_path / "deap.vfmc")
    again = vf.load_classifier(path)
    np.testing.assert_array_equal(again.predict_proba(data[2].image), clf.predict_proba(data[2].image))
    with pytest.raises(ExtractorMismatchError, match="sigmas"):
        vf.load_classifier(path, extractor_options={"sigmas": [1.0, 2.0]})
    # the same file, as if trained with another upsampler
    vf.register_plugin(_OtherUpsampler, name="probe_test_upsampler")
    try:
        meta = json.loads(zipfile.ZipFile(path).read("metadata.json"))
        meta["upsampler"]["name"] = "doubled"
        other = tmp_path / "other.vfmc"
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(other, "w") as dst:
            for info in src.infolist():
                dst.writestr(info, json.dumps(meta) if info.filename == "metadata.json" else src.read(info))
        with pytest.raises(ExtractorMismatchError, match="upsampler"):
            vf.load_classifier(other)
    finally:
        vf.unregister_plugin("probe_test_upsampler")


class _OtherUpsampler:
    """A plugin with one more upsampler ('doubled': bilinear, then the features times two)."""

    @staticmethod
    @vf.hookimpl
    def vfm_features_upsamplers():
        from vfm_features.features.bilinear import BilinearUpsampler

        class Doubled(BilinearUpsampler):
            def dense(self, embedding, image=None, out_shape=None, region=None):
                return 2 * super().dense(embedding, image, out_shape, region)

            def sparse(self, embedding, image, coords):
                return 2 * super().sparse(embedding, image, coords)

        return [vf.UpsamplerSpec("doubled", factory=lambda spec, **o: Doubled(spec, **o))]


@pytest.mark.parametrize("mutate, message", [
    (lambda p, a: a.update({"net.attn.proj_q.weight": a["net.attn.proj_q.weight"][:, :3]}), "proj_q.weight"),
    (lambda p, a: a.update({"net.norm.bias": a["net.norm.bias"].astype(np.float64)}), "norm.bias"),
    (lambda p, a: a["net.decoder.out.bias"].__setitem__(0, np.nan), "NaN"),
    (lambda p, a: a.pop("net.attn.log_sigma"), "do not fit"),
    (lambda p, a: a.update({"net.extra": np.zeros(3, np.float32)}), "do not fit"),
    (lambda p, a: a.update({"feature_std": -a["feature_std"]}), "feature_std"),
    (lambda p, a: a.update({"classes": a["classes"][::-1].copy()}), "classes"),
    (lambda p, a: p.update({"dim": 10 ** 6}), "out of range"),
    (lambda p, a: p.update({"n_heads": True}), "wrong type"),
    (lambda p, a: p.update({"exec": "print(1)"}), "unknown keys"),
    (lambda p, a: p.update({"n_features_in": 7}), "trained on 7 features"),
])
def test_crafted_state_is_refused(deap, mutate, message):
    params, arrays = deap.get_state()
    params, arrays = json.loads(json.dumps(params)), {k: np.array(v) for k, v in arrays.items()}
    mutate(params, arrays)
    with pytest.raises(InputError, match=message):
        DeapPixelHead.from_state(params, arrays, n_features=32)


# -- bad input -----------------------------------------------------------------------------------------------
def test_one_class_is_refused(data, embedded):
    samples = pixel_samples(data, embedded, [0])
    one = samples.subset(samples.y == samples.y[0])
    with pytest.raises(InputError, match="only class"):
        DeapPixelHead(**FAST).fit(one)
    with pytest.raises(InputError, match="only class"):
        HybridPixelHead().fit(one)


def test_a_budget_larger_than_the_labels_warns_and_uses_all(data, embedded):
    samples = pixel_samples(data, embedded, [0])
    with pytest.warns(LabelBudgetWarning, match="uses all"):
        head = DeapPixelHead(**{**FAST, "max_iter": 2, "budget": len(samples) + 1}).fit(samples)
    assert head.n_val_ > 0


def test_the_seed_budget_rule():
    image_index = np.repeat(np.arange(5), 20)
    y = np.tile(np.repeat([1, 2], 10), 5)
    few = seed_pixel_budget(image_index, y, 3, random_state=0)
    assert len(few) == 3 and len(np.unique(image_index[few])) == 3  # one pixel from each of 3 images
    many = seed_pixel_budget(image_index, y, 40, random_state=0)
    assert np.all(np.bincount(image_index[many]) == 8)  # split over the images, balanced within each
    assert all(np.bincount(y[many][image_index[many] == i])[1:].tolist() == [4, 4] for i in range(5))


def test_validation_split_keeps_every_class_in_training():
    y = np.array([1] * 30 + [2] * 3)
    train, val = validation_split(np.arange(33) // 3, y, 0.3, random_state=0)
    assert set(y[train]) == {1, 2} and len(val) and not set(train) & set(val)
    assert validation_split(np.arange(5), y[:5], 0.3)[1] is None  # too few labels: no validation


def test_bad_parameters_name_the_fix(data, embedded):
    samples = pixel_samples(data, embedded, [0])
    for options, message in [({"n_heads": 3}, "divide dim"), ({"query_stride": 6}, "query_stride"),
                             ({"precision": "float16"}, "precision"), ({"sigma": 0}, "sigma")]:
        with pytest.raises(InputError, match=message):
            DeapPixelHead(**{**FAST, **options}).fit(samples)


def test_obap_needs_masks_and_embeddings(obap):
    head, test, _ = obap
    rows = test.without_embeddings()
    with pytest.raises(InputError, match="feature rows only"):
        head.predict_proba(rows)


def test_progress_reaches_a_callable(data, embedded):
    calls = []
    DeapPixelHead(**{**FAST, "max_iter": 4, "progress": lambda done, total: calls.append((done, total))}).fit(
        pixel_samples(data, embedded, [0]))
    assert calls[-1] == (4, 4)


# -- the hybrid ----------------------------------------------------------------------------------------------
class _Fake(Probe, PixelHead):
    """A probe whose quality and timing the tests choose: 'oracle' reads the class from the image, 'constant'
    answers class 1, 'broken' fails; ``gate`` holds training until the test releases it."""

    kind = "pixel"
    seen: list = []
    gate: threading.Event | None = None

    def __init__(self, *, mode: str = "oracle", random_state=None):
        self.mode = mode
        self.random_state = random_state

    def fit(self, samples):
        if _Fake.gate is not None:
            _Fake.gate.wait(10)
        _Fake.seen.append(len(samples))
        if self.mode == "broken":
            raise RuntimeError("the GPU caught fire")
        self.classes_, self.n_features_in_ = np.unique(samples.y), 32
        return self

    def predict_proba(self, samples):
        out = np.zeros((len(samples), len(self.classes_)), np.float32)
        for i in np.unique(samples.image_index):
            sel = samples.image_index == i
            truth = samples.images[i][samples.coords[sel, 0], samples.coords[sel, 1], 1]
            cls = truth if self.mode == "oracle" else np.full(sel.sum(), self.classes_[0])
            out[np.flatnonzero(sel), np.searchsorted(self.classes_, cls)] = 1
        return out

    def predict_proba_dense(self, embedding, image, upsampler, out_shape, region=None):
        raise NotImplementedError

    def get_state(self):
        return {"mode": self.mode}, {"classes": np.asarray(self.classes_)}


class _FakePlugin:
    @staticmethod
    @vf.hookimpl
    def vfm_features_heads():
        return [vf.HeadSpec("fake-probe", factory=_Fake, kind="pixel")]


@pytest.fixture
def fakes(data, embedded):
    """Samples whose images carry the true class in a second channel (the oracle probe reads it)."""
    vf.register_plugin(_FakePlugin, name="probe_test_fakes")
    _Fake.seen, _Fake.gate = [], None
    parts = []
    for i in range(2):
        lab = data[i].scribbles(0.1, random_state=i)
        yy, xx = np.nonzero(lab)
        image = np.stack([data[i].image, data[i].semantic.astype(np.uint16)], -1)
        parts.append(PixelSamples([embedded[i]], [image], np.zeros(len(yy), np.int64), np.stack([yy, xx], 1),
                                  vf.get_upsampler("bilinear"), lab[yy, xx].astype(np.int64)))
    yield PixelSamples.concat(parts)
    _Fake.gate = None
    vf.unregister_plugin("probe_test_fakes")


STUMP = {"n_estimators": 1, "max_depth": 1}  # a forest that is easy to beat


def test_the_forest_answers_first_and_a_better_probe_takes_over(fakes):
    _Fake.gate = threading.Event()
    head = HybridPixelHead(probe="fake-probe", forest_options=STUMP, random_state=0).fit(fakes)
    assert head.active_ == "forest" and head.training and "queued" in head.reason_
    forest = head.forest_.predict_proba(fakes)
    np.testing.assert_array_equal(head.predict_proba(fakes), forest)  # answers while the probe trains
    _Fake.gate.set()
    assert head.wait(20)
    status = head.status()
    assert status["active"] == "probe" and "beats the forest" in status["reason"], status
    assert status["rounds"][0]["probe_f1"] == 1.0 > status["rounds"][0]["forest_f1"]
    assert head.predict_proba(fakes).max(1).min() == 1.0  # the oracle answers now
    head.pin("forest")
    assert head.active_ == "forest" and "pinned" in head.reason_
    head.pin(None)
    assert head.active_ == "probe"


def test_a_worse_probe_never_takes_over_unless_pinned(fakes):
    head = HybridPixelHead(probe="fake-probe", probe_options={"mode": "constant"}, random_state=0).fit(fakes)
    assert head.wait(20)
    assert head.active_ == "forest" and "at least the probe's" in head.reason_
    head.pin("probe")
    assert head.active_ == "probe" and "pinned" in head.reason_


def test_labels_added_during_a_round_are_used_in_the_next(fakes):
    _Fake.gate = threading.Event()
    first = fakes.subset(np.arange(len(fakes)) < len(fakes) // 2)
    head = HybridPixelHead(probe="fake-probe", random_state=0).fit(first)
    forest = head.forest_
    head.fit(fakes)  # more labels while round 1 waits: the forest answers them at once
    assert head.forest_ is not forest and len(head.rounds_) == 0 and head.training
    _Fake.gate.set()
    assert head.wait(20)
    rounds = head.rounds_
    assert [r["n_labels"] for r in rounds] == [len(first), len(fakes)]
    assert [r["applied"] for r in rounds] == [False, True]
    assert _Fake.seen == [len(first) - rounds[0]["n_val"], len(fakes) - rounds[1]["n_val"]]


def test_a_failing_round_is_reported_and_the_forest_stays(fakes):
    with pytest.warns(ProbeTrainingWarning, match="caught fire"):
        head = HybridPixelHead(probe="fake-probe", probe_options={"mode": "broken"}, background=False).fit(fakes)
    assert head.active_ == "forest" and "failed" in head.reason_
    assert isinstance(head.error_, RuntimeError) and head.status()["error"] is head.error_
    np.testing.assert_array_equal(head.predict_proba(fakes), head.forest_.predict_proba(fakes))


def test_a_background_failure_is_reported_too(fakes):
    with pytest.warns(ProbeTrainingWarning):
        head = HybridPixelHead(probe="fake-probe", probe_options={"mode": "broken"}).fit(fakes)
        assert head.wait(20)
    assert isinstance(head.error_, RuntimeError) and head.active_ == "forest"


def test_stop_cancels_a_round_and_new_labels_start_another(data, embedded):
    samples = pixel_samples(data, embedded, [0, 1])
    head = HybridPixelHead(probe_options={**FAST, "max_iter": 100_000, "val_fraction": 0.0}, random_state=0)
    head.fit(samples)
    assert head.stop(timeout=60) and not head.training
    assert head.rounds_[-1]["cancelled"] and not head.rounds_[-1]["applied"] and head.active_ == "forest"
    head.set_params(probe_options={**FAST, "max_iter": 3}).fit(samples)
    assert head.wait(60) and head.rounds_[-1]["applied"] and len(head.rounds_) == 2


def test_the_hybrid_refuses_a_non_probe():
    with pytest.raises(InputError, match="not an attentive probe"):
        HybridPixelHead(probe="rf")._check_params()


def test_a_hybrid_with_a_real_probe_saves_and_loads(tmp_path, data):
    images, labels = [d.image for d in data[:2]], [d.scribbles(0.08, random_state=0) for d in data[:2]]
    options = {"probe_options": {**FAST, "max_iter": 5}, "background": False, "pinned": "probe"}
    clf = vf.PixelClassifier("filters", head="hybrid", head_options=options).fit(images, labels)
    assert clf.head_.active_ == "probe" and clf.head_.probe_ is not None
    path = clf.save(tmp_path / "hybrid.vfmc")
    again = vf.load_classifier(path)
    assert again.head_.active_ == "probe" and again.head_.reason_ == clf.head_.reason_
    np.testing.assert_array_equal(again.predict_proba(data[2].image), clf.predict_proba(data[2].image))
    assert any(n.startswith("head/probe.net.") for n in zipfile.ZipFile(path).namelist())


def test_the_object_hybrid_runs_obap(obap):
    _, test, train = obap
    head = HybridObjectHead(probe_options={"dim": 16, "max_iter": 5}, background=False, random_state=0).fit(train)
    assert head.rounds_ and head.rounds_[0]["probe_f1"] is not None and head.active_ in ("forest", "probe")
    assert head.predict_proba(test).shape == (len(test), len(head.classes_))
