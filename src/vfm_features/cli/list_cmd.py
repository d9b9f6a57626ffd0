"""``vfm-features list``: installed extractors, optionally with all their details."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="only names matching this pattern or family, e.g. 'sam*' or musam")
    p.add_argument("--details", action="store_true", help="show input size, stride, weights source, hash and licence")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from vfm_features.registry import default_registry

    reg = default_registry()
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
