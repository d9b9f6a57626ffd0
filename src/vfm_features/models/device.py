"""The one place that turns ``device="auto"`` and ``precision=...`` into torch settings.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ContextManager

from vfm_features.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_KINDS", "PRECISIONS", "autocast", "autocast_dtype", "available_devices", "resolve_device"]

DEVICE_KINDS = ("cpu", "cuda", "mps")
# accepted spellings -> canonical name
PRECISIONS = {
    "float32": "float32", "fp32": "float32", "full": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Device names usable on this machine, e.g. ``['auto', 'cpu', 'cuda', 'cuda:0']``."""
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available(torch):
        names.append("mps")
    return names


def resolve_device(device: "str | torch.device | None" = "auto") -> str:
    """``"auto"``/None -> ``"cuda"`` if available, else ``"mps"`` if available, else ``"cpu"``.

    Explicit names (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``)
    are checked against this machine; an unusable one raises :class:`InputError`
    listing the valid choices.
    """
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available(torch):
            return "mps"
        return "cpu"
    name = str(device).strip().lower()
    kind, _, index = name.partition(":")
    if kind not in DEVICE_KINDS or (index and (not index.isdigit() or kind != "cuda")):
        raise InputError(f"device={device!r} is not a device name; valid choices here: {available_devices()}.")
    usable = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (not index or int(index) < torch.cuda.device_count()),
        "mps": _mps_available(torch),
    }[kind]
    if not usable:
        raise InputError(
            f"device={device!r} is not available on this machine (is the matching torch build installed?); "
            f"valid choices here: {available_devices()}. Use device='auto' to pick the best available one.")
    return name


def autocast_dtype(device: str, precision: str = "float32") -> "torch.dtype | None":
    """The autocast dtype for ``precision`` on ``device``, or None to run in float32.

    ``precision``: 'float32' (default, exact), 'bfloat16' (CUDA with bf16 support,
    CPU, MPS) or 'float16' (CUDA, MPS). Unsupported combinations raise
    :class:`InputError` naming a precision that works.
    """
    import torch

    key = str(precision).strip().lower()
    if key not in PRECISIONS:
        raise InputError(f"precision={precision!r} is unknown; use one of 'float32', 'bfloat16', 'float16'.")
    canonical = PRECISIONS[key]
    if canonical == "float32":
        return None
    kind = str(device).split(":", 1)[0]
    if canonical == "float16" and kind == "cpu":
        raise InputError("precision='float16' is not supported on the CPU; use 'bfloat16' or 'float32'.")
    if canonical == "bfloat16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError("This GPU does not support bfloat16; use precision='float16' or 'float32'.")
    return torch.bfloat16 if canonical == "bfloat16" else torch.float16


def autocast(device: str, precision: str = "float32") -> ContextManager[Any]:
    """``torch.autocast`` for ``precision`` on ``device``, or a no-op context for float32."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=str(device).split(":", 1)[0], dtype=dtype)
