"""weights.py (cache, offline rule, checksums, download, safe loading) and device.py.

No test reaches the network: downloads use file:// URLs, and any other URL fails the test.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest

from vfm_features import ExtractorSpec, InputError, WeightsError
from vfm_features.models import weights as W

try:
    import torch
except ImportError:  # the cache, checksum and download tests run without torch
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """A private cache, online mode, and urlopen limited to file:// URLs."""
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(W.OFFLINE_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    real = urllib.request.urlopen

    def guarded(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        if not url.startswith("file:"):
            raise AssertionError(f"a test tried to reach the network: {url}")
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


def _spec(url=None, hash=None, file="model.pt", gated=False):
    return ExtractorSpec(name="test:model", factory=lambda spec, **o: None, weights_url=url,
                         weights_hash=hash, weights_file=file, gated=gated)


def _payload(tmp_path, data=b"weights" * 1000, name="source.bin"):
    src = tmp_path / name
    src.write_bytes(data)
    return src


# -- places and modes ------------------------------------------------------------
def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("VFM_FEATURES_CACHE", str(tmp_path / "elsewhere"))
    assert W.cache_dir() == tmp_path / "elsewhere" / "weights"
    monkeypatch.setenv("VFM_FEATURES_CACHE", "~/vfmcache")
    assert W.cache_dir() == Path.home() / "vfmcache" / "weights"


def test_cache_dir_default_is_per_user(monkeypatch):
    monkeypatch.delenv("VFM_FEATURES_CACHE")
    from platformdirs import user_cache_dir

    assert W.cache_dir() == Path(user_cache_dir("vfm-features")) / "weights"


@pytest.mark.parametrize("var", ["VFM_FEATURES_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_env(monkeypatch, var):
    assert not W.is_offline()
    monkeypatch.setenv(var, "1")
    assert W.is_offline()
    monkeypatch.setenv(var, "0")
    assert not W.is_offline()


def test_weights_filename_falls_back_to_url():
    assert W.weights_filename(_spec("https://x.org/a/sam_vit_b_01ec64.pth", file=None)) == "sam_vit_b_01ec64.pth"
    assert W.weights_filename(_spec(None, file=None)) is None


# -- checksums -------------------------------------------------------------------
def test_file_hash_algorithms(tmp_path):
    src = _payload(tmp_path)
    data = src.read_bytes()
    assert W.file_hash(src, "sha256") == hashlib.sha256(data).hexdigest()
    assert W.file_hash(src, "md5") == hashlib.md5(data).hexdigest()
    xxhash = pytest.importorskip("xxhash")
    assert W.file_hash(src, "xxh128") == xxhash.xxh3_128(data).hexdigest()
    with pytest.raises(InputError, match="sha1"):
        W.file_hash(src, "sha1")


@pytest.mark.parametrize("bad", ["abc", "sha1:" + "0" * 40, "sha256:xyz", "xxh128:abcdef", "sha256:abc",
                                 "md5:" + "0" * 33])
def test_parse_hash_rejects(bad):
    with pytest.raises(InputError, match="hex|algo"):
        W.parse_hash(bad)


def test_verify_checksum_match_prefix_and_mismatch(tmp_path):
    src = _payload(tmp_path)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert W.verify_checksum(src, f"sha256:{sha}") == f"sha256:{sha}"
    assert W.verify_checksum(src, f"SHA256:{sha[:6].upper()}") == f"sha256:{sha}"  # prefix, any case
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    assert W.verify_checksum(src, f"md5:{md5}") == f"md5:{md5}"
    with pytest.raises(WeightsError) as err:
        W.verify_checksum(src, "sha256:" + "0" * 64)
    msg = str(err.value)
    assert str(src) in msg and "0" * 64 in msg and sha in msg and "Delete" in msg


def test_trust_on_first_use_sidecar(tmp_path):
    src = _payload(tmp_path)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    side = tmp_path / "source.bin.sha256"
    assert W.verify_checksum(src, None) == f"sha256:{sha}"
    assert side.read_text().split()[0] == sha
    assert W.verify_checksum(src, None) == f"sha256:{sha}"  # later loads compare
    src.write_bytes(b"something else")
    with pytest.raises(WeightsError, match="changed since it was first used"):
        W.verify_checksum(src, None)


# -- resolving -------------------------------------------------------------------
def test_user_path_wins_and_is_not_checked(tmp_path):
    src = _payload(tmp_path)
    spec = _spec("file:///nonexistent", hash="sha256:" + "0" * 64)
    (W.cache_dir()).mkdir(parents=True)
    (W.cache_dir() / "model.pt").write_bytes(b"cached")
    assert W.resolve_weights(spec, src) == src
    path, digest = W.fetch_weights(spec, str(src))
    assert digest == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    # a directory holding the expected file name
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "model.pt").write_bytes(b"x")
    assert W.resolve_weights(spec, tmp_path / "dir") == tmp_path / "dir" / "model.pt"


def test_user_path_missing(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve_weights(_spec("https://example.org/m.pt"), tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="model.pt"):
        W.resolve_weights(_spec("https://example.org/m.pt"), tmp_path / "empty")


def test_download_verifies_and_renames_atomically(tmp_path):
    src = _payload(tmp_path)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    seen = []
    spec = _spec(src.as_uri(), hash=f"sha256:{sha}")
    path, digest = W.fetch_weights(spec, progress=lambda done, total: seen.append((done, total)))
    assert path == W.cache_dir() / "model.pt" and path.read_bytes() == src.read_bytes()
    assert digest == f"sha256:{sha}"
    assert seen and seen[-1] == (src.stat().st_size, src.stat().st_size)
    assert sorted(p.name for p in W.cache_dir().iterdir()) == ["model.pt"]
    # cached now: no second download even offline
    src.unlink()
    assert W.resolve_weights(spec, offline=True, progress=False) == path


def test_download_with_bad_checksum_leaves_nothing(tmp_path):
    src = _payload(tmp_path)
    spec = _spec(src.as_uri(), hash="sha256:" + "1" * 64)
    with pytest.raises(WeightsError, match="corrupt.*Checksum mismatch"):
        W.resolve_weights(spec, progress=False)
    assert list(W.cache_dir().iterdir()) == []


def test_download_without_published_hash_records_sha256(tmp_path):
    src = _payload(tmp_path)
    path, digest = W.fetch_weights(_spec(src.as_uri()), progress=False)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert digest == f"sha256:{sha}"
    assert (W.cache_dir() / "model.pt.sha256").read_text().split()[0] == sha
    path.write_bytes(b"tampered")
    with pytest.raises(WeightsError, match="changed"):
        W.resolve_weights(_spec(src.as_uri()))


def test_interrupted_download_leaves_nothing(monkeypatch):
    class Broken(io.BytesIO):
        headers = {"Content-Length": "1000000"}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class Reset(Broken):
        def read(self, *args):
            raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Broken(b"partial"))
    with pytest.raises(WeightsError, match="stopped after 7 of 1000000 bytes"):
        W.resolve_weights(_spec("https://example.org/model.pt"), progress=False)
    assert list(W.cache_dir().iterdir()) == []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Reset(b""))
    with pytest.raises(WeightsError, match="failed after 0 bytes: connection reset"):
        W.resolve_weights(_spec("https://example.org/model.pt"), progress=True)
    assert list(W.cache_dir().iterdir()) == []


def test_http_errors_explain_what_to_do(monkeypatch):
    def forbidden(*a, **k):
        raise urllib.error.HTTPError("https://example.org/model.pt", 403, "Forbidden", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    with pytest.raises(WeightsError, match="HTTP 403.*gated.*https://example.org/model.pt.*weights=PATH"):
        W.resolve_weights(_spec("https://example.org/model.pt"), progress=False)


@pytest.mark.parametrize("how", ["argument", "env"])
def test_offline_without_file_says_what_to_download(monkeypatch, how):
    spec = _spec("https://example.org/model.pt", hash="xxh128:" + "0" * 32)
    if how == "env":
        monkeypatch.setenv("VFM_FEATURES_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        W.resolve_weights(spec, offline=True if how == "argument" else None)
    msg = str(err.value)
    assert "offline" in msg and "https://example.org/model.pt" in msg
    assert str(W.cache_dir() / "model.pt") in msg and "weights=PATH" in msg


def test_gated_or_urlless_weights_are_never_downloaded():
    with pytest.raises(WeightsError, match="gated.*request access"):
        W.resolve_weights(_spec("https://example.org/model.pt", gated=True))
    with pytest.raises(WeightsError, match="weights=PATH"):
        W.resolve_weights(_spec(None, file=None))
    with pytest.raises(WeightsError, match="no download URL"):
        W.resolve_weights(_spec(None, file="local.pt"))


# -- loading ---------------------------------------------------------------------
@needs_torch
def test_load_state_dict_plain(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"a": torch.arange(3.0), "nested": {"b": torch.ones(2)}}, path)
    sd = W.load_state_dict(path)
    assert torch.equal(sd["a"], torch.arange(3.0)) and torch.equal(sd["nested"]["b"], torch.ones(2))


@needs_torch
def test_load_state_dict_refuses_pickled_objects_unless_trusted(tmp_path):
    path = tmp_path / "training.pt"
    torch.save({"model_state": {"w": torch.ones(1)}, "config": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(WeightsError) as err:
        W.load_state_dict(path)
    msg = str(err.value)
    assert str(path) in msg and "trust_checkpoint=True" in msg and "Namespace" in msg
    sd = W.load_state_dict(path, trust_checkpoint=True)
    assert sd["config"].lr == 0.1


@needs_torch
def test_load_state_dict_module_and_garbage(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 3), path)
    assert set(W.load_state_dict(path, trust_checkpoint=True)) == {"weight", "bias"}
    bad = tmp_path / "bad.pt"
    for seed in range(40):  # random bytes fail inside torch.load in many different ways
        bad.write_bytes(random.Random(seed).randbytes(256))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(WeightsError, match="cannot be read.*corrupted"):
                W.load_state_dict(bad)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightsError, match="cannot be read"):
        W.load_state_dict(trunc)
    with pytest.raises(WeightsError, match="does not exist"):
        W.load_state_dict(tmp_path / "missing.pt")
    lst = tmp_path / "list.pt"
    torch.save([torch.ones(1)], lst)
    with pytest.raises(WeightsError, match="not a state dict"):
        W.load_state_dict(lst)


# -- device ----------------------------------------------------------------------
@needs_torch
def test_resolve_device():
    from vfm_features.models.device import available_devices, resolve_device

    auto = resolve_device("auto")
    assert auto in ("cpu", "cuda", "mps") and resolve_device(None) == auto
    assert resolve_device("CPU") == "cpu" and resolve_device(torch.device("cpu")) == "cpu"
    with pytest.raises(InputError, match="valid choices.*'cpu'"):
        resolve_device("tpu")
    with pytest.raises(InputError, match="valid choices"):
        resolve_device("mps:0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="not available.*'auto'"):
            resolve_device("cuda")
    assert "cpu" in available_devices()


@needs_torch
def test_autocast_dtype():
    from vfm_features.models.device import autocast, autocast_dtype

    assert autocast_dtype("cpu") is None and autocast_dtype("cuda", "fp32") is None
    assert autocast_dtype("cpu", "bf16") is torch.bfloat16
    assert autocast_dtype("mps", "half") is torch.float16
    with pytest.raises(InputError, match="bfloat16"):
        autocast_dtype("cpu", "float16")
    with pytest.raises(InputError, match="unknown"):
        autocast_dtype("cpu", "int8")
    with autocast("cpu", "bfloat16"):
        y = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert y.dtype == torch.bfloat16


def test_modules_do_not_import_torch():
    code = ("import sys, vfm_features.models.weights, vfm_features.models.device; "
            "vfm_features.models.weights.cache_dir(); vfm_features.models.weights.is_offline(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
