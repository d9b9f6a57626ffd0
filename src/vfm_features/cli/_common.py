"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from vfm_features.errors import InputError


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["sigmas=[1,2]", "device=cpu"]`` -> ``{"sigmas": [1, 2], "device": "cpu"}`` (values read as JSON when they parse)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--option {pair!r} is not KEY=VALUE (for example --option sigmas=[1,2]).")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def add_extractor_arguments(p: argparse.ArgumentParser, default: str, default_help: str | None = None) -> None:
    p.add_argument("--extractor", "-e", default=default,
                   help=f"registered extractor name, e.g. filters, sam:vit_b (default: {default_help or default}); "
                        "see 'vfm-features list'")
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE",
                   help="extractor option, repeatable (e.g. -O sigmas=[1,2] -O device=cpu)")
    p.add_argument("--axes", help="axis order of the images when ambiguous, e.g. YXC, CYX, ZYX")


def check_same_length(a: list, b: list, what_a: str, what_b: str) -> None:
    if len(a) != len(b):
        raise InputError(f"Got {len(a)} {what_a} but {len(b)} {what_b}; pass one for each.")
