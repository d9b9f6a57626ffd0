"""``vfm-features list``: installed extractors (default), upsamplers or heads, with the plugin providing each."""

from __future__ import annotations

import argparse
import fnmatch
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="only names matching this pattern or family, e.g. 'sam*' or musam")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--upsamplers", action="store_true",
                      help="list the upsamplers (how embeddings are read at pixels) instead of extractors")
    what.add_argument("--heads", action="store_true",
                      help="list the classification heads (pixel and object) instead of extractors")
    p.add_argument("--details", action="store_true", help="show input size, stride, weights source, hash and licence")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _provider(spec) -> str:
    dist = spec.distribution or "unknown distribution"
    version = f" {spec.plugin_version}" if spec.plugin_version else ""
    return f"plugin {spec.plugin or '-'}, {dist}{version}"


def _head_options(spec) -> str:
    """The head's options and their defaults (what --head-option sets), read from its factory."""
    import inspect

    try:
        params = inspect.signature(spec.load_factory()).parameters
    except (ImportError, TypeError, ValueError) as exc:
        return f"unknown ({exc})"
    defaults = {k: v.default for k, v in params.items()
                if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD) and v.default is not v.empty}
    defaults.update(spec.options)
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "-"


def _match(name: str, pattern: str | None) -> bool:
    return not pattern or fnmatch.fnmatch(name, pattern)


def _components(rows: list[tuple[str, object]], args: argparse.Namespace, what: str) -> int:
    """Upsamplers or heads: (label, spec) rows."""
    if args.json:
        print(json.dumps([{**spec.details(), "distribution": spec.distribution,
                           "plugin_version": spec.plugin_version} for _, spec in rows], indent=2, default=str))
        return 0
    if not rows:
        print(f"No {what} matches." if args.pattern else f"No {what} installed.")
        return 0
    width = max(len(label) for label, _ in rows)
    for label, spec in rows:
        print(f"{label:<{width}}  {spec.description}  ({_provider(spec)})")
        if args.details:
            details = spec.details()
            if what == "head":
                details["options"] = _head_options(spec)
            for key, value in details.items():
                if key not in ("name", "kind", "description"):
                    print(f"    {key:<15} {value}")
    return 0


def run(args: argparse.Namespace) -> int:
    from vfm_features.registry import default_registry

    reg = default_registry()
    if args.upsamplers:
        rows = [(name, spec) for name, spec in sorted(reg.upsampler_specs().items()) if _match(name, args.pattern)]
        return _components(rows, args, "upsampler")
    if args.heads:
        rows = [(f"{kind:<6}  {name}", spec) for kind in ("pixel", "object")
                for name, spec in sorted(reg.head_specs(kind).items()) if _match(name, args.pattern)]
        return _components(rows, args, "head")
    specs = [reg.resolve(n) for n in reg.list(args.pattern)]
    if args.json:
        print(json.dumps([s.details() for s in specs], indent=2, default=str))
        return 0
    if not specs:
        print("No extractor matches." if args.pattern else "No extractor installed.")
        return 0
    if not args.details:
        width = max(len(s.name) for s in specs)
        for s in specs:
            mark = " (default)" if s.default else ""
            print(f"{s.name:<{width}}  {s.kind:<6}  {s.description}{mark}")
        return 0
    for s in specs:
        print(s.name + (" (family default)" if s.default else ""))
        for key, value in s.details().items():
            if key != "name":
                print(f"    {key:<15} {value}")
    return 0
