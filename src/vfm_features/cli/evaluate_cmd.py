"""``vfm-features evaluate``: macro-F1 against label budget over folds x repeats.

Writes ``DIR/evaluation.csv`` and ``DIR/evaluation.png`` (``-o DIR``).
"""

from __future__ import annotations

import argparse

# --demo: the shipped synthetic data, sized to run in about a minute on two cores
DEMO = {"images": 6, "size": 256, "folds": 5, "repeats": 3, "pixels_per_image": 10_000,
        "pixel_budgets": "100,300,1000,3000,10000", "object_budgets": "25,50,100,all"}


def _budgets(text: str) -> list[int | None]:
    from vfm_features.errors import InputError

    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            out.append(None)
            continue
        try:
            value = float(part)  # accepts 1e4
        except ValueError:
            raise InputError(f"Budget {part!r} is not a number; write e.g. 100,1e3,1e4,all.") from None
        out.append(int(value))
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", nargs="?",
                   help="dataset folder: images/ + labels/ (pixels) and/or instances/ + object_classes/ "
                        "(objects), files matched by stem; see docs/evaluation.md")
    p.add_argument("--demo", action="store_true",
                   help=f"evaluate on the shipped synthetic data ({DEMO['images']} images of "
                        f"{DEMO['size']}x{DEMO['size']}, {DEMO['folds']} folds x {DEMO['repeats']} repeats)")
    p.add_argument("--extractor", "-e", action="append",
                   help="registered extractor, repeatable (default: filters and regionprops)")
    p.add_argument("--option", "-O", action="append", metavar="NAME:KEY=VALUE",
                   help="extractor option, repeatable, e.g. -O filters:sigmas=[1,2]")
    p.add_argument("--head", action="append", metavar="NAME",
                   help="classification head, repeatable (default: rf); rf-reference is a 200-tree random forest; "
                        "see 'vfm-features list --heads'")
    p.add_argument("--head-option", action="append", metavar="HEAD:KEY=VALUE",
                   help="head option, repeatable, e.g. --head-option deap:max_iter=200")
    p.add_argument("--upsampler", metavar="NAME",
                   help="how pixel extractors' embeddings are read at pixels (default: bilinear); "
                        "see 'vfm-features list --upsamplers'")
    p.add_argument("--task", choices=("pixels", "objects"), action="append",
                   help="task(s) to run (default: every task the dataset has labels for)")
    p.add_argument("--pixel-budgets", help="comma-separated, e.g. 100,300,1e3,3e3,1e4,3e4,1e5 (the default); "
                                           "budgets the training folds cannot fill run once, as 'all'")
    p.add_argument("--object-budgets", help="comma-separated, 'all' = every object, "
                                            "e.g. 25,50,100,200,500,1000,2000,5000,all (the default); "
                                            "budgets the training folds cannot fill run once, as 'all'")
    p.add_argument("--folds", type=int, help="folds (default 5)")
    p.add_argument("--repeats", type=int, help="repeats with new splits (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of splits and draws (default 0)")
    p.add_argument("--block", type=int, default=32,
                   help="pixels, fewer images than folds: side of the blocks folds are made of (default 32)")
    p.add_argument("--pixels-per-image", type=int,
                   help="labelled pixels kept per image, drawn uniformly (default 100000; 0 = all)")
    p.add_argument("--axes", help="axis order of the images when ambiguous, e.g. YXC")
    p.add_argument("--jobs", type=int, default=-1,
                   help="threads for the heads (default: the library's budget, VFM_FEATURES_THREADS or all cores)")
    p.add_argument("--cache", help="embedding cache directory reused across runs")
    p.add_argument("--output", "-o", default="evaluation", metavar="DIR",
                   help="folder for evaluation.csv and evaluation.png (default: evaluation)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace DIR/evaluation.csv and DIR/evaluation.png if they exist")


def _named_options(pairs: list[str] | None, flag: str = "--option", example: str = "-O filters:sigmas=[1,2]"
                   ) -> dict[str, dict]:
    """NAME:KEY=VALUE pairs as ``{name: {key: value}}``."""
    from vfm_features.errors import InputError
    from ._common import parse_options

    out: dict[str, dict] = {}
    for pair in pairs or []:
        name, sep, rest = pair.partition(":")
        if not sep or "=" not in rest or "=" in name:
            raise InputError(f"{flag} {pair!r} is not NAME:KEY=VALUE (for example {example}).")
        out.setdefault(name, {}).update(parse_options([rest]))
    return out


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import warnings

    from vfm_features.errors import InputError
    from vfm_features.registry import default_registry, get_spec

    from ._common import Staging, check_output_dir, check_outputs, refuse

    if args.demo == bool(args.dataset):
        raise InputError("Give a dataset folder or --demo (not both).")
    out = check_output_dir(args.output)
    csv_out, png_out = out / "evaluation.csv", out / "evaluation.png"
    plot = importlib.util.find_spec("matplotlib") is not None
    check_outputs([csv_out, png_out] if plot else [csv_out], overwrite=args.overwrite)
    tasks = args.task or None
    if tasks == ["objects"]:
        for flag, given in (("--pixel-budgets", args.pixel_budgets), ("--pixels-per-image", args.pixels_per_image)):
            if given is not None:
                raise refuse(flag, "applies to the pixels task; this run has --task objects only")
    if tasks == ["pixels"] and args.object_budgets is not None:
        raise refuse("--object-budgets", "applies to the objects task; this run has --task pixels only")
    extractors = args.extractor or ["filters", "regionprops"]
    if tasks == ["pixels"] and not args.extractor:
        extractors = ["filters"]
    heads = args.head or ["rf"]
    upsampler = args.upsampler or "bilinear"
    if args.upsampler:
        default_registry().upsampler_spec(args.upsampler)
        if all(get_spec(e).kind == "object" for e in extractors):
            raise refuse("--upsampler", f"applies to pixel extractors; {', '.join(extractors)} compute object "
                                        "features themselves")

    from vfm_features.evaluation.datasets import load_dataset, synthetic_dataset
    from vfm_features.evaluation.evaluate import evaluate
    from vfm_features.evaluation.protocol import OBJECT_BUDGETS, PIXEL_BUDGETS, Protocol

    demo = DEMO if args.demo else {}
    if args.demo:
        dataset = synthetic_dataset(DEMO["images"], (DEMO["size"], DEMO["size"]), random_state=args.seed)
    else:
        dataset = load_dataset(args.dataset, axes=args.axes)
    protocol = Protocol(n_folds=args.folds or demo.get("folds", 5), n_repeats=args.repeats or demo.get("repeats", 5),
                        seed=args.seed, block=args.block)
    per_image = args.pixels_per_image if args.pixels_per_image is not None else demo.get("pixels_per_image", 100_000)
    pixel_budgets = _budgets(args.pixel_budgets or demo.get("pixel_budgets", "")) or list(PIXEL_BUDGETS)
    object_budgets = _budgets(args.object_budgets or demo.get("object_budgets", "")) or list(OBJECT_BUDGETS)
    setup = f"extractors {', '.join(extractors)}, heads {', '.join(heads)}, upsampler {upsampler}"
    print(f"vfm-features evaluate: {dataset.source} ({len(dataset)} images; tasks "
          f"{', '.join(tasks or dataset.tasks)}), {setup}, {protocol.n_folds} folds x {protocol.n_repeats} "
          f"repeats, seed {protocol.seed}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(dataset, extractors=extractors, heads=heads, tasks=tasks, upsampler=upsampler,
                          pixel_budgets=pixel_budgets, object_budgets=object_budgets, protocol=protocol,
                          pixels_per_image=per_image or None, extractor_options=_named_options(args.option),
                          head_options=_named_options(args.head_option, "--head-option", "deap:max_iter=200"),
                          n_jobs=args.jobs, cache=args.cache, log=print)
    for w in caught:
        print(f"warning: {w.message}")
    print(result.summary())
    with Staging() as stage:
        result.to_csv(stage.file(csv_out))
        if plot:
            result.plot(stage.file(png_out), title=f"{result.title()}\nheads {', '.join(heads)}; upsampler {upsampler}")
    print(f"{setup}; wrote {csv_out}" + (f" and {png_out}" if plot else " (no plot: matplotlib is not installed)"))
    return 0
