"""The interactive loop recomputes nothing: classifiers read embeddings from the cache."""

import numpy as np
import pytest

pytest.importorskip("zarr")

from vfm_features import EmbeddingCache, FeatureExtractor, ObjectClassifier, PixelClassifier, get_extractor  # noqa: E402


class CountingFilters(FeatureExtractor):
    """The filters extractor with a counter of encoder calls."""

    def __init__(self):
        inner = get_extractor("filters", sigmas=[1.0, 2.0])
        super().__init__(inner.spec, **inner.options)
        self.inner = inner
        self.calls = 0

    def n_features_for(self, n_channels):
        return self.inner.n_features_for(n_channels)

    def _embed_plane(self, plane):
        self.calls += 1
        return self.inner._embed_plane(plane)


def test_second_training_run_reads_every_embedding_from_cache(tmp_path, small_data):
    ext = CountingFilters()
    cache = EmbeddingCache(tmp_path / "emb.zarr")
    images = [d.image for d in small_data[:2]]
    labels = [d.scribbles(0.03, random_state=i) for i, d in enumerate(small_data[:2])]
    first = PixelClassifier(ext, cache=cache, head_options={"n_estimators": 10}).fit(images, labels)
    assert ext.calls == 2
    second = PixelClassifier(ext, cache=cache, head_options={"n_estimators": 10}).fit(images, labels)
    assert ext.calls == 2  # no encoder call: both embeddings came from the cache
    np.testing.assert_array_equal(first.predict(images[0]), second.predict(images[0]))
    assert ext.calls == 2  # prediction on a training image reads the cache too
    ObjectClassifier(ext, cache=cache, head_options={"n_estimators": 10}).fit(
        images[0], small_data[0].instances, small_data[0].object_classes)
    assert ext.calls == 2
    PixelClassifier(ext, cache=cache, head_options={"n_estimators": 10}).fit(small_data[2].image, small_data[2].semantic)
    assert ext.calls == 3  # a new image is embedded once


def test_cache_given_as_path(tmp_path, small_data):
    ext = CountingFilters()
    d = small_data[0]
    lab = d.scribbles(0.03, random_state=0)
    for _ in range(2):
        PixelClassifier(ext, cache=str(tmp_path / "c.zarr"), head_options={"n_estimators": 5}).fit(d.image, lab)
    assert ext.calls == 1
