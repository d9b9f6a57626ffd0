"""Declarative descriptions of what plugins register: extractors, upsamplers and heads.

A spec is known without building anything: ``factory`` is ``"module:callable"``
(imported only when the thing is built, so listing never imports torch) or a
callable. The registry fills in where a spec came from (``plugin``,
``distribution``, ``plugin_version``); :meth:`_Spec.provenance` goes into every
signature, cache key and saved classifier, so that upgrading a plugin is
treated like changing its options.
"""

from __future__ import annotations

import importlib
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Callable, Literal

Kind = Literal["pixel", "object"]
KINDS: tuple[str, ...] = ("pixel", "object")


@dataclass(frozen=True)
class _Spec:
    name: str
    factory: str | Callable[..., Any]
    _: KW_ONLY
    description: str = ""
    requires: tuple[str, ...] = ()  # import names of optional packages it needs
    install: str = ""  # pip requirement that brings ``requires``, e.g. "vfm-features[sam]"
    features_version: str | None = None  # bump when outputs change; None: the distribution's version
    override: bool = False  # replace a spec of the same name registered earlier (else the earlier one wins)
    plugin: str = ""  # filled in by the registry: the plugin (entry point) name
    distribution: str = ""  # filled in by the registry: the installed distribution that provides it
    plugin_version: str = ""  # filled in by the registry: that distribution's version

    def load_factory(self) -> Callable[..., Any]:
        if callable(self.factory):
            return self.factory
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)

    def provenance(self) -> dict[str, str]:
        """Where this comes from and which version of its outputs: part of every signature."""
        return {"distribution": self.distribution or self.plugin or "unregistered",
                "version": self.features_version or self.plugin_version or "0"}

    def install_hint(self, missing: list[str]) -> str:
        if self.install:
            return f"Install them with: pip install '{self.install}'"
        source = f" (the plugin comes from {self.distribution})" if self.distribution else ""
        return f"Install the package(s) that provide {', '.join(missing)}{source}."


@dataclass(frozen=True)
class ExtractorSpec(_Spec):
    """Everything known about an extractor variant without building it.

    The extractor is built as ``factory(spec, **options)``; ``options`` holds the
    defaults, and every option an extractor takes through ``**options`` must be
    declared there (misspelt options are refused).
    """

    _: KW_ONLY
    kind: Kind = "pixel"
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
    options: dict = field(default_factory=dict)  # default options

    @property
    def family(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def variant(self) -> str:
        return self.name.split(":", 1)[1] if ":" in self.name else ""

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
            "plugin": f"{self.plugin} ({self.distribution or '-'} {self.plugin_version})".strip(),
        }


@dataclass(frozen=True)
class UpsamplerSpec(_Spec):
    """An upsampler: reads embedding features at image pixels (built as ``factory(spec, **options)``)."""

    _: KW_ONLY
    weights_url: str | None = None
    weights_hash: str | None = None
    weights_file: str | None = None
    license: str = ""
    gated: bool = False
    options: dict = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "options": ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "-",
                "weights": self.weights_url or "none needed",
                "hash": self.weights_hash or ("none published" if self.weights_url else "-"),
                "license": self.license or "-", "requires": ", ".join(self.requires) or "-", "plugin": self.plugin}


@dataclass(frozen=True)
class HeadSpec(_Spec):
    """A classification head for one task: ``kind='pixel'`` or ``'object'`` (built as ``factory(**options)``)."""

    _: KW_ONLY
    kind: Kind = "pixel"
    options: dict = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "requires": ", ".join(self.requires) or "-", "plugin": self.plugin}
