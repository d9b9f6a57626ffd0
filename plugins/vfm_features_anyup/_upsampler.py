"""AnyUpUpsampler: the ``anyup`` upsampler: options, weights, lazy loading, and the seam's dense and sparse reads.

Constructing it only stores options. The network is built on first use under a
lock (weights resolved through :mod:`vfm_features.models.weights`: the cache,
trust-on-first-use sha256, offline mode, ``torch.load(weights_only=True)``).
What AnyUp needs of an image (GroupNorm statistics, keys) is computed once per
(image, embedding) and kept for the last two, so that a classifier predicting in
bands does not recompute it; that memo never changes a result. One instance
serves several threads, and it pickles without its network.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np

from vfm_features import Embedding, EmbeddingGeometry, InputError, Upsampler
from vfm_features.features.upsample import bilinear_dense, bilinear_sparse, check_coords
from vfm_features.hashing import content_hash
from vfm_features.validation import check_bool, check_int, check_shape_pair

from ._grid import Axis
from ._guidance import as_plane, check_channel_rule, check_normalization, guidance
from ._spec import MAX_CELLS, WEIGHTS_FILE, WEIGHTS_URL

_MEMO = 2  # (image, embedding) states kept


class RandomWeightsWarning(UserWarning):
    """AnyUp runs with random weights (``pretrained=False``): its features are meaningless outside tests."""


def _grid(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    return check_shape_pair(value, "grid")


class AnyUpUpsampler(Upsampler):
    """AnyUp (Wimmer et al.): each pixel attends, guided by the image, to the embedding cells around it.

    Options (keyword-only):

    - ``weights``: a local checkpoint of the AnyUp architecture; default: the authors'
      ``anyup_paper.pth`` from the weights cache, downloaded once (sha256 recorded on first use).
    - ``pretrained``: False builds random weights (``seed``) and warns: features are then meaningless (tests).
    - ``trust_checkpoint``: allow a checkpoint that pickles Python objects (runs code from the file).
    - ``grid``: None (default) answers at image pixels, AnyUp at full resolution; ``256`` or
      ``(256, 256)`` computes AnyUp on that grid of cells spanning the image (the seed's route)
      and reads it at pixels bilinearly.
    - ``channels``: how the image becomes the RGB guidance: ``"sum"`` (channels summed to grey,
      replicated; the extractors' default) or ``"rgb"`` (a 3-channel image kept as colour).
    - ``normalization``: intensity scaling of the guidance to 0..1 (as the model extractors), then
      the ImageNet mean and std, as the authors normalise it.
    - ``device``: 'auto' (cuda, then mps, then cpu) or an explicit device.
    - ``chunk_size``: queries computed at once (bounds memory; does not change results).
    - ``seed``: seed of the random weights; ``progress``: download progress (True, False or a callable).
    """

    _TRANSIENT = ("_lock", "_memo_lock", "_params", "_resolved", "_memo")

    def __init__(self, spec: Any, *, weights: Any = None, pretrained: bool = True, trust_checkpoint: bool = False,
                 grid: Any = None, channels: str = "sum", normalization: str = "auto", seed: int = 0,
                 device: Any = "auto", chunk_size: int = 4096, progress: Any = True) -> None:
        check_bool(pretrained, "pretrained")
        check_bool(trust_checkpoint, "trust_checkpoint")
        if not pretrained and weights is not None:
            raise InputError("pretrained=False builds random weights; leave weights unset or use pretrained=True.")
        super().__init__(spec, weights=None if weights is None else str(weights), pretrained=bool(pretrained),
                         trust_checkpoint=bool(trust_checkpoint), grid=_grid(grid),
                         channels=check_channel_rule(channels), normalization=check_normalization(normalization),
                         seed=check_int(seed, "seed", low=0), device=device,
                         chunk_size=check_int(chunk_size, "chunk_size", hint="queries computed at once, e.g. 4096"),
                         progress=progress)
        self._init_transient()

    def _init_transient(self) -> None:
        self._lock = threading.RLock()
        self._memo_lock = threading.Lock()
        self._params: dict[str, Any] | None = None
        self._resolved: tuple[Any, str] | None = None
        self._memo: OrderedDict[str, Any] = OrderedDict()

    # -- weights -----------------------------------------------------------------------------
    def _weights(self) -> tuple[Any, str]:
        """(path, verified checksum) of the checkpoint in use; resolved (and downloaded) once."""
        with self._lock:
            if self._resolved is None:
                from vfm_features.models.weights import fetch_weights

                self._resolved = fetch_weights(self.spec, self.options["weights"], progress=self.options["progress"])
            return self._resolved

    @property
    def weights_hash(self) -> str:
        """Checksum of the weights in use ("sha256:…"); random weights report ``random-init:seed=<seed>``."""
        if not self.options["pretrained"]:
            return f"random-init:seed={self.options['seed']}"
        return self._weights()[1]

    def _network(self) -> dict[str, Any]:
        """The network's tensors on the device, built on first use under the lock; never changed afterwards."""
        with self._lock:
            if self._params is None:
                from vfm_features.models.device import resolve_device

                from ._encoder import prepare_params
                from ._network import build_network, load_network

                device = resolve_device(self.options["device"])
                if self.options["pretrained"]:
                    from vfm_features.models.weights import load_state_dict

                    path, _ = self._weights()
                    net = load_network(load_state_dict(path, trust_checkpoint=self.options["trust_checkpoint"]), path)
                else:
                    warnings.warn(
                        "The anyup upsampler runs with random weights (pretrained=False): its features are "
                        "meaningless, fit only for tests. Use the authors' weights (pretrained=True, downloaded "
                        f"once from {WEIGHTS_URL}) or weights='{WEIGHTS_FILE}'.", RandomWeightsWarning, stacklevel=4)
                    net = build_network(self.options["seed"])
                self._params = prepare_params(net, device)
            return self._params

    def load(self) -> "AnyUpUpsampler":
        """Build the network and load its weights now (otherwise done on first use)."""
        self._network()
        return self

    # -- per image ----------------------------------------------------------------------------
    def _state(self, embedding: Embedding, plane: np.ndarray) -> tuple[dict[str, Any], Any, Any]:
        """(parameters, image state, key state) for this image and embedding; computed once, kept for the last two."""
        params = self._network()
        geom = embedding.geometry
        key = content_hash(plane, np.ascontiguousarray(embedding.data),
                           [list(geom.image_shape), list(geom.step), list(geom.origin)])
        with self._memo_lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return (params, *self._memo[key])
        import torch

        from ._attention import key_state
        from ._encoder import image_state

        device = params["rope.freqs"].device
        C, h, w = embedding.data.shape
        axes = (Axis(h, plane.shape[0], float(geom.origin[0]), float(geom.step[0])),
                Axis(w, plane.shape[1], float(geom.origin[1]), float(geom.step[1])))
        with torch.inference_mode():
            st = image_state(params, guidance(plane, self.options["channels"], self.options["normalization"]), device)
            feats = torch.as_tensor(np.ascontiguousarray(embedding.data, dtype=np.float32), device=device)
            ks = key_state(params, st, feats, axes)
        with self._memo_lock:
            self._memo[key] = (st, ks)
            while len(self._memo) > _MEMO:
                self._memo.popitem(last=False)
        return params, st, ks

    def _check(self, embedding: Embedding, image: Any) -> np.ndarray:
        if not isinstance(embedding, Embedding):
            raise InputError(f"The anyup upsampler reads an Embedding; got {type(embedding).__name__}.")
        C, h, w = embedding.data.shape
        if h * w > MAX_CELLS:
            raise InputError(f"The embedding has {h} x {w} cells; the anyup upsampler is for low-resolution "
                             f"embeddings (at most {MAX_CELLS} cells, e.g. 256 x 256). Use upsampler='bilinear' for "
                             "full-resolution features such as the filter bank.")
        if h < 2 or w < 2:
            raise InputError(f"The embedding has {h} x {w} cells; the anyup upsampler needs at least 2 x 2 (its "
                             "aggregation layer reflects at the borders). Use upsampler='bilinear' for it.")
        return as_plane(image, embedding.image_shape)

    # -- the seam -------------------------------------------------------------------------------
    def dense(self, embedding: Embedding, image: np.ndarray | None, out_shape: Any = None,
              region: Any = None) -> np.ndarray:
        """AnyUp features (C, rows, cols) on an ``out_shape`` grid spanning the image, in ``region``.

        On the image's own grid this is AnyUp at full resolution; on a coarser
        grid each cell gets the feature of the pixel nearest its centre (the
        features training reads at labelled pixels), or with ``grid`` the
        bilinear reading of AnyUp's grid.
        """
        plane = self._check(embedding, image)
        H, W = plane.shape[:2]
        out_shape = (H, W) if out_shape is None else check_shape_pair(out_shape, "out_shape", allow_none=False)
        rows, cols = _region(region, out_shape)
        if rows[1] <= rows[0] or cols[1] <= cols[0]:
            return np.zeros((embedding.n_features, max(0, rows[1] - rows[0]), max(0, cols[1] - cols[0])), np.float32)
        params, st, ks = self._state(embedding, plane)
        import torch

        from ._routes import at_pixels, pixel_block

        chunk = self.options["chunk_size"]
        with torch.inference_mode():
            if self.options["grid"] is not None:
                return self._grid_dense(params, st, ks, out_shape, rows, cols, embedding)
            if out_shape == (H, W):
                return pixel_block(params, st, ks, rows, cols, chunk).cpu().numpy()
            ys = _nearest(H, out_shape[0])[rows[0]:rows[1]]
            xs = _nearest(W, out_shape[1])[cols[0]:cols[1]]
            yy, xx = np.repeat(ys, len(xs)), np.tile(xs, len(ys))
            feats = at_pixels(params, st, ks, yy, xx, chunk)
            return np.ascontiguousarray(feats.T.reshape(-1, len(ys), len(xs)).cpu().numpy())

    def sparse(self, embedding: Embedding, image: np.ndarray | None, coords: np.ndarray) -> np.ndarray:
        """AnyUp features (N, C) at image pixels ``coords`` (N, 2) as (y, x): only those pixels are computed.

        Coordinates are rounded to the nearest pixel and clamped to the image.
        """
        plane = self._check(embedding, image)
        coords = check_coords(coords)
        if len(coords) == 0:
            return np.zeros((0, embedding.n_features), np.float32)
        H, W = plane.shape[:2]
        params, st, ks = self._state(embedding, plane)
        import torch

        from ._routes import at_pixels

        with torch.inference_mode():
            if self.options["grid"] is not None:
                return self._grid_sparse(params, st, ks, coords, embedding)
            ys = np.clip(np.floor(coords[:, 0] + 0.5), 0, H - 1).astype(np.int64)
            xs = np.clip(np.floor(coords[:, 1] + 0.5), 0, W - 1).astype(np.int64)
            return np.ascontiguousarray(at_pixels(params, st, ks, ys, xs, self.options["chunk_size"]).cpu().numpy())

    # -- the grid route -----------------------------------------------------------------------
    def _grid_embedding(self, data: np.ndarray, image_shape: tuple[int, int], origin: tuple[int, int],
                        extractor: str) -> Embedding:
        grid = self.options["grid"]
        step = (image_shape[0] / grid[0], image_shape[1] / grid[1])
        return Embedding(data, EmbeddingGeometry(tuple(image_shape), step=step,
                                                 origin=(origin[0] * step[0], origin[1] * step[1])),
                         extractor=extractor)

    def _grid_dense(self, params, st, ks, out_shape, rows, cols, embedding) -> np.ndarray:
        from vfm_features.features.upsample import grid_coords

        from ._routes import grid_block

        H, W = embedding.image_shape
        grid = self.options["grid"]
        cy = _grid_cells(grid_coords(H, out_shape[0])[rows[0]:rows[1]], H, grid[0])
        cx = _grid_cells(grid_coords(W, out_shape[1])[cols[0]:cols[1]], W, grid[1])
        g_rows, g_cols = (int(cy.min()), int(cy.max()) + 1), (int(cx.min()), int(cx.max()) + 1)
        data = grid_block(params, st, ks, grid, g_rows, g_cols, self.options["chunk_size"])
        sub = self._grid_embedding(np.ascontiguousarray(data.cpu().numpy()), (H, W), (g_rows[0], g_cols[0]),
                                   embedding.extractor)
        return bilinear_dense(sub, out_shape, (slice(*rows), slice(*cols)))

    def _grid_sparse(self, params, st, ks, coords, embedding) -> np.ndarray:
        from ._routes import grid_block, tiles

        H, W = embedding.image_shape
        grid = self.options["grid"]
        cy = _grid_cells(coords[:, 0], H, grid[0]).reshape(2, -1)
        cx = _grid_cells(coords[:, 1], W, grid[1]).reshape(2, -1)
        needed = np.zeros(grid, bool)
        for a in cy:
            for b in cx:
                needed[a, b] = True
        data = np.zeros((embedding.n_features, *grid), np.float32)  # only the cells read are computed
        for (y0, y1), (x0, x1) in tiles((0, grid[0]), (0, grid[1]), self.options["chunk_size"]):
            if needed[y0:y1, x0:x1].any():
                data[:, y0:y1, x0:x1] = grid_block(params, st, ks, grid, (y0, y1), (x0, x1),
                                                   self.options["chunk_size"]).cpu().numpy()
        return bilinear_sparse(self._grid_embedding(data, (H, W), (0, 0), embedding.extractor), coords)


def _grid_cells(pixels: np.ndarray, image_len: int, grid_len: int) -> np.ndarray:
    """(2, n): the two grid cells a bilinear read at image positions ``pixels`` touches (floor, floor + 1; clamped)."""
    pos = np.clip((np.asarray(pixels, np.float64) + 0.5) / (image_len / grid_len) - 0.5, 0, grid_len - 1)
    lo = np.floor(pos).astype(np.int64)
    return np.stack([lo, np.minimum(lo + 1, grid_len - 1)])


def _nearest(image_len: int, out_len: int) -> np.ndarray:
    """The image pixel nearest the centre of each of ``out_len`` cells spanning ``image_len`` pixels."""
    from vfm_features.features.upsample import grid_coords

    return np.clip(np.floor(grid_coords(image_len, out_len) + 0.5), 0, image_len - 1).astype(np.int64)


def _region(region: Any, shape: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(row slice, column slice) of an ``shape`` grid (or a row slice, or None) -> ((r0, r1), (c0, c1))."""
    if region is None:
        region = (slice(None), slice(None))
    elif isinstance(region, slice):
        region = (region, slice(None))
    try:
        rows, cols = region
        r = rows.indices(shape[0])
        c = cols.indices(shape[1])
    except (TypeError, ValueError, AttributeError):
        raise InputError(f"region={region!r} is not (row slice, column slice) of the output grid.") from None
    if r[2] != 1 or c[2] != 1:
        raise InputError(f"region={region!r} has a step; give contiguous slices.")
    return (r[0], max(r[0], r[1])), (c[0], max(c[0], c[1]))
