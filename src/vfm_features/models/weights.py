"""Model weights: where they live, how they are downloaded, checked and loaded.

One rule for every plugin:

1. A file the user passes (``weights=PATH``) wins.
2. Otherwise the cache file ``cache_dir() / spec.weights_file`` is used when present.
3. Otherwise ``spec.weights_url`` is downloaded into the cache (temp file, checksum,
   atomic rename), unless offline mode is on or the weights are gated; then a
   :class:`~vfm_features.errors.WeightsError` says what to download, from where and
   where to put it.

Checksums are ``"algo:hexdigest"`` (``sha256``, ``xxh128`` or ``md5``; a ``sha256``
digest may be a prefix of at least 6 hex digits). Where the publisher gives none,
the sha256 of the file is recorded next to it on first use (``<file>.sha256``,
trust on first use) and checked on every later load.

Nothing here imports torch at module import time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from vfm_features.errors import InputError, WeightsError

if TYPE_CHECKING:
    from vfm_features.spec import ExtractorSpec

__all__ = [
    "CACHE_ENV",
    "HASH_ALGOS",
    "OFFLINE_ENV",
    "cache_dir",
    "cache_root",
    "fetch_weights",
    "file_hash",
    "is_offline",
    "load_state_dict",
    "parse_hash",
    "resolve_weights",
    "verify_checksum",
    "weights_filename",
]

log = logging.getLogger(__name__)

CACHE_ENV = "VFM_FEATURES_CACHE"
OFFLINE_ENV = "VFM_FEATURES_OFFLINE"
HASH_ALGOS = ("sha256", "xxh128", "md5")
SIDECAR_SUFFIX = ".sha256"
_HEX_LEN = {"sha256": 64, "xxh128": 32, "md5": 32}
_MIN_PREFIX = 6
_CHUNK = 1 << 20
_TRUE = ("1", "true", "yes", "on")

Progress = Union[bool, Callable[[int, Union[int, None]], None]]


# -- places ------------------------------------------------------------------
def cache_root() -> Path:
    """Root of the per-user vfm-features cache: ``$VFM_FEATURES_CACHE`` or platformdirs' user cache dir."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vfm-features"))


def cache_dir() -> Path:
    """Directory for downloaded weights: ``cache_root() / "weights"`` (not created here).

    ``VFM_FEATURES_CACHE=/data/vfm`` puts weights in ``/data/vfm/weights``.
    """
    return cache_root() / "weights"


def is_offline() -> bool:
    """True when ``VFM_FEATURES_OFFLINE`` (or ``HF_HUB_OFFLINE``) is set to 1/true/yes/on."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in (OFFLINE_ENV, "HF_HUB_OFFLINE"))


def weights_filename(spec: "ExtractorSpec") -> str | None:
    """The cache file name of ``spec``: ``spec.weights_file`` or the URL's last path part."""
    if spec.weights_file:
        return spec.weights_file
    if spec.weights_url:
        name = Path(urllib.parse.urlparse(spec.weights_url).path).name
        return name or None
    return None


# -- checksums ---------------------------------------------------------------
def _hasher(algo: str) -> Any:
    if algo == "xxh128":
        try:
            import xxhash
        except ImportError:
            raise WeightsError(
                "Checking an xxh128 checksum needs the package xxhash, which is not installed. "
                "Install it with: pip install 'vfm-features[hash]'") from None
        return xxhash.xxh3_128()
    if algo in ("sha256", "md5"):
        return hashlib.new(algo)
    raise InputError(f"Unknown hash algorithm {algo!r}; use one of {HASH_ALGOS}.")


def file_hash(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of the file at ``path`` with ``algo`` ('sha256', 'xxh128' or 'md5'), read in 1 MiB chunks."""
    h = _hasher(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_hash(expected: str) -> tuple[str, str]:
    """``"algo:hexdigest"`` -> ``(algo, hexdigest)``, validated (a sha256 may be a prefix of >= 6 digits)."""
    algo, sep, digest = str(expected).partition(":")
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if not sep or algo not in HASH_ALGOS or not re.fullmatch(r"[0-9a-f]+", digest):
        raise InputError(
            f"Checksum {expected!r} is not of the form 'algo:hexdigest' with algo in {HASH_ALGOS}; "
            "for example 'sha256:ec2df627…' or 'xxh128:6923c33d…'.")
    n = _HEX_LEN[algo]
    if len(digest) > n or (len(digest) < n and not (algo == "sha256" and len(digest) >= _MIN_PREFIX)):
        raise InputError(
            f"Checksum {expected!r} has {len(digest)} hex digits; {algo} has {n} "
            f"(only sha256 may be given as a prefix of at least {_MIN_PREFIX} digits).")
    return algo, digest


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def verify_checksum(path: str | os.PathLike, expected: str | None) -> str:
    """Check the file at ``path`` against ``expected`` ("algo:hexdigest"); return the verified "algo:hexdigest".

    ``expected=None`` (no checksum published): trust on first use. The sha256 is
    recorded in ``<file>.sha256`` the first time and compared on every later call.
    Raises :class:`WeightsError` naming the file, both digests and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist.")
    if expected is None:
        side = _sidecar(path)
        actual = file_hash(path, "sha256")
        if not side.exists():
            try:
                _write_atomic(side, f"{actual}  {path.name}\n")
                log.info("No published checksum for %s; recorded sha256 %s in %s (trust on first use).",
                         path.name, actual, side)
            except OSError as exc:  # read-only location: still usable, just not pinned
                log.warning("Could not record the sha256 of %s in %s: %s", path, side, exc)
            return f"sha256:{actual}"
        words = side.read_text().split()
        recorded = words[0].lower() if words else ""
        if recorded != actual:
            raise WeightsError(
                f"Weights file {path} changed since it was first used: its sha256 is {actual}, but "
                f"{side} recorded {recorded or '(empty)'}. Delete both files to download them again, "
                f"or delete only {side.name} if you replaced the weights on purpose.")
        return f"sha256:{actual}"
    algo, digest = parse_hash(expected)
    actual = file_hash(path, algo)
    if not actual.startswith(digest):
        raise WeightsError(
            f"Checksum mismatch for weights file {path}: expected {algo} {digest}, got {actual}. "
            "The file is corrupted, incomplete or a different model. Delete it so that it is "
            "downloaded again, or pass the intended file with weights=PATH.")
    return f"{algo}:{actual}"


# -- finding or downloading --------------------------------------------------
def _manual_help(spec: "ExtractorSpec", target: Path | None) -> str:
    where = f"save it as {target}" if target is not None else "save it anywhere"
    src = f"Download it from {spec.weights_url}" if spec.weights_url else "Obtain the weights file"
    gated = (" These weights are gated: request access from the publisher first; the download link "
             "you receive may be personal and expiring." if spec.gated else "")
    return (f"{src} and {where} (set {CACHE_ENV} to move the cache), "
            f"or pass the file directly with weights=PATH.{gated}")


def resolve_weights(spec: "ExtractorSpec", path: str | os.PathLike | None = None, *,
                    offline: bool | None = None, progress: Progress = True) -> Path:
    """Path of the weights file for ``spec``, downloading it into the cache if needed.

    ``path`` (a file, or a directory holding ``spec.weights_file``) wins and is
    returned without checksum test (it may be a fine-tuned model); cached and
    downloaded files are verified against ``spec.weights_hash``. ``offline``
    defaults to :func:`is_offline`. ``progress`` is True (tqdm bar), False, or a
    callable ``progress(bytes_done, bytes_total_or_None)``.
    """
    return fetch_weights(spec, path, offline=offline, progress=progress)[0]


def fetch_weights(spec: "ExtractorSpec", path: str | os.PathLike | None = None, *,
                  offline: bool | None = None, progress: Progress = True) -> tuple[Path, str]:
    """Like :func:`resolve_weights`, and also the file's verified checksum as ``"algo:hexdigest"``.

    For a user ``path`` the checksum is computed with the algorithm of
    ``spec.weights_hash`` (sha256 when none is published) and reported, not
    enforced: whether it equals the published one is logged.
    """
    if path is not None:
        found = _user_path(spec, Path(path).expanduser())
        algo = parse_hash(spec.weights_hash)[0] if spec.weights_hash else "sha256"
        digest = f"{algo}:{file_hash(found, algo)}"
        if spec.weights_hash:
            same = digest.startswith(spec.weights_hash.lower())
            log.info("%s: using %s (%s the published weights).", spec.name, found,
                     "identical to" if same else "differs from")
        return found, digest
    name = weights_filename(spec)
    if name is None:
        raise WeightsError(
            f"{spec.name} has no download URL or file name; pass the weights file with weights=PATH.")
    target = cache_dir() / name
    if not target.is_file():
        offline = is_offline() if offline is None else offline
        if offline or spec.gated or not spec.weights_url:
            why = ("offline mode is on" if offline else "the weights are gated" if spec.gated
                   else "no download URL is known")
            raise WeightsError(
                f"Weights for {spec.name} are not in the cache ({target}) and {why}. " + _manual_help(spec, target))
        return target, _download(spec, target, progress)
    return target, verify_checksum(target, spec.weights_hash)


def _user_path(spec: "ExtractorSpec", path: Path) -> Path:
    if path.is_dir():
        name = weights_filename(spec)
        candidate = path / name if name else None
        if candidate is None or not candidate.is_file():
            raise WeightsError(
                f"weights={str(path)!r} is a directory without the file {name!r} for {spec.name}; "
                "pass the weights file itself.")
        return candidate
    if not path.is_file():
        raise WeightsError(f"weights={str(path)!r} does not exist. Pass an existing file, or leave weights "
                           f"unset to use the cache. " + _manual_help(spec, None))
    return path


def _download(spec: "ExtractorSpec", target: Path, progress: Progress) -> str:
    url = str(spec.weights_url)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, spec, target, progress)
        if spec.weights_hash is not None:
            try:
                digest = verify_checksum(tmp, spec.weights_hash)
            except WeightsError as exc:
                raise WeightsError(f"Download of {url} for {spec.name} is corrupt: {exc}") from None
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if spec.weights_hash is None:
        _sidecar(target).unlink(missing_ok=True)  # a stale record of an older file
        digest = verify_checksum(target, None)  # records the sha256 (trust on first use)
    log.info("Downloaded %s to %s", url, target)
    return digest


def _stream(url: str, out: Any, spec: "ExtractorSpec", target: Path, progress: Progress) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "vfm-features"})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        gated = " (access denied: the weights may be gated)" if exc.code in (401, 403) else ""
        raise WeightsError(f"Downloading weights for {spec.name} failed: HTTP {exc.code} {exc.reason}{gated}. "
                           + _manual_help(spec, target)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(f"Downloading weights for {spec.name} failed: {reason}. "
                           + _manual_help(spec, target)) from None
    with response:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        bar = None
        if progress is True:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name)
        done = 0
        try:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                done += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                elif callable(progress):
                    progress(done, total)
        except OSError as exc:  # connection lost, timeout, disk full
            raise WeightsError(f"Download of {url} for {spec.name} failed after {done} bytes: {exc}. "
                               "Try again. " + _manual_help(spec, target)) from None
        finally:
            if bar is not None:
                bar.close()
    if total is not None and done != total:
        raise WeightsError(f"Download of {url} for {spec.name} stopped after {done} of {total} bytes. "
                           "Try again. " + _manual_help(spec, target))


# -- loading -----------------------------------------------------------------
def load_state_dict(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> dict:
    """Load a torch checkpoint on the CPU, refusing pickled code unless ``trust_checkpoint``.

    ``torch.load(..., weights_only=True)`` accepts tensors and plain containers only.
    A checkpoint that pickles other objects (training configs, optimisers, numpy
    scalars) raises :class:`WeightsError`; ``trust_checkpoint=True`` loads it with
    ``weights_only=False``, which can run code from the file: use it only for a
    file from a source you trust. A pickled ``nn.Module`` is turned into its state dict.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        found = re.search(r"Unsupported (?:global|class):? (?:GLOBAL )?([\w.]+)", msg)
        if not trust_checkpoint and found:
            what = f" (first one: {found.group(1)})"
            raise WeightsError(
                f"Weights file {path} contains pickled Python objects besides tensors{what}, which "
                "safe loading (torch.load weights_only=True) refuses. If you trust the source of this "
                "file, pass trust_checkpoint=True to load it anyway (this can run code stored in the "
                "file); otherwise re-save its state dict with torch.save(model.state_dict(), ...).") from None
        detail = re.search(r"WeightsUnpickler error: \s*([^\n]+)", msg)
        first = detail.group(1).strip() if detail else msg.splitlines()[0]
        raise WeightsError(f"Weights file {path} cannot be read as a torch checkpoint ({first}). "
                           "It may be truncated or corrupted: delete it and download it again.") from None
    except ModuleNotFoundError as exc:
        raise WeightsError(f"Weights file {path} pickles objects from the module {exc.name!r}, which is not "
                           f"installed; install it to load this trusted checkpoint.") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways (IndexError, KeyError, …)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"Weights file {path} cannot be read as a torch checkpoint ({first}). "
                           "It may be truncated or corrupted: delete it and download it again.") from None
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise WeightsError(f"Weights file {path} holds a {type(obj).__name__}, not a state dict.")
    return obj
