"""The library's one content hash and one JSON normaliser.

Everything that keys or compares data (cache keys, image identity, signatures)
goes through :func:`content_hash` (BLAKE2b, 128 bits, from the standard
library), so a key never depends on which optional packages are installed.
Weights files are checked with the publisher's algorithm in
:mod:`vfm_features.models.weights`, not here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

HASH_NAME = "blake2b-128"


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: dict keys as strings (sorted), tuples as lists, numpy scalars as Python.

    Values that JSON cannot hold are written as their ``repr`` (signatures
    compare them as text); use this for signatures, not for data to read back.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON of :func:`jsonable` ``value``: equal data, equal text."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"))


def content_hash(*parts: Any) -> str:
    """Hex digest (32 digits) of arrays, bytes, strings or JSON-able data, in order.

    An array contributes its shape, dtype and bytes (C order), so two arrays with
    the same bytes but other shapes hash differently.
    """
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(canonical_json(["array", list(part.shape), part.dtype.str]).encode())
            h.update(np.ascontiguousarray(part).reshape(-1).view(np.uint8))
        elif isinstance(part, (bytes, bytearray, memoryview)):
            h.update(b"bytes")
            h.update(part)
        else:
            h.update(canonical_json(part).encode())
        h.update(b"\x00")
    return h.hexdigest()
