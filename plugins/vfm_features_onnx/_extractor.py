"""OnnxExtractor: an exported model folder as an ordinary extractor (numpy + onnxruntime, no torch).

The core's :class:`~vfm_features.ModelExtractor` does the channel rule,
intensity scaling, tiling and geometry; this class only swaps the backend for
:class:`~vfm_features.models.onnx_backend.OnnxBackend` and reads the contract and
channel count from the folder's metadata.
"""

from __future__ import annotations

from typing import Any

from vfm_features import FeatureExtractor, InputError
from vfm_features.models.base import ModelExtractor
from vfm_features.models.contract import InputContract
from vfm_features.models.onnx_folder import OnnxFolder, read_folder
from vfm_features.preprocess import NORMALIZATIONS
from vfm_features.validation import check_channels, check_int


class OnnxExtractor(ModelExtractor):
    """Features from a folder written by ``vfm-features export-onnx``, run with onnxruntime on the CPU.

    Options (keyword only):

    - ``path``: the exported folder. It loads a file, so a classifier file never
      stores it: give it when loading (``-O path=DIR``); the folder's checksums
      are part of the signature. Exports in the per-user cache are registered as
      ``family:variant@onnx`` (``@onnx-int8``) with their path filled in.
    - ``channels``, ``normalization``: as for the torch extractor; default: what
      the exported extractor used.
    - ``n_threads``: onnxruntime intra-op threads (default: every usable core).
    - ``batch_size``: planes or tiles per call (the exported graph takes one image at a time).
    - ``tile_shape``, ``halo``: tiling, as for every extractor.
    """

    RUNTIME_OPTIONS = (*FeatureExtractor.RUNTIME_OPTIONS, "path")
    TRUST_OPTIONS = (*FeatureExtractor.TRUST_OPTIONS, "path")

    def __init__(self, spec: Any, *, path: Any = None, channels: Any = None, normalization: str | None = None,
                 batch_size: int = 1, n_threads: int | None = None, tile_shape: Any = None,
                 halo: Any = None) -> None:
        if path is None:
            raise InputError(f"{spec.name} needs path=DIR, a folder written by 'vfm-features export-onnx' "
                             "(on the command line: -O path=DIR).")
        folder = read_folder(path)
        saved = folder.meta["options"]
        channels = saved.get("channels", "sum") if channels is None else channels
        normalization = saved.get("normalization", "auto") if normalization is None else normalization
        if normalization not in NORMALIZATIONS:
            raise InputError(f"normalization={normalization!r} is unknown; choose one of {NORMALIZATIONS}.")
        options = {"path": str(folder.path), "channels": check_channels(channels), "normalization": normalization,
                   "batch_size": check_int(batch_size, "batch_size"),
                   "n_threads": None if n_threads is None else check_int(n_threads, "n_threads")}
        if tile_shape is not None:
            options.update(tile_shape=tile_shape, halo=halo)
        # the torch options of ModelExtractor (weights, device, precision, seed) do not apply: store ours only
        FeatureExtractor.__init__(self, spec, **options)
        self._folder = folder
        self._init_transient()

    @property
    def folder(self) -> OnnxFolder:
        return self._folder

    def input_contract(self) -> InputContract:
        return self._folder.contract

    @property
    def features_per_image(self) -> int:
        return self._folder.features_per_image

    @property
    def halo(self) -> int:
        """Tiling halo of the exported extractor (from its spec)."""
        return int(self._folder.spec_fields["halo"])

    @property
    def weights_hash(self) -> str:
        """The folder's files (checked before use), contract and source signature, as one hash."""
        return self._folder.identity()

    def embedding_meta(self) -> dict[str, Any]:
        return {"onnx": self._folder.quantization or "float32"}

    def backend(self) -> Any:
        with self._lock:
            if self._backend is None:
                from vfm_features.models.onnx_backend import OnnxBackend

                self._backend = OnnxBackend(self._folder, n_threads=self.options["n_threads"], name=self.name)
            return self._backend

    def load_model(self, device: str) -> Any:
        """The onnxruntime session (onnxruntime runs on the CPU; ``device`` is not used)."""
        return self.backend().load()
