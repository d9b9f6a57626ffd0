"""Declarative description of one extractor variant: what a plugin registers."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

Kind = Literal["pixel", "object"]


@dataclass(frozen=True)
class ExtractorSpec:
    """Everything known about an extractor variant without building it.

    ``factory`` is ``"module:callable"`` (imported only when the extractor is
    built, so listing never imports torch) or a callable taking
    ``(spec, **options)`` and returning the extractor.
    """

    name: str  # "family:variant"
    factory: str | Callable[..., Any]
    kind: Kind = "pixel"
    description: str = ""
    default: bool = False  # the variant a bare family name picks
    n_features: int | None = None  # None: depends on options or input channels
    input_size: int | None = None  # model input side in pixels (None: any size)
    patch_size: int = 1  # output stride: image pixels per embedding cell at model input
    halo: int = 0  # pixels of context needed around a tile for seamless stitching
    global_context: bool = False  # tiling changes the features
    input_channels: str = "any"  # "any" (per channel), "rgb", "grey"
    normalization: str = ""
    weights_url: str | None = None
    weights_hash: str | None = None  # "algo:hexdigest", None = none published
    weights_file: str | None = None  # file name in the cache
    license: str = ""
    gated: bool = False
    requires: tuple[str, ...] = ()  # import names of optional packages
    options: dict = field(default_factory=dict)  # default options
    plugin: str = ""  # filled in by the registry

    @property
    def family(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def variant(self) -> str:
        return self.name.split(":", 1)[1] if ":" in self.name else ""

    def load_factory(self) -> Callable[..., Any]:
        if callable(self.factory):
            return self.factory
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)

    def details(self) -> dict[str, Any]:
        """Plain-data view for ``vfm-features list --details``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "n_features": self.n_features if self.n_features is not None else "per input channel",
            "input_size": self.input_size or "any",
            "patch_size": self.patch_size,
            "halo": self.halo,
            "global_context": self.global_context,
            "input_channels": self.input_channels,
            "normalization": self.normalization or "-",
            "weights": self.weights_url or ("none needed" if not self.requires else "local file"),
            "hash": self.weights_hash or ("none published" if self.weights_url else "-"),
            "license": self.license or "-",
            "gated": self.gated,
            "requires": ", ".join(self.requires) or "-",
            "options": ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "-",
            "plugin": self.plugin,
        }
