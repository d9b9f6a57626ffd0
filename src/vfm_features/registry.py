"""Name -> extractor, upsampler and head registry, filled by pluggy plugins found through entry points.

Rules that keep one plugin from breaking the others, and lookups deterministic:

* plugins are imported one by one; one that fails to import, fails pluggy's
  validation, or raises from a hook is skipped with a warning naming it;
* a spec that is not a spec, or whose name is malformed, is skipped with a warning;
* ``@hookimpl`` functions whose names are no vfm-features hook are reported;
* plugins are consulted in a fixed order: vfm-features' own first, then the
  others by plugin name. When two register the same name, the first one wins and
  a warning names both, unless the later spec says ``override=True``;
* ``VFM_FEATURES_DISABLE_PLUGINS=name1,name2`` skips plugins by entry-point name.

Every spec records the plugin, distribution and version it came from.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.util
import os
import re
import threading
import warnings
from dataclasses import replace
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginValidationError, UnknownExtractorError, UnknownOptionError
from .spec import KINDS, ExtractorSpec, HeadSpec, UpsamplerSpec, _Spec

_EXTRACTOR_NAME = re.compile(r"^[a-z0-9_]+:[a-z0-9_.+@\-]+$")  # "family:variant", "sam:vit_b@onnx"
_PLAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_.+\-]*$")
DISABLE_ENV = "VFM_FEATURES_DISABLE_PLUGINS"
OWN_DISTRIBUTION = "vfm-features"
_SPEC_TYPES = {"extractor": ExtractorSpec, "upsampler": UpsamplerSpec, "head": HeadSpec}


class PluginWarning(RuntimeWarning):
    """A plugin was skipped or one of its registrations was ignored."""


def _warn(message: str) -> None:
    warnings.warn(message, PluginWarning, stacklevel=4)


def _distribution_of(plugin: Any) -> tuple[str, str]:
    """(distribution name, version) that provides a plugin module or object, or ('', '')."""
    module = getattr(plugin, "__module__", None) if not hasattr(plugin, "__file__") else plugin.__name__
    top = (module or "").split(".")[0]
    if not top:
        return "", ""
    try:
        from importlib.metadata import packages_distributions, version

        dists = packages_distributions().get(top) or []
        if dists:
            return dists[0], version(dists[0])
    except Exception:  # noqa: BLE001 - metadata is best effort
        pass
    return "", ""


class Registry:
    """Collects specs from plugins and builds extractors, upsamplers and heads by name."""

    def __init__(self, entry_point_group: str | None = hookspecs.ENTRY_POINT_GROUP) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._group = entry_point_group
        self._loaded = False
        self._provenance: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self._tables: dict[str, dict[str, _Spec]] | None = None
        self._lock = threading.RLock()

    # -- plugins -----------------------------------------------------------
    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin object or module directly (tests, notebooks); returns its name.

        Registering a plugin that is registered already (for example a module that
        is also installed) does nothing. A misspelt ``@hookimpl`` raises
        :class:`PluginValidationError`.
        """
        with self._lock:
            self._load()
            if self._pm.is_registered(plugin):
                return self._pm.get_name(plugin)
            unknown = self._unknown_hooks(plugin)
            if unknown:
                raise PluginValidationError(unknown)
            if name is not None and self._pm.get_plugin(name) is not None:
                self._pm.unregister(name=name)
            try:
                registered = self._pm.register(plugin, name=name)
            except pluggy.PluginValidationError as exc:
                raise PluginValidationError(f"Plugin {name or plugin!r} does not match the vfm-features hooks: "
                                            f"{exc}") from None
            self._provenance[registered] = _distribution_of(plugin)
            self._tables = None
            return registered

    def unregister(self, plugin: Any) -> None:
        """Remove a plugin, given by its name or the object itself; unknown plugins are ignored."""
        with self._lock:
            if isinstance(plugin, str):
                if self._pm.get_plugin(plugin) is not None:
                    self._pm.unregister(name=plugin)
                else:
                    self._pm.set_blocked(plugin)  # not loaded yet: keep it from loading later
            elif self._pm.is_registered(plugin):
                self._pm.unregister(plugin)
            self._tables = None

    def refresh(self) -> None:
        """Ask every plugin for its specs again (after something they list changed, e.g. a new ONNX export)."""
        with self._lock:
            self._tables = None

    def _unknown_hooks(self, plugin: Any) -> str:
        known = set(hookspecs.HOOKS.values())
        bad = []
        for attr in dir(plugin):
            if attr.startswith("__"):
                continue
            try:
                opts = self._pm.parse_hookimpl_opts(plugin, attr)
            except Exception:  # noqa: BLE001 - odd attributes
                opts = None
            if opts is not None and attr not in known:
                close = difflib.get_close_matches(attr, known, n=1)
                bad.append(f"{attr!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        if not bad:
            return ""
        return (f"Plugin {getattr(plugin, '__name__', plugin)!r} marks {', '.join(bad)} with @hookimpl, which "
                f"is no vfm-features hook; the hooks are {', '.join(sorted(known))}.")

    def _load(self) -> None:
        """Import each entry point of the group; a broken plugin warns instead of hiding the others."""
        if self._loaded or not self._group:
            return
        self._loaded = True
        from importlib.metadata import entry_points

        disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        found = sorted(entry_points(group=self._group),
                       key=lambda ep: (getattr(ep.dist, "name", "") != OWN_DISTRIBUTION, ep.name))
        for ep in found:
            if ep.name in disabled or self._pm.is_blocked(ep.name) or self._pm.get_plugin(ep.name) is not None:
                continue
            dist = (getattr(ep.dist, "name", "") or "", getattr(ep.dist, "version", "") or "")
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a third-party plugin may fail in any way
                _warn(f"vfm-features plugin {ep.name!r} ({ep.value}, from {dist[0] or 'unknown'}) could not be "
                      f"imported and is skipped: {type(exc).__name__}: {exc}")
                continue
            if self._pm.is_registered(plugin):
                continue
            unknown = self._unknown_hooks(plugin)
            if unknown:
                _warn(unknown + " Those functions are ignored.")
            try:
                self._pm.register(plugin, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - pluggy's validation, or a duplicate
                _warn(f"vfm-features plugin {ep.name!r} (from {dist[0] or 'unknown'}) is skipped: {exc}")
                continue
            self._provenance[ep.name] = dist

    def _table(self, category: str) -> dict[str, _Spec]:
        with self._lock:
            if self._tables is None:
                self._load()
                self._tables = {c: self._collect(c) for c in hookspecs.HOOKS}
            return self._tables[category]

    def _collect(self, category: str) -> dict[str, _Spec]:
        hook = getattr(self._pm.hook, hookspecs.HOOKS[category])
        impls = sorted(hook.get_hookimpls(),
                       key=lambda i: (self._provenance.get(i.plugin_name, ("", ""))[0] != OWN_DISTRIBUTION,
                                      i.plugin_name))
        table: dict[str, _Spec] = {}
        for impl in impls:
            plugin = impl.plugin_name
            try:
                specs = list(impl.function() or ())
            except Exception as exc:  # noqa: BLE001 - isolate each plugin
                _warn(f"vfm-features plugin {plugin!r} raised {type(exc).__name__} from {impl.function.__name__}() "
                      f"and its {category}s are skipped: {exc}")
                continue
            dist, version = self._provenance.get(plugin, ("", ""))
            for spec in specs:
                problem = self._problem(category, spec)
                if problem:
                    _warn(f"vfm-features plugin {plugin!r}: {problem}; that registration is skipped.")
                    continue
                spec = replace(spec, plugin=plugin, distribution=dist, plugin_version=version)
                key = self._key(category, spec)
                if key in table:
                    old = table[key]
                    if spec.override:
                        _warn(f"The {category} {spec.name!r} of plugin {plugin!r} overrides the one of "
                              f"plugin {old.plugin!r} (it says override=True).")
                    else:
                        _warn(f"The {category} {spec.name!r} is registered by plugin {old.plugin!r} and again by "
                              f"{plugin!r}; the first one is used. Disable one with {DISABLE_ENV}=NAME.")
                        continue
                table[key] = spec
        return table

    @staticmethod
    def _key(category: str, spec: _Spec) -> str:
        return f"{spec.kind}:{spec.name}" if category == "head" else spec.name

    @staticmethod
    def _problem(category: str, spec: Any) -> str:
        cls = _SPEC_TYPES[category]
        if not isinstance(spec, cls):
            return f"returned {type(spec).__name__} from {hookspecs.HOOKS[category]}; expected {cls.__name__}"
        pattern = _EXTRACTOR_NAME if category == "extractor" else _PLAIN_NAME
        if not isinstance(spec.name, str) or not pattern.match(spec.name):
            form = "'family:variant'" if category == "extractor" else "a plain name"
            return (f"{category} name {spec.name!r} is not {form} in lower case (letters, digits, '@', "
                    "'_', '.', '+', '-')")
        if getattr(spec, "kind", "pixel") not in KINDS:
            return f"{spec.name} has kind {spec.kind!r}; use 'pixel' or 'object'"
        return ""

    # -- extractors ----------------------------------------------------------
    def specs(self) -> dict[str, ExtractorSpec]:
        return self._table("extractor")  # type: ignore[return-value]

    def list(self, pattern: str | None = None, *, kind: str | None = None) -> list[str]:
        specs = self.specs()
        names = sorted(specs)
        if pattern:
            names = [n for n in names if fnmatch.fnmatch(n, pattern) or n.split(":")[0] == pattern]
        if kind:
            names = [n for n in names if specs[n].kind == kind]
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
        from .extractor import check_options

        spec = self.resolve(name)

        def build(factory: Any) -> Any:
            merged = {**spec.options, **options}
            check_options(spec, factory, merged)
            return factory(spec, **merged)

        return _build(spec, "Extractor", build, options)

    # -- upsamplers ------------------------------------------------------------
    def upsampler_specs(self) -> dict[str, UpsamplerSpec]:
        return self._table("upsampler")  # type: ignore[return-value]

    def upsampler_spec(self, name: str) -> UpsamplerSpec:
        return self._lookup(self.upsampler_specs(), name, "upsampler", "vfm-features list --upsamplers")

    def get_upsampler(self, name: str, **options: Any) -> Any:
        spec = self.upsampler_spec(name)
        return _build(spec, "Upsampler", lambda f: f(spec, **{**spec.options, **options}), options)

    # -- heads -------------------------------------------------------------------
    def head_specs(self, kind: str) -> dict[str, HeadSpec]:
        return {k.split(":", 1)[1]: s for k, s in self._table("head").items()  # type: ignore[misc]
                if k.startswith(f"{kind}:")}

    def head_spec(self, name: str, kind: str) -> HeadSpec:
        if kind not in KINDS:
            raise UnknownExtractorError(f"Head kind {kind!r} is unknown; use 'pixel' or 'object'.")
        return self._lookup(self.head_specs(kind), name, f"{kind} head", "vfm-features list --heads")

    def get_head(self, name: str, kind: str, **options: Any) -> Any:
        spec = self.head_spec(name, kind)
        head = _build(spec, "Head", lambda f: f(**{**spec.options, **options}), options)
        return head

    @staticmethod
    def _lookup(table: dict[str, Any], name: Any, what: str, command: str) -> Any:
        key = name.strip().lower() if isinstance(name, str) else None
        if key in table:
            return table[key]
        close = difflib.get_close_matches(str(key), table, n=2)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownExtractorError(f"Unknown {what} {name!r}.{hint} Known: {', '.join(sorted(table)) or 'none'}; "
                                    f"see '{command}'.")


def _build(spec: _Spec, what: str, call: Any, options: dict[str, Any]) -> Any:
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{what} {spec.name!r} needs the package(s) {', '.join(missing)}, which are not "
                          f"installed. {spec.install_hint(missing)}")
    factory = spec.load_factory()
    try:
        return call(factory)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc) and "got an unexpected" not in str(exc):
            raise
        from .extractor import accepted_options

        known = ", ".join(sorted(accepted_options(factory, spec.options))) or "none"
        raise UnknownOptionError(f"{what} {spec.name!r} does not take that option ({exc}). Its options: "
                                 f"{known}; see 'vfm-features list --details'.") from None


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


def list_upsamplers() -> list[str]:
    """Names of all installed upsamplers."""
    return sorted(_default_registry.upsampler_specs())


def get_upsampler(name: Any = "bilinear", **options: Any) -> Any:
    """The upsampler ``name`` built with ``options``; an upsampler instance is returned as it is."""
    if not isinstance(name, str):
        return name
    return _default_registry.get_upsampler(name, **options)


def list_heads(kind: str = "pixel") -> list[str]:
    """Names of the installed heads for ``kind`` ('pixel' or 'object')."""
    return sorted(_default_registry.head_specs(kind))


def get_head(name: Any, kind: str = "pixel", **options: Any) -> Any:
    """A new, unfitted head ``name`` for ``kind`` built with ``options``; a head instance is returned as it is."""
    if not isinstance(name, str):
        return name
    return _default_registry.get_head(name, kind, **options)


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin without an entry point (for notebooks and tests); returns its name."""
    return _default_registry.register(plugin, name=name)


def unregister_plugin(plugin: Any) -> None:
    """Remove a plugin registered with :func:`register_plugin` (or from an entry point), by name or object."""
    _default_registry.unregister(plugin)
