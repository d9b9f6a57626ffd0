"""The zarr embedding cache (vfm_features.features.cache)."""

from __future__ import annotations

import builtins
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")

from vfm_features import Embedding, EmbeddingGeometry, ExtractorSpec, FeatureExtractor, InputError  # noqa: E402
from vfm_features.features.cache import CacheWarning, EmbeddingCache, hash_array  # noqa: E402


class Counting(FeatureExtractor):
    """Pools by 4 into 3 channels and counts its calls (on the class, shared by instances)."""

    calls = 0

    def n_features_for(self, n_channels: int) -> int:
        return 3

    def _embed_plane(self, plane):
        type(self).calls += 1
        x = plane.astype(np.float32).mean(axis=-1) / np.float32(4000)
        h, w = (s // 4 for s in x.shape)
        pooled = x[: 4 * h, : 4 * w].reshape(h, 4, w, 4).mean(axis=(1, 3))
        scale = float(self.options.get("scale", 1.0))
        data = np.stack([pooled, pooled ** 2, -pooled]) * scale + np.float32(1 / 3)
        return Embedding(data, EmbeddingGeometry(plane.shape[:2], (4.0, 4.0)), meta={"note": np.int64(7)})


SPEC = ExtractorSpec("fake:count", factory=Counting, patch_size=4, halo=4)


@pytest.fixture
def ex():
    Counting.calls = 0
    return Counting(SPEC)


def img(seed=0, shape=(64, 48)):
    return np.random.default_rng(seed).integers(0, 4000, size=shape, dtype=np.uint16)


def test_second_embed_reads_from_the_cache(tmp_path, ex):
    cache = EmbeddingCache(tmp_path / "c")
    first = cache.embed(ex, img())
    assert Counting.calls == 1 and len(cache) == 1
    second = cache.embed(Counting(SPEC), img())  # a new instance with the same signature
    assert Counting.calls == 1
    np.testing.assert_array_equal(first.data, second.data)
    assert first.geometry == second.geometry == EmbeddingGeometry((64, 48), (4.0, 4.0), (0.0, 0.0))
    assert first.extractor == second.extractor == "fake:count"
    assert first.meta == second.meta == {"note": 7, "cache_key": cache.key(ex, img())}
    assert second.data.dtype == np.float32
    # A reopened cache finds it too.
    EmbeddingCache(tmp_path / "c").embed(ex, img())
    assert Counting.calls == 1


def test_other_image_option_or_dtype_misses(tmp_path, ex):
    cache = EmbeddingCache(tmp_path / "c")
    cache.embed(ex, img(0))
    cache.embed(ex, img(1))
    assert Counting.calls == 2
    cache.embed(Counting(SPEC, scale=2.0), img(0))
    assert Counting.calls == 3
    cache.embed(ex, img(0).astype(np.int32))  # same values, other dtype
    assert Counting.calls == 4
    cache.embed(Counting(SPEC, tile_shape=32), img(0))  # tiling is part of the key
    assert Counting.calls == 4 + 6  # a 64 x 48 image in 32-px tiles with a 4-px halo: 3 x 2 tiles
    assert len(cache) == 5
    keys = {cache.key(ex, img(0)), cache.key(ex, img(1)), cache.key(Counting(SPEC, scale=2.0), img(0))}
    assert len(keys) == 3 and all(len(k) == 32 for k in keys)
    assert cache.key(ex, img(0)) == cache.key(ex, img(0)[..., None])  # (Y, X) == (Y, X, 1)


def test_hit_and_miss_give_identical_float16_rounded_data(tmp_path, ex):
    exact = ex.embed(img()).data
    miss = EmbeddingCache(tmp_path / "h").embed(ex, img()).data
    hit = EmbeddingCache(tmp_path / "h").embed(ex, img()).data
    np.testing.assert_array_equal(miss, hit)
    rel = np.abs(miss - exact) / np.abs(exact)
    assert 0 < rel.max() <= 2.0 ** -11  # float16 rounding: half an ulp of a 10-bit mantissa
    full = EmbeddingCache(tmp_path / "f", dtype="float32").embed(ex, img()).data
    np.testing.assert_array_equal(full, exact)


def test_float16_storage_halves_the_data_and_falls_back_when_out_of_range(tmp_path, ex):
    def stored_dtype(cache, extractor, image):
        return cache.open_array(cache.key(extractor, image)).dtype

    c16, c32 = EmbeddingCache(tmp_path / "a"), EmbeddingCache(tmp_path / "b", dtype="float32")
    c16.embed(ex, img())
    c32.embed(ex, img())
    assert stored_dtype(c16, ex, img()) == np.float16 and stored_dtype(c32, ex, img()) == np.float32
    big = Counting(SPEC, scale=1e5)
    with pytest.warns(CacheWarning, match="float16 range"):
        emb = c16.embed(big, img())
    assert stored_dtype(c16, big, img()) == np.float32
    np.testing.assert_array_equal(emb.data, big.embed(img()).data)
    with pytest.raises(InputError, match="dtype"):
        EmbeddingCache(tmp_path / "x", dtype="int8")


def _entry(cache, ex, image) -> Path:
    return cache.path / cache.key(ex, image)


def test_deleted_chunk_is_detected_and_recomputed(tmp_path, ex):
    cache = EmbeddingCache(tmp_path / "c", chunks=(1, 8, 8))
    good = cache.embed(ex, img())
    chunk = sorted(p for p in (_entry(cache, ex, img()) / "data").rglob("*") if p.is_file() and p.name != "zarr.json")[3]
    chunk.unlink()
    with pytest.warns(CacheWarning, match="checksum"):
        again = cache.embed(ex, img())
    assert Counting.calls == 2
    np.testing.assert_array_equal(again.data, good.data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.embed(ex, img())  # repaired: a clean hit
    assert Counting.calls == 2


def test_missing_marker_is_detected_and_recomputed(tmp_path, ex):
    cache = EmbeddingCache(tmp_path / "c")
    cache.embed(ex, img())
    meta = _entry(cache, ex, img()) / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"]["vfm_features_complete"]
    meta.write_text(json.dumps(doc))
    assert len(cache) == 0  # an incomplete entry does not count
    with pytest.warns(CacheWarning, match="incomplete"):
        cache.embed(ex, img())
    assert Counting.calls == 2 and len(cache) == 1


@pytest.mark.parametrize("damage", ["metadata", "shape", "data_array"])
def test_other_damage_is_detected_and_recomputed(tmp_path, ex, damage):
    cache = EmbeddingCache(tmp_path / "c")
    cache.embed(ex, img())
    entry = _entry(cache, ex, img())
    if damage == "metadata":
        (entry / "zarr.json").write_text("{not json")
        match = "unreadable metadata"
    elif damage == "shape":
        doc = json.loads((entry / "zarr.json").read_text())
        doc["attributes"]["vfm_features"]["shape"] = [3, 99, 99]
        (entry / "zarr.json").write_text(json.dumps(doc))
        match = "shape"
    else:
        shutil.rmtree(entry / "data")
        match = "damaged"
    with pytest.warns(CacheWarning, match=match):
        cache.embed(ex, img())
    assert Counting.calls == 2
    cache.embed(ex, img())
    assert Counting.calls == 2


def test_stale_signature_is_detected_and_recomputed(tmp_path, ex):
    cache = EmbeddingCache(tmp_path / "c")
    cache.embed(ex, img())
    meta = _entry(cache, ex, img()) / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["vfm_features"]["signature"]["library"] = "0.0.0-old"
    meta.write_text(json.dumps(doc))
    with pytest.warns(CacheWarning, match="stale.*library"):
        cache.embed(ex, img())
    assert Counting.calls == 2


def test_leftover_temporary_entry_is_ignored(tmp_path, ex):
    cache = EmbeddingCache(tmp_path / "c")
    key = cache.key(ex, img())
    # An interrupted writer left a half-written entry under its temporary name.
    half = cache.path / f".tmp-{key}-deadbeef"
    (half / "data").mkdir(parents=True)
    (half / "zarr.json").write_text("{}")
    assert len(cache) == 0 and key not in cache
    cache.embed(ex, img())
    cache.embed(ex, img())
    assert Counting.calls == 1 and key in cache and len(cache) == 1
    assert half.exists()  # left alone by writers ...
    cache.clear()
    assert not half.exists() and len(cache) == 0  # ... and removed by clear()
    assert (cache.path / "zarr.json").exists()
    cache.embed(ex, img())
    assert Counting.calls == 2


def test_losing_a_publish_race_keeps_the_winner(tmp_path, ex, monkeypatch):
    cache = EmbeddingCache(tmp_path / "c")
    other = EmbeddingCache(tmp_path / "c")
    real_rename = os.rename

    def rename_after_other_writer(src, dst):
        # Another process publishes the same key between our write and our rename.
        if Path(src).name.startswith(".tmp-") and not Path(dst).exists():
            monkeypatch.setattr(os, "rename", real_rename)
            other.embed(Counting(SPEC), img())
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_other_writer)
    emb = cache.embed(ex, img())
    assert Counting.calls == 2 and len(cache) == 1
    assert not [p for p in cache.path.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
    np.testing.assert_array_equal(cache.embed(ex, img()).data, emb.data)
    assert Counting.calls == 2


def test_stacks_get_one_entry_per_plane_and_stored_data_is_chunked(tmp_path, ex):
    cache = EmbeddingCache(tmp_path / "c", chunks=(2, 8, 8))
    stack = np.stack([img(s) for s in range(3)])
    embs = cache.embed_stack(ex, stack, axes="ZYX")
    assert len(embs) == 3 and len(cache) == 3 and Counting.calls == 3
    cache.embed_stack(ex, stack, axes="ZYX")
    assert Counting.calls == 3
    arr = cache.open_array(cache.key(ex, stack[1]))
    assert arr.shape == (3, 16, 12) and arr.chunks == (2, 8, 8)
    np.testing.assert_array_equal(arr[:, 8:, :8].astype(np.float32), embs[1].data[:, 8:, :8])
    with pytest.raises(InputError, match="embed_stack"):
        cache.embed(ex, stack, axes="ZYX")


def test_refuses_a_directory_that_is_not_a_cache(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="not an embedding cache"):
        EmbeddingCache(tmp_path / "photos")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        EmbeddingCache(tmp_path / "file")


def test_missing_zarr_names_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_zarr(name, *args, **kwargs):
        if name == "zarr" or name.startswith("zarr."):
            raise ImportError("No module named 'zarr'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zarr)
    with pytest.raises(ImportError, match=r"pip install 'vfm-features\[cache\]'"):
        EmbeddingCache(tmp_path / "c")


def test_hash_falls_back_to_blake2b_without_xxhash(monkeypatch):
    real_import = builtins.__import__
    a = np.arange(10, dtype=np.float32)
    assert hash_array(a).startswith("xxh3_128:") or hash_array(a).startswith("blake2b-128:")

    def no_xxhash(name, *args, **kwargs):
        if name == "xxhash":
            raise ImportError("No module named 'xxhash'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xxhash)
    h = hash_array(a)
    assert h.startswith("blake2b-128:") and len(h.split(":")[1]) == 32
    assert hash_array(a) != hash_array(a[::-1].copy())


def test_importing_the_package_does_not_import_zarr():
    import subprocess
    import sys

    code = "import sys, vfm_features, vfm_features.features.cache; print('zarr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
