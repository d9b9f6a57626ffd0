"""Model weights: where they live, how they are downloaded, checked and loaded.

One rule for every plugin:

1. A file the user passes (``weights=PATH``) wins.
2. Otherwise the cache file ``cache_dir() / spec.weights_file`` is used when present.
3. Otherwise ``spec.weights_url`` is downloaded into the cache with `pooch
   <https://www.fatiando.org/pooch>`_ (a temporary file in the cache folder, the
   published checksum checked, then moved into place), unless offline mode is on or
   the weights are gated; then a :class:`~vfm_features.errors.WeightsError` says
   what to download, from where and where to put it.

Checksums are ``"algo:hexdigest"`` (``sha256``, ``xxh128`` or ``md5``; a ``sha256``
digest may be a prefix of at least 6 hex digits). Where the publisher gives none,
the sha256 of the file is recorded next to it on first use (``<file>.sha256``,
trust on first use) and checked on every later load.

Nothing here imports torch (or pooch) at module import time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pickle
import re
import tempfile
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Union

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
_CHUNK = 1 << 20  # download chunk: one progress report per MiB
_TIMEOUT = 60  # seconds without data before a download is given up
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
def _check_algo(algo: str) -> None:
    if algo not in HASH_ALGOS:
        raise InputError(f"Unknown hash algorithm {algo!r}; use one of {HASH_ALGOS}.")
    if algo == "xxh128" and importlib.util.find_spec("xxhash") is None:
        raise WeightsError(
            "Checking an xxh128 checksum needs the package xxhash, which is not installed. "
            "Install it with: pip install 'vfm-features[hash]'")


def file_hash(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of the file at ``path`` with ``algo`` ('sha256', 'xxh128' or 'md5'), computed by pooch."""
    _check_algo(algo)
    import pooch

    return pooch.file_hash(os.fspath(path), alg=algo)


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


class _ProgressBar:
    """pooch's progress-bar protocol (``total``, ``update``, ``reset``, ``close``) over our ``progress``.

    pooch reports fixed chunk sizes; the bytes really received are read from the
    size of the temporary file, which pooch flushes after every chunk. ``done`` and
    ``total`` stay readable after a failure, for the error message.
    """

    def __init__(self, progress: Progress, tmp_file: str, label: str):
        self._progress, self._tmp, self._label = progress, tmp_file, label
        self._bar: Any = None
        self._total: int | None = None
        self.done = 0

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:  # pooch sets the Content-Length, 0 when unknown
        self._total = int(value) if value else None
        if self._progress is True and self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self._total, unit="B", unit_scale=True, unit_divisor=1024, desc=self._label)

    def measure(self) -> None:
        with contextlib.suppress(OSError):
            self.done = os.path.getsize(self._tmp)

    def update(self, _chunk: int) -> None:
        self.measure()
        if self._bar is not None:
            self._bar.update(self.done - self._bar.n)
        elif callable(self._progress):
            self._progress(self.done, self._total)

    def reset(self) -> None:  # pooch resets then sets the final count; update() reads the real size
        pass

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _Downloader:
    """A pooch downloader: pooch's HTTPDownloader with our progress adapter, timeout and user agent.

    Also checks a published sha256 *prefix* (which pooch cannot compare) on the
    temporary file, before pooch moves it into the cache.
    """

    def __init__(self, spec: "ExtractorSpec", label: str, progress: Progress, check_prefix: str | None):
        self.spec, self.label, self.progress, self.check_prefix = spec, label, progress, check_prefix
        self.bar: _ProgressBar | None = None
        self.digest: str | None = None  # the verified "algo:hexdigest" when a prefix was checked
        self.finished = False  # the file was received (and a prefix checked): pooch's hash check comes next

    def __call__(self, url: str, output_file: str, pooch_obj: Any) -> None:
        import pooch

        self.bar = _ProgressBar(self.progress, output_file, self.label)
        http = pooch.HTTPDownloader(progressbar=self.bar, chunk_size=_CHUNK, timeout=_TIMEOUT,
                                    headers={"User-Agent": "vfm-features (pooch)"})
        try:
            http(url, output_file, pooch_obj)
        finally:
            self.bar.measure()  # the bytes received, before pooch deletes a failed download
            self.bar.close()
        if self.check_prefix is not None:
            try:
                self.digest = verify_checksum(output_file, self.check_prefix)
            except WeightsError as exc:
                raise WeightsError(f"Download of {url} for {self.spec.name} is corrupt: {exc}") from None
        self.finished = True


@contextlib.contextmanager
def _pooch_log_level(level: int) -> Iterator[None]:
    """pooch logs to stderr at INFO level; keep it quiet unless a progress bar was asked for."""
    import pooch

    logger = pooch.get_logger()
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def _download(spec: "ExtractorSpec", target: Path, progress: Progress) -> str:
    import pooch
    import requests

    url = str(spec.weights_url)
    expected = parse_hash(spec.weights_hash) if spec.weights_hash else None
    full = expected is not None and len(expected[1]) == _HEX_LEN[expected[0]]
    if expected is not None:
        _check_algo(expected[0])  # the xxhash install hint before downloading, not after
    # pooch compares full digests itself; a sha256 prefix is checked by our downloader instead
    known = ":".join(expected) if full and expected is not None else None
    fetcher = pooch.create(path=target.parent, base_url="", registry={target.name: known},
                           urls={target.name: url}, allow_updates=False)
    downloader = _Downloader(spec, target.name, progress, None if full or expected is None else spec.weights_hash)
    again = "Try again. " + _manual_help(spec, target)
    try:
        with _pooch_log_level(logging.INFO if progress is True else logging.WARNING):
            fetcher.fetch(target.name, downloader=downloader)
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "?"
        reason = exc.response.reason if exc.response is not None else exc
        gated = " (access denied: the weights may be gated)" if code in (401, 403) else ""
        raise WeightsError(f"Downloading weights for {spec.name} failed: HTTP {code} {reason}{gated}. "
                           + _manual_help(spec, target)) from None
    except requests.RequestException as exc:  # no connection, timeout, a response that broke off
        bar = downloader.bar
        if bar is not None and (bar.done or bar.total):
            of = f" of {bar.total}" if bar.total else ""
            raise WeightsError(f"Download of {url} for {spec.name} stopped after {bar.done}{of} bytes "
                               f"({_first_line(exc)}). Nothing was saved. {again}") from None
        raise WeightsError(f"Downloading weights for {spec.name} failed: {_first_line(exc)}. {again}") from None
    except ValueError as exc:
        if not (downloader.finished and known):
            raise
        # raised by pooch between our downloader and the move: its type for a checksum that does not
        # match (it deleted the download)
        raise WeightsError(
            f"Download of {url} for {spec.name} is corrupt: Checksum mismatch, expected {spec.weights_hash} "
            f"({exc}). Nothing was saved. {again}") from None
    except OSError as exc:  # cache folder not writable, disk full
        raise WeightsError(f"Could not save the weights for {spec.name} in {target.parent}: {exc}. "
                           f"Set {CACHE_ENV} to a writable folder, or download the file yourself: "
                           + _manual_help(spec, target)) from None
    log.info("Downloaded %s to %s", url, target)
    if expected is None:
        _sidecar(target).unlink(missing_ok=True)  # a stale record of an older file
        return verify_checksum(target, None)  # records the sha256 (trust on first use)
    if full:
        return ":".join(expected)  # verified by pooch before the file was moved into place
    return downloader.digest or verify_checksum(target, spec.weights_hash)


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (requests nests urllib3's exception in its args)."""
    while exc.args and isinstance(exc.args[0], BaseException):
        exc = exc.args[0]
    text = (exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- loading -----------------------------------------------------------------
def _is_legacy_checkpoint(path: Path) -> bool:
    """True for torch's pre-1.6 (non-zip) format, which starts with a pickled magic number."""
    import torch.serialization

    magic = getattr(torch.serialization, "MAGIC_NUMBER", None)
    if magic is None:
        return False
    head = pickle.dumps(magic, protocol=2)[:-1]  # without the STOP opcode
    with open(path, "rb") as f:
        return f.read(len(head)) == head


def _resave_hint() -> str:
    return ("To get a file that loads safely, load it once with trust_checkpoint=True (only if you trust its "
            "source) and re-save the tensors alone: torch.save(state_dict, 'weights.pt'), where state_dict "
            "is model.state_dict() or the checkpoint's dict of tensors.")


def _refused(path: Path) -> WeightsError:
    """The error for a file that ``torch.load(weights_only=True)`` refused with ``UnpicklingError``.

    Which one it is comes from asking torch which globals the file needs, not from
    torch's message: some -> the file pickles Python objects; none -> it is damaged.
    Where torch cannot tell (a torch without ``get_unsafe_globals_in_checkpoint``,
    or a pre-1.6 non-zip checkpoint, which it cannot inspect) the error says both.
    """
    import torch.serialization

    ask = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    names: list[str] | None = None
    if ask is not None:
        try:
            names = [str(name) for name in ask(str(path))]
        except Exception:  # noqa: BLE001 - not a zip checkpoint: damaged, or torch's legacy format
            names = None
    if names:
        first = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return WeightsError(
            f"Weights file {path} pickles Python objects besides tensors ({first}), which safe loading "
            "(torch.load weights_only=True) refuses. trust_checkpoint=True loads it anyway, but unpickling "
            "can run code stored in the file: use it only for a file from a source you trust. "
            + _resave_hint())
    if ask is None or (names is None and _is_legacy_checkpoint(path)):
        return WeightsError(
            f"Weights file {path} was refused by safe loading (torch.load weights_only=True), and this torch "
            "cannot tell whether it pickles Python objects or is damaged. If it is damaged (truncated or "
            "corrupted), delete it and download it again. If it pickles Python objects and you trust its "
            "source, trust_checkpoint=True loads it (this can run code stored in the file). " + _resave_hint())
    return WeightsError(f"Weights file {path} cannot be read as a torch checkpoint. It may be truncated or "
                        "corrupted: delete it and download it again.")


def load_state_dict(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> dict:
    """Load a torch checkpoint on the CPU, refusing pickled code unless ``trust_checkpoint``.

    ``torch.load(..., weights_only=True)`` accepts tensors and plain containers only.
    A checkpoint that pickles other objects (training configs, optimisers, numpy
    scalars) raises :class:`WeightsError` naming them, found by asking torch which
    globals the file needs (not by reading torch's message); ``trust_checkpoint=True``
    loads it with ``weights_only=False``, which can run code from the file: use it
    only for a file from a source you trust. A pickled ``nn.Module`` is turned into
    its state dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        if not trust_checkpoint:
            raise _refused(path) from None
        raise WeightsError(f"Weights file {path} cannot be read as a torch checkpoint ({_first_line(exc)}). "
                           "It may be truncated or corrupted: delete it and download it again.") from None
    except ModuleNotFoundError as exc:
        raise WeightsError(f"Weights file {path} pickles objects from the module {exc.name!r}, which is not "
                           f"installed; install it to load this trusted checkpoint.") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways (IndexError, KeyError, …)
        raise WeightsError(f"Weights file {path} cannot be read as a torch checkpoint ({_first_line(exc)}). "
                           "It may be truncated or corrupted: delete it and download it again.") from None
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise WeightsError(f"Weights file {path} holds a {type(obj).__name__}, not a state dict.")
    return obj
