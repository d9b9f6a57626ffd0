"""Name -> extractor registry, filled by pluggy plugins found through entry points."""

from __future__ import annotations

import difflib
import fnmatch
import importlib.util
import re
import warnings
from typing import Any

import pluggy

from vfm_features import hookspecs
from vfm_features.errors import PluginValidationError, UnknownExtractorError, UnknownOptionError
from vfm_features.spec import ExtractorSpec

_NAME = re.compile(r"^[a-z0-9_]+:[a-z0-9_.+\-]+$")


class Registry:
    """Collects :class:`ExtractorSpec` from plugins and builds extractors by name."""

    def __init__(self, entry_point_group: str | None = hookspecs.ENTRY_POINT_GROUP) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._group = entry_point_group
        self._loaded = False
        self._specs: dict[str, ExtractorSpec] | None = None

    # -- plugins -----------------------------------------------------------
    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object or module directly (tests, notebooks)."""
        self._pm.register(plugin, name=name)
        self._specs = None

    def unregister(self, name: str) -> None:
        self._pm.unregister(name=name)
        self._specs = None

    def _load(self) -> None:
        """Import each entry point of the group; a broken plugin warns instead of hiding the others."""
        if self._loaded or not self._group:
            return
        self._loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self._group):
            if self._pm.get_plugin(ep.name) is not None or self._pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a third-party plugin may fail in any way
                warnings.warn(
                    f"vfm-features plugin {ep.name!r} ({ep.value}) could not be imported and is skipped: "
                    f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=4)
                continue
            self._pm.register(plugin, name=ep.name)

    def specs(self) -> dict[str, ExtractorSpec]:
        if self._specs is None:
            self._load()
            specs: dict[str, ExtractorSpec] = {}
            for plugin in self._pm.get_plugins():
                impl = getattr(plugin, "vfm_features_extractors", None)
                if impl is None:
                    continue
                plugin_name = self._pm.get_name(plugin) or repr(plugin)
                for spec in impl() or ():
                    self._validate(spec, plugin_name)
                    spec = _with_plugin(spec, plugin_name)
                    if spec.name in specs:
                        warnings.warn(
                            f"Extractor {spec.name!r} from plugin {plugin_name!r} replaces the one "
                            f"from {specs[spec.name].plugin!r}.", RuntimeWarning, stacklevel=3)
                    specs[spec.name] = spec
            self._specs = specs
        return self._specs

    @staticmethod
    def _validate(spec: Any, plugin_name: str) -> None:
        if not isinstance(spec, ExtractorSpec):
            raise PluginValidationError(
                f"Plugin {plugin_name!r} returned {type(spec).__name__} from vfm_features_extractors; "
                "expected vfm_features.ExtractorSpec instances.")
        if not _NAME.match(spec.name):
            raise PluginValidationError(
                f"Plugin {plugin_name!r} registers {spec.name!r}; names must look like 'family:variant' "
                "in lower case (letters, digits, '_', '.', '+', '-').")
        if spec.kind not in ("pixel", "object"):
            raise PluginValidationError(f"Plugin {plugin_name!r}: {spec.name} has kind {spec.kind!r}; use 'pixel' or 'object'.")

    # -- lookup ------------------------------------------------------------
    def list(self, pattern: str | None = None, *, kind: str | None = None) -> list[str]:
        names = sorted(self.specs())
        if pattern:
            names = [n for n in names if fnmatch.fnmatch(n, pattern) or n.split(":")[0] == pattern]
        if kind:
            names = [n for n in names if self.specs()[n].kind == kind]
        return names

    def resolve(self, name: str) -> ExtractorSpec:
        specs = self.specs()
        if not isinstance(name, str):
            raise UnknownExtractorError(f"Extractor names are strings like 'filters:default'; got {name!r}.")
        key = name.strip().lower()
        if key in specs:
            return specs[key]
        family = [s for s in specs.values() if s.family == key]
        if family:
            defaults = [s for s in family if s.default]
            return (defaults or sorted(family, key=lambda s: s.name))[0]
        close = difflib.get_close_matches(key, list(specs) + sorted({s.family for s in specs.values()}), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownExtractorError(
            f"Unknown extractor {name!r}.{hint} Known: {', '.join(sorted(specs)) or 'none'}. "
            "Run 'vfm-features list' to see every installed extractor.")

    def get(self, name: str, **options: Any) -> Any:
        spec = self.resolve(name)
        missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
        if missing:
            extra = spec.family
            raise ImportError(
                f"Extractor {spec.name!r} needs the package(s) {', '.join(missing)}, which are not installed. "
                f"Install them with: pip install 'vfm-features[{extra}]'")
        merged = {**spec.options, **options}
        factory = spec.load_factory()
        try:
            return factory(spec, **merged)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            known = ", ".join(sorted(spec.options)) or "none"
            raise UnknownOptionError(
                f"Extractor {spec.name!r} does not take that option ({exc}). Its options: {known}; "
                "see 'vfm-features list --details'.") from None


def _with_plugin(spec: ExtractorSpec, plugin_name: str) -> ExtractorSpec:
    if spec.plugin:
        return spec
    from dataclasses import replace

    return replace(spec, plugin=plugin_name)


_default_registry = Registry()


def default_registry() -> Registry:
    return _default_registry


def list_extractors(pattern: str | None = None, *, kind: str | None = None) -> list[str]:
    """Names of all installed extractors, optionally filtered by fnmatch ``pattern`` or ``kind``."""
    return _default_registry.list(pattern, kind=kind)


def get_spec(name: str) -> ExtractorSpec:
    """The :class:`ExtractorSpec` for ``name`` ('family:variant' or a bare family)."""
    return _default_registry.resolve(name)


def get_extractor(name: str, **options: Any) -> Any:
    """Build the extractor ``name`` with ``options`` (weights load lazily on first use)."""
    return _default_registry.get(name, **options)


def register_plugin(plugin: Any, name: str | None = None) -> None:
    """Register a plugin without an entry point (for notebooks and tests)."""
    _default_registry.register(plugin, name=name)
