"""Conformance checks that any extractor plugin runs: ``check_extractor(name, **options)``.

The same checks run over every built-in extractor in this project's test suite,
so a third-party plugin that passes them behaves like a built-in::

    from vfm_features.testing import check_extractor

    def test_my_plugin():
        check_extractor("vgg:blocks3")          # by registered name, with options if needed

Installed with vfm-features, this module is also a pytest plugin: the fixture
``extractor_conformance`` returns :func:`check_extractor`.

Pixel extractors are checked for: 1 to 4 input channels (uint16 and float
images, odd sizes), the declared feature count, finite float32 output whose
geometry maps onto the image, determinism, identical results from two threads
at once, pickling, a stack equal to its planes, tiled against untiled features
(equal within ``atol`` for extractors without global context), an embedding-cache
round trip (when zarr is installed), and a classifier trained on the features
that saves, loads and predicts the same. Object extractors are checked for
sorted ids, one finite row per object, names, determinism and a save/load round
trip. Each failed check raises :class:`ConformanceError` naming the check.
"""

from __future__ import annotations

import importlib.util
import pickle
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import VFMFeaturesError
from .registry import get_extractor


class ConformanceError(VFMFeaturesError, AssertionError):
    """An extractor failed one of the conformance checks."""


def _fail(extractor: Any, check: str, detail: str) -> ConformanceError:
    return ConformanceError(f"{getattr(extractor, 'name', extractor)} fails the check '{check}': {detail}")


def _images(shape: tuple[int, int], channels: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed + channels)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    base = np.stack([np.sin(yy / (4 + c)) + np.cos(xx / (5 + c)) for c in range(channels)], -1)
    noisy = base + 0.1 * rng.standard_normal(base.shape)
    u16 = ((noisy - noisy.min()) / np.ptp(noisy) * 4000).astype(np.uint16)
    return [u16.squeeze(-1) if channels == 1 else u16, noisy.astype(np.float32).squeeze(-1) if channels == 1
            else noisy.astype(np.float32)]


def _labels(shape: tuple[int, int]) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[2:6, 2:shape[1] // 2] = 1
    lab[-6:-2, shape[1] // 2:-2] = 2
    return lab


def _mask(shape: tuple[int, int]) -> tuple[np.ndarray, dict[int, int]]:
    mask = np.zeros(shape, np.int32)
    classes = {}
    k = 0
    for y in range(2, shape[0] - 10, 12):
        for x in range(2, shape[1] - 10, 12):
            k += 1
            mask[y:y + 8, x:x + 8 - (k % 3)] = k
            classes[k] = 1 + k % 2
    return mask, classes


def check_extractor(extractor: Any, *, atol: float = 1e-4, channels: tuple[int, ...] = (1, 2, 3, 4),
                    image_shape: tuple[int, int] | None = None, tile_shape: int | None = None,
                    load_options: dict | None = None, **options: Any) -> list[str]:
    """Run the conformance checks on ``extractor`` (a registered name built with ``options``, or an instance).

    ``load_options`` are the extractor options a user passes when loading a saved
    classifier (weights paths, trust flags; a file never holds them). Returns the
    names of the checks that ran; raises :class:`ConformanceError` on the first failure.
    """
    ext = get_extractor(extractor, **options) if isinstance(extractor, str) else extractor
    if load_options is None:  # what a user passes when loading: the options a file may not hold
        load_options = {k: v for k, v in ext.options.items() if k in getattr(ext, "TRUST_OPTIONS", ())}
    if getattr(ext, "kind", "pixel") == "object":
        return _check_object(ext, load_options)
    return _check_pixel(ext, atol=atol, channels=channels, image_shape=image_shape, tile_shape=tile_shape,
                        load_options=load_options)


def _run(ext: Any, check: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ConformanceError:
        raise
    except Exception as exc:  # noqa: BLE001 - report which check broke, and how
        raise _fail(ext, check, f"{type(exc).__name__}: {exc}") from exc


def _check_pixel(ext: Any, *, atol: float, channels: tuple[int, ...], image_shape: tuple[int, int] | None,
                 tile_shape: int | None, load_options: dict) -> list[str]:
    ran = []
    halo = int(getattr(ext, "halo", None) or ext.spec.halo or 0)
    tile = tile_shape or max(64, 4 * halo + 16)
    shape = image_shape or (tile + tile // 2 + 1, tile + tile // 2 + 7)  # odd sizes, several tiles
    for c in channels:
        for image in _images(shape, c):
            emb = _run(ext, f"embed a {c}-channel {image.dtype} image", lambda: ext.embed(image))
            if emb.data.ndim != 3 or emb.data.dtype != np.float32 or not np.isfinite(emb.data).all():
                raise _fail(ext, "output", f"expected finite float32 (C, h, w); got {emb.data.dtype} "
                                           f"{emb.data.shape}")
            if emb.n_features != ext.n_features_for(c):
                raise _fail(ext, "n_features_for", f"{c} channels gave {emb.n_features} features, "
                                                   f"n_features_for({c}) says {ext.n_features_for(c)}")
            if tuple(emb.image_shape) != shape:
                raise _fail(ext, "geometry", f"image_shape {emb.image_shape} for an image of {shape}")
    ran.append("channels 1-4, dtypes, odd sizes, n_features, geometry")

    image = _images(shape, 1)[0]
    first = ext.embed(image).data
    if not np.array_equal(first, ext.embed(image).data):
        raise _fail(ext, "determinism", "two embeddings of one image differ")
    ran.append("determinism")

    results: list[np.ndarray | BaseException] = [None, None]  # type: ignore[list-item]

    def work(i: int) -> None:
        try:
            results[i] = ext.embed(image).data
        except BaseException as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, BaseException):
            raise _fail(ext, "two threads", f"{type(r).__name__}: {r}")
        if not np.array_equal(r, first):
            raise _fail(ext, "two threads", "embeddings made from two threads at once differ from the serial one")
    ran.append("two threads")

    clone = _run(ext, "pickle", lambda: pickle.loads(pickle.dumps(ext)))
    if not np.array_equal(clone.embed(image).data, first):
        raise _fail(ext, "pickle", "an unpickled copy embeds differently")
    ran.append("pickle")

    stack = np.stack([image, image[::-1]])
    planes = _run(ext, "stack", lambda: ext.embed_stack(stack, axes="ZYX"))
    if len(planes) != 2 or not np.array_equal(planes[0].data, first):
        raise _fail(ext, "stack", "embed_stack does not give each plane's embedding")
    ran.append("stack")

    _check_tiling(ext, image, first, tile, halo, atol)
    ran.append("tiled vs untiled")

    if importlib.util.find_spec("zarr") is not None:
        from .features.cache import EmbeddingCache

        with tempfile.TemporaryDirectory() as tmp:
            cache = EmbeddingCache(Path(tmp) / "c.zarr", dtype="float32")
            miss = cache.embed(ext, image).data
            hit = cache.embed(ext, image).data
            if not (np.array_equal(miss, hit) and np.array_equal(miss, first)):
                raise _fail(ext, "cache", "the cached embedding differs from the computed one")
        ran.append("cache round trip")

    _check_classifier(ext, image, load_options)
    ran.append("classifier save/load")
    return ran


def _check_tiling(ext: Any, image: np.ndarray, whole: np.ndarray, tile: int, halo: int, atol: float) -> None:
    """Tiles must stitch into a finite embedding of the image; without global context or a fixed
    input size (which rescales every tile), into the untiled features themselves."""
    tiled_ext = _run(ext, "tiling", lambda: type(ext)(ext.spec, **{**ext.options, "tile_shape": tile, "halo": halo}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # global-context extractors warn that tiles differ
        emb = _run(ext, "tiling", lambda: tiled_ext.embed(image))
    if tuple(emb.image_shape) != image.shape[:2] or not np.isfinite(emb.data).all():
        raise _fail(ext, "tiling", "the stitched embedding does not cover the image with finite values")
    if ext.spec.global_context or tuple(emb.geometry.step) != tuple(ext.embed(image).geometry.step):
        return  # tiles see only themselves, or are rescaled to a fixed model input: other features by design
    tiled = emb.data
    if tiled.shape != whole.shape:
        raise _fail(ext, "tiling", f"tiled shape {tiled.shape} differs from untiled {whole.shape}")
    scale = max(1.0, float(np.abs(whole).max()))
    diff = float(np.abs(tiled - whole).max()) / scale
    if diff > atol:
        raise _fail(ext, "tiling", f"tiled features differ from untiled ones by {diff:.3g} of their range "
                                   f"(tolerance {atol}); is the spec's halo ({halo} px) large enough?")


def _check_classifier(ext: Any, image: np.ndarray, load_options: dict) -> None:
    from .classifiers.load import load_classifier
    from .classifiers.pixel import PixelClassifier

    lab = _labels(image.shape[:2])
    clf = _run(ext, "train a classifier", lambda: PixelClassifier(ext, head_options={"n_estimators": 4},
                                                                  n_jobs=1).fit(image, lab))
    expected = clf.predict_proba(image)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clf.vfmc"
        _run(ext, "save a classifier", lambda: clf.save(path))
        loaded = _run(ext, "load a classifier", lambda: load_classifier(path, extractor_options=load_options))
        got = _run(ext, "predict with a loaded classifier", lambda: loaded.predict_proba(image))
    if not np.array_equal(got, expected):
        raise _fail(ext, "classifier save/load", "a loaded classifier predicts differently")


def _check_object(ext: Any, load_options: dict) -> list[str]:
    from .classifiers.load import load_classifier
    from .classifiers.object import ObjectClassifier

    shape = (61, 75)
    mask, classes = _mask(shape)
    for c in (1, 3):
        image = _images(shape, c)[0]
        feats = _run(ext, f"object features of a {c}-channel image", lambda: ext.object_features(image, mask))
        if not np.array_equal(feats.ids, np.unique(mask[mask > 0])):
            raise _fail(ext, "ids", "ids must be every object id of the mask, sorted")
        if not np.isfinite(feats.values).all() or len(feats.names) != feats.values.shape[1]:
            raise _fail(ext, "values", "one finite row per object and one name per column expected")
        again = ext.object_features(image, mask)
        if not np.array_equal(again.values, feats.values):
            raise _fail(ext, "determinism", "two calls give different features")
    image = _images(shape, 1)[0]
    clf = ObjectClassifier(ext, head_options={"n_estimators": 4}, n_jobs=1).fit(image, mask, classes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "o.vfmc"
        clf.save(path)
        loaded = load_classifier(path, extractor_options=load_options)
        if not np.array_equal(loaded.predict_proba(image, mask)[1], clf.predict_proba(image, mask)[1]):
            raise _fail(ext, "classifier save/load", "a loaded classifier predicts differently")
    return ["ids", "values", "determinism", "classifier save/load"]


try:  # the pytest fixture, when pytest is there
    import pytest

    @pytest.fixture
    def extractor_conformance() -> Callable[..., list[str]]:
        """:func:`vfm_features.testing.check_extractor`, as a fixture."""
        return check_extractor
except ImportError:  # pragma: no cover
    pass
