"""weights.py (cache, offline rule, checksums, download through pooch, safe loading) and device.py.

No test reaches the network: downloads come from an ``http.server`` on 127.0.0.1
started by the ``server`` fixture, and an autouse guard makes any attempt to resolve
or connect to another host (through requests, urllib or a bare socket) fail the test.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import ipaddress
import pickle
import random
import socket
import struct
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from vfm_features import ExtractorSpec, InputError, WeightsError
from vfm_features.models import weights as W

try:
    import torch
except ImportError:  # the cache, checksum and download tests run without torch
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _is_loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host is None or host == "localhost":
        return host == "localhost"
    try:
        return ipaddress.ip_address(str(host).strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """A private cache, online mode, no proxy, and no way to reach a host other than this machine."""
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(W.OFFLINE_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in _PROXY_VARS:  # requests would send even 127.0.0.1 through a proxy
        monkeypatch.delenv(var, raising=False)

    real_send = requests.Session.send

    def send(self, request, **kwargs):  # before requests resolves a name
        if not _is_loopback(urllib.parse.urlsplit(request.url).hostname):
            raise AssertionError(f"a test tried to reach the network: {request.url}")
        return real_send(self, request, **kwargs)

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):  # urllib, urllib3 and socket.create_connection resolve here
        if not _is_loopback(host):
            raise AssertionError(f"a test tried to reach the network: resolving {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    real_connect = socket.socket.connect

    def connect(self, address):  # literal addresses skip name resolution
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise AssertionError(f"a test tried to reach the network: connecting to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(requests.Session, "send", send)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


# -- a loopback HTTP server ---------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``/short/…``, ``/reset/…``, ``/nolength/…`` and ``/forbidden/…`` misbehave on purpose.

    ``short`` and ``reset`` announce 3000000 bytes; ``short`` sends 1.5 MiB of them and
    closes, ``reset`` sends none and resets the connection.
    """

    timeout = 10  # a stuck connection cannot hold a handler thread for longer

    def do_GET(self):
        kind, _, name = self.path.lstrip("/").partition("/")
        if kind == "forbidden":
            self.send_error(403, "Forbidden")
        elif kind in ("short", "reset"):
            self.send_response(200)
            self.send_header("Content-Length", "3000000")
            self.end_headers()
            if kind == "short":
                self.wfile.write(b"p" * (3 << 19))
            self.wfile.flush()
            if kind == "reset":  # close with a TCP reset
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif kind == "nolength":  # HTTP/1.0 without Content-Length: the body ends when the connection closes
            body = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        else:
            super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``root`` in a thread, stopped (and joined) after the test."""
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    try:
        yield SimpleNamespace(root=root, base=base,
                              url=lambda name, kind="": f"{base}/{kind}/{name}" if kind else f"{base}/{name}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the test HTTP server did not stop"


def _spec(url=None, hash=None, file="model.pt", gated=False):
    return ExtractorSpec(name="test:model", factory=lambda spec, **o: None, weights_url=url,
                         weights_hash=hash, weights_file=file, gated=gated)


def _payload(folder, data=b"weights" * 1000, name="source.bin"):
    src = folder / name
    src.write_bytes(data)
    return src


def _cache_listing():
    return sorted(p.name for p in W.cache_dir().iterdir()) if W.cache_dir().exists() else []


# -- the guard itself ----------------------------------------------------------------
def test_tests_cannot_reach_the_internet():
    """Any URL or address that is not this machine fails the test instead of being contacted."""
    with pytest.raises(AssertionError, match="reach the network"):
        W.resolve_weights(_spec("https://example.org/model.pt"), progress=False)
    assert _cache_listing() == []
    with pytest.raises(AssertionError, match="reach the network"):
        requests.get("http://93.184.216.34/model.pt", timeout=1)
    with pytest.raises(AssertionError, match="reach the network"):
        urllib.request.urlopen("http://example.org/model.pt", timeout=1)
    with pytest.raises(AssertionError, match="reach the network"):
        socket.create_connection(("93.184.216.34", 80), timeout=1)
    with pytest.raises(AssertionError, match="reach the network"):
        socket.create_connection(("example.org", 80), timeout=1)
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("10.0.0.1") and not _is_loopback("example.org")


def test_server_fixture_serves_files(server):
    _payload(server.root, b"hello", "a.txt")
    assert requests.get(server.url("a.txt"), timeout=5).content == b"hello"


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
    assert W.file_hash(str(src), "md5") == hashlib.md5(data).hexdigest()
    xxhash = pytest.importorskip("xxhash")
    assert W.file_hash(src, "xxh128") == xxhash.xxh3_128(data).hexdigest()
    with pytest.raises(InputError, match="sha1"):
        W.file_hash(src, "sha1")


def test_xxh128_without_xxhash_says_what_to_install(monkeypatch, tmp_path):
    real = W.importlib.util.find_spec
    monkeypatch.setattr(W.importlib.util, "find_spec", lambda name, *a: None if name == "xxhash" else real(name, *a))
    with pytest.raises(WeightsError, match=r"pip install 'vfm-features\[hash\]'"):
        W.file_hash(_payload(tmp_path), "xxh128")
    with pytest.raises(WeightsError, match="xxhash"):  # before any download is tried
        W.resolve_weights(_spec("http://127.0.0.1:9/model.pt", hash="xxh128:" + "0" * 32), progress=False)


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
    spec = _spec("http://127.0.0.1:9/never-contacted.pt", hash="sha256:" + "0" * 64)
    (W.cache_dir()).mkdir(parents=True)
    (W.cache_dir() / "model.pt").write_bytes(b"cached")
    assert W.resolve_weights(spec, src) == src
    path, digest = W.fetch_weights(spec, str(src))
    assert path == src and digest == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
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


def test_download_verifies_and_moves_into_place(server):
    src = _payload(server.root, b"w" * (3 * (1 << 20) + 123))  # several 1 MiB chunks
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    seen = []
    spec = _spec(server.url("source.bin"), hash=f"sha256:{sha}")
    path, digest = W.fetch_weights(spec, progress=lambda done, total: seen.append((done, total)))
    assert path == W.cache_dir() / "model.pt" and path.read_bytes() == src.read_bytes()
    assert digest == f"sha256:{sha}"
    size = src.stat().st_size
    assert len(seen) >= 4 and seen[-1] == (size, size)
    assert all(total == size and 0 < done <= size for done, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert _cache_listing() == ["model.pt"]  # no temporary file, no sidecar (a hash was published)
    # cached now: no second download even offline
    src.unlink()
    assert W.resolve_weights(spec, offline=True, progress=False) == path


@pytest.mark.parametrize("algo", ["xxh128", "md5", "sha256-prefix"])
def test_download_with_other_published_hashes(server, algo):
    src = _payload(server.root)
    data = src.read_bytes()
    if algo == "xxh128":
        xxhash = pytest.importorskip("xxhash")
        full = f"xxh128:{xxhash.xxh3_128(data).hexdigest()}"
        published = full
    elif algo == "md5":
        full = published = f"md5:{hashlib.md5(data).hexdigest()}"
    else:
        full = f"sha256:{hashlib.sha256(data).hexdigest()}"
        published = full[: len("sha256:") + 8]
    assert W.fetch_weights(_spec(server.url("source.bin"), hash=published), progress=False)[1] == full
    assert _cache_listing() == ["model.pt"]


def test_download_without_content_length_reports_unknown_total(server):
    src = _payload(server.root)
    seen = []
    W.resolve_weights(_spec(server.url("source.bin", "nolength")), progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1] == (src.stat().st_size, None)


def test_download_progress_bar(server, capsys):
    _payload(server.root)
    W.resolve_weights(_spec(server.url("source.bin"), file="bar.pt"), progress=True)
    assert "bar.pt" in capsys.readouterr().err  # tqdm's bar, labelled with the file name


@pytest.mark.parametrize("published", ["sha256:" + "1" * 64, "sha256:111111", "xxh128:" + "1" * 32])
def test_download_with_bad_checksum_leaves_nothing(server, published):
    if published.startswith("xxh128"):
        pytest.importorskip("xxhash")
    _payload(server.root)
    spec = _spec(server.url("source.bin"), hash=published)
    with pytest.raises(WeightsError, match="corrupt.*Checksum mismatch") as err:
        W.resolve_weights(spec, progress=False)
    assert server.url("source.bin") in str(err.value) and "weights=PATH" in str(err.value)
    assert _cache_listing() == []


def test_download_without_published_hash_records_sha256(server):
    src = _payload(server.root)
    spec = _spec(server.url("source.bin"))
    path, digest = W.fetch_weights(spec, progress=False)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert digest == f"sha256:{sha}"
    assert (W.cache_dir() / "model.pt.sha256").read_text().split()[0] == sha
    assert W.fetch_weights(spec, progress=False)[1] == f"sha256:{sha}"  # from the cache, compared
    path.write_bytes(b"tampered")
    with pytest.raises(WeightsError, match="changed"):
        W.resolve_weights(spec)


def test_stale_sidecar_is_replaced_on_download(server):
    src = _payload(server.root)
    W.cache_dir().mkdir(parents=True)
    (W.cache_dir() / "model.pt.sha256").write_text("0" * 64 + "  model.pt\n")  # of an older, deleted file
    digest = W.fetch_weights(_spec(server.url("source.bin")), progress=False)[1]
    assert digest == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    assert (W.cache_dir() / "model.pt.sha256").read_text().split()[0] == digest.split(":")[1]


@pytest.mark.parametrize("progress", [False, True, "callable"])
def test_interrupted_download_leaves_nothing(server, progress):
    if progress == "callable":
        progress = lambda done, total: None  # noqa: E731
    with pytest.raises(WeightsError, match=r"stopped after (\d+) of 3000000 bytes.*Try again") as err:
        W.resolve_weights(_spec(server.url("model.pt", "short")), progress=progress)
    msg = str(err.value)
    assert 0 < int(msg.split("stopped after ")[1].split()[0]) <= 3 << 19  # what reached the disk
    assert "IncompleteRead" in msg and "weights=PATH" in msg and "((" not in msg
    assert _cache_listing() == []
    with pytest.raises(WeightsError, match="stopped after 0 of 3000000 bytes"):
        W.resolve_weights(_spec(server.url("model.pt", "reset")), progress=progress)
    assert _cache_listing() == []


def test_http_errors_explain_what_to_do(server):
    url = server.url("model.pt", "forbidden")
    with pytest.raises(WeightsError, match="HTTP 403.*gated.*weights=PATH") as err:
        W.resolve_weights(_spec(url), progress=False)
    assert url in str(err.value)
    with pytest.raises(WeightsError, match="HTTP 404") as err:
        W.resolve_weights(_spec(server.url("missing.pt")), progress=False)
    assert "gated" not in str(err.value) and str(W.cache_dir() / "model.pt") in str(err.value)
    assert _cache_listing() == []


def test_unreachable_server_explains_what_to_do():
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.pt"
    with pytest.raises(WeightsError, match="failed.*Try again.*weights=PATH") as err:
        W.resolve_weights(_spec(url), progress=False)
    assert url in str(err.value)


def test_pooch_log_is_quiet_unless_a_bar_is_shown(server, capsys):
    import pooch

    _payload(server.root)
    level = pooch.get_logger().level
    W.resolve_weights(_spec(server.url("source.bin")), progress=False)
    assert capsys.readouterr().err == ""
    assert pooch.get_logger().level == level


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
    with pytest.raises(WeightsError, match="gated.*request access") as err:
        W.resolve_weights(_spec("https://example.org/model.pt", gated=True))
    assert "https://example.org/model.pt" in str(err.value) and str(W.cache_dir() / "model.pt") in str(err.value)
    with pytest.raises(WeightsError, match="weights=PATH"):
        W.resolve_weights(_spec(None, file=None))
    with pytest.raises(WeightsError, match="no download URL"):
        W.resolve_weights(_spec(None, file="local.pt"))


# -- loading ---------------------------------------------------------------------
class TrainingConfig:
    """A class of this module that a training checkpoint pickles (safe loading refuses it)."""

    def __init__(self, lr):
        self.lr = lr


@needs_torch
def test_load_state_dict_plain(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"a": torch.arange(3.0), "nested": {"b": torch.ones(2)}}, path)
    sd = W.load_state_dict(path)
    assert torch.equal(sd["a"], torch.arange(3.0)) and torch.equal(sd["nested"]["b"], torch.ones(2))


@needs_torch
def test_load_state_dict_refuses_pickled_objects_unless_trusted(tmp_path):
    path = tmp_path / "training.pt"
    torch.save({"model_state": {"w": torch.ones(1)}, "config": TrainingConfig(0.1),
                "args": argparse.Namespace(epochs=3)}, path)
    with pytest.raises(WeightsError) as err:
        W.load_state_dict(path)
    msg = str(err.value)
    assert str(path) in msg and "pickles Python objects" in msg and "TrainingConfig" in msg
    assert "trust_checkpoint=True" in msg and "run code" in msg and "torch.save(" in msg
    assert "truncated" not in msg and "corrupted" not in msg
    sd = W.load_state_dict(path, trust_checkpoint=True)
    assert sd["config"].lr == 0.1 and sd["args"].epochs == 3


@needs_torch
def test_refusal_is_recognised_whatever_torch_says(monkeypatch, tmp_path):
    """The kind of failure comes from the exception type and torch's list of globals, not its wording."""
    path = tmp_path / "training.pt"
    torch.save({"config": TrainingConfig(0.1)}, path)
    real = torch.load

    def reworded(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except pickle.UnpicklingError:
            raise pickle.UnpicklingError("a message in words no test has seen") from None

    monkeypatch.setattr(torch, "load", reworded)
    with pytest.raises(WeightsError, match="pickles Python objects.*TrainingConfig"):
        W.load_state_dict(path)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(random.Random(0).randbytes(256))
    with pytest.raises(WeightsError, match="cannot be read.*corrupted"):
        W.load_state_dict(damaged)


@needs_torch
def test_refusal_without_torch_support_says_both(monkeypatch, tmp_path):
    """A torch without get_unsafe_globals_in_checkpoint cannot tell; the error says what each case needs."""
    path = tmp_path / "training.pt"
    torch.save({"config": TrainingConfig(0.1)}, path)
    monkeypatch.delattr(torch.serialization, "get_unsafe_globals_in_checkpoint", raising=False)
    with pytest.raises(WeightsError, match="cannot tell.*corrupted.*trust_checkpoint=True"):
        W.load_state_dict(path)


@needs_torch
def test_legacy_format_checkpoint(tmp_path):
    plain = tmp_path / "legacy_plain.pt"
    torch.save({"w": torch.ones(2)}, plain, _use_new_zipfile_serialization=False)
    assert torch.equal(W.load_state_dict(plain)["w"], torch.ones(2))
    objects = tmp_path / "legacy_objects.pt"
    torch.save({"config": TrainingConfig(0.1)}, objects, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match="cannot tell.*trust_checkpoint=True"):
        W.load_state_dict(objects)
    assert W.load_state_dict(objects, trust_checkpoint=True)["config"].lr == 0.1


@needs_torch
def test_load_state_dict_module_and_garbage(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 3), path)
    assert set(W.load_state_dict(path, trust_checkpoint=True)) == {"weight", "bias"}
    bad = tmp_path / "bad.pt"
    for seed in range(40):  # random bytes fail inside torch.load in many different ways
        bad.write_bytes(random.Random(seed).randbytes(256))
        for trust in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with pytest.raises(WeightsError, match="cannot be read.*corrupted") as err:
                    W.load_state_dict(bad, trust_checkpoint=trust)
            assert "pickles Python objects" not in str(err.value)
    trunc = tmp_path / "trunc.pt"
    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.arange(1000.0)}, plain)
    for cut in (200, len(plain.read_bytes()) // 2, len(plain.read_bytes()) - 30):
        trunc.write_bytes(plain.read_bytes()[:cut])
        with pytest.raises(WeightsError, match="cannot be read.*truncated or corrupted"):
            W.load_state_dict(trunc)
    with pytest.raises(WeightsError, match="does not exist"):
        W.load_state_dict(tmp_path / "missing.pt")
    lst = tmp_path / "list.pt"
    torch.save([torch.ones(1)], lst)
    with pytest.raises(WeightsError, match="not a state dict"):
        W.load_state_dict(lst)


@needs_torch
def test_trusted_checkpoint_needing_a_missing_module(tmp_path):
    path = tmp_path / "foreign.pt"
    with open(path, "wb") as f:  # a pickle of a global from a module that does not exist
        f.write(b"\x80\x02cnot_installed_module_xyz\nThing\nq\x00.")
    with pytest.raises(WeightsError, match="not_installed_module_xyz.*not installed"):
        W.load_state_dict(path, trust_checkpoint=True)


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


def test_modules_do_not_import_torch_or_pooch():
    code = ("import sys, vfm_features.models.weights, vfm_features.models.device; "
            "vfm_features.models.weights.cache_dir(); vfm_features.models.weights.is_offline(); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'pooch' not in sys.modules and 'requests' not in sys.modules, 'pooch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
