"""Label-efficiency evaluation: macro-F1 of extractor x head against the number of labels.

For every task (pixels, objects), extractor, head, budget, repeat and fold, a head
is trained on at most ``budget`` labelled samples of the training folds (balanced
over classes) and scored with macro-F1 on every labelled sample of the held-out
fold. See :mod:`vfm_features.evaluation.protocol` for the splits and ``docs/evaluation.md``
for the whole protocol, the CSV columns and how to read the plot.

Heads are trained through the head seam (:mod:`vfm_features.heads.base`): each
extractor's labelled pixels or objects become one :class:`PixelSamples` /
:class:`ObjectSamples`, whose feature rows are read once, only where labels are
(at most ``pixels_per_image`` labelled pixels per image, drawn uniformly, and
every labelled object), and every fold trains a fresh head on a subset of them.
A head that reads embeddings (a probe) gets them from the same samples.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from vfm_features.errors import InputError
from vfm_features.evaluation.datasets import Dataset
from vfm_features.evaluation.metrics import macro_f1
from vfm_features.evaluation.rows import EvalRow
from vfm_features.evaluation.protocol import (
    OBJECT_BUDGETS,
    PIXEL_BUDGETS,
    Protocol,
    assign_folds,
    check_budgets,
    effective_budgets,
    training_draw,
)
from vfm_features.extractor import accepted_options
from vfm_features.features.aggregate import DEFAULT_STATS, Aggregator
from vfm_features.features.source import build_extractor, embed_plane
from vfm_features.heads.base import ObjectSamples, PixelSamples
from vfm_features.preprocess import to_planes
from vfm_features.registry import default_registry, get_upsampler

TASKS = ("pixels", "objects")


class BudgetWarning(UserWarning):
    """Budgets ask for as many labels as the training folds hold or more; they run once, with all of them."""


@dataclass
class Samples:
    """Labelled samples of one task: where they are and their class; features are per extractor."""

    task: str
    image_index: np.ndarray  # (n,) image each sample belongs to
    y: np.ndarray  # (n,) class
    coords: np.ndarray | None = None  # pixels: (n, 2) (y, x)
    ids: np.ndarray | None = None  # objects: (n,) instance id
    features: dict[str, Any] = field(default_factory=dict)  # extractor -> PixelSamples / ObjectSamples
    upsamplers: dict[str, str] = field(default_factory=dict)  # extractor -> upsampler name ('-': none)


@dataclass
class Evaluation:
    """The rows of one evaluation run and how it was run."""

    rows: list[EvalRow]
    protocol: Protocol
    dataset: str
    n_images: int

    def to_csv(self, path) -> Any:
        from vfm_features.evaluation.report import write_csv

        return write_csv(self.rows, path)

    def plot(self, path, *, title: str | None = None) -> Any:
        from vfm_features.evaluation.report import plot_curves

        return plot_curves(self.rows, path, title=title or self.title())

    def summary(self) -> str:
        from vfm_features.evaluation.report import summary_table

        return summary_table(self.rows)

    def title(self) -> str:
        p = self.protocol
        return (f"{self.dataset}: {self.n_images} image(s), {p.n_folds} folds x {p.n_repeats} "
                f"repeat{'s' if p.n_repeats > 1 else ''}")

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows]


# -- samples and features ------------------------------------------------------
def pixel_samples(dataset: Dataset, pixels_per_image: int | None, protocol: Protocol) -> Samples:
    """The labelled pixels of every image, at most ``pixels_per_image`` of each (uniform, seeded)."""
    idx, coords, ys = [], [], []
    for i, lab in enumerate(dataset.labels or []):
        yy, xx = np.nonzero(lab)
        if pixels_per_image is not None and len(yy) > pixels_per_image:
            keep = np.sort(protocol.rng(10_000 + i).choice(len(yy), pixels_per_image, replace=False))
            yy, xx = yy[keep], xx[keep]
        idx.append(np.full(len(yy), i, np.int64))
        coords.append(np.stack([yy, xx], 1).astype(np.int64))
        ys.append(lab[yy, xx].astype(np.int64))
    s = Samples("pixels", np.concatenate(idx), np.concatenate(ys), coords=np.concatenate(coords))
    if len(s.y) == 0:
        raise InputError(f"The label images of {dataset.source or 'the dataset'} contain no labelled "
                         "pixels (ids >= 1).")
    return s


def object_samples(dataset: Dataset) -> Samples:
    """Every object that has a class, in image order and ascending id."""
    idx, ids, ys = [], [], []
    for i, classes in enumerate(dataset.object_classes or []):
        oid = np.array(sorted(classes), np.int64)
        idx.append(np.full(len(oid), i, np.int64))
        ids.append(oid)
        ys.append(np.array([classes[o] for o in oid], np.int64))
    s = Samples("objects", np.concatenate(idx), np.concatenate(ys), ids=np.concatenate(ids))
    if len(s.y) == 0:
        raise InputError(f"The object class files of {dataset.source or 'the dataset'} name no labelled objects.")
    return s


def compute_features(name: str, options: dict | None, dataset: Dataset, samples: Sequence[Samples], *,
                     cache: Any = None, upsampler: Any = "bilinear", upsampler_options: dict | None = None,
                     keep_embeddings: bool = False, log: Callable[[str], Any] | None = None) -> None:
    """Fill ``samples[*].features[name]`` with head samples: one embedding per image, read at pixels and per object.

    Object features of a pixel extractor are the mean of the upsampled embedding
    over each mask plus its area, as ``ObjectClassifier`` computes them by default.
    ``keep_embeddings`` keeps embeddings and images for heads that read them.
    """
    extractor = build_extractor(name, options)
    is_object = getattr(extractor, "kind", "pixel") == "object"
    up = None if is_object else get_upsampler(upsampler, **(upsampler_options or {}))
    parts: dict[str, list[Any]] = {s.task: [] for s in samples}
    t0 = time.perf_counter()
    for i, image in enumerate(dataset.images):
        planes, stack = to_planes(image, dataset.axes)
        if stack:
            raise InputError(f"{dataset.names[i]} is a stack {stack}; evaluation takes 2D images.")
        plane = planes[0]
        emb = None if is_object else embed_plane(extractor, plane, cache)
        for s in samples:
            mine = s.image_index == i
            if s.task == "pixels":
                part = PixelSamples([emb], [plane], np.zeros(int(mine.sum()), np.int64), s.coords[mine], up,
                                    s.y[mine])
            else:
                mask = dataset.instances[i]
                ids = s.ids[mine]
                if is_object:
                    feats = extractor.object_features(plane, mask, axes="YXC")
                    part = ObjectSamples(np.zeros(len(ids), np.int64), ids, s.y[mine], object_features=[feats])
                else:
                    part = ObjectSamples(np.zeros(len(ids), np.int64), ids, s.y[mine], embeddings=[emb],
                                         images=[plane], masks=[mask], aggregator=Aggregator(DEFAULT_STATS, True),
                                         upsampler=up)
            part.features()
            parts[s.task].append(part if keep_embeddings else part.without_embeddings())
    for s in samples:
        merged = (PixelSamples if s.task == "pixels" else ObjectSamples).concat(parts[s.task])
        # keep the task's sample order (image by image, as the protocol indexes them)
        s.features[name] = merged
        s.upsamplers[name] = up.name if up is not None else "-"
    if log:
        log(f"features {name}: {time.perf_counter() - t0:.1f} s for {len(dataset)} image(s)")


# -- the protocol ----------------------------------------------------------------
def _budget_warning(task: str, clipped: Sequence[int], pool: int) -> None:
    unit = "pixels" if task == "pixels" else "objects"
    listed = ", ".join(str(b) for b in clipped)
    warnings.warn(
        f"The {task} budget{'s' if len(clipped) > 1 else ''} {listed} reach{'' if len(clipped) > 1 else 'es'} the "
        f"{pool} labelled {unit} that the smallest training folds hold; {'they ran' if len(clipped) > 1 else 'it ran'} "
        f"once, with every training sample, as budget 'all' (the CSV column n_train says how many). "
        f"Label more {unit} or drop budgets from {pool} up.", BudgetWarning, stacklevel=3)


def run_protocol(samples: Samples, budgets: Sequence[int | None], heads: Sequence[str], protocol: Protocol,
                 *, n_images: int, n_jobs: int | None = -1, head_options: dict[str, dict] | None = None,
                 log: Callable[[str], Any] | None = None) -> list[EvalRow]:
    """Train and score every head at every budget on every fold of every repeat, for each extractor.

    Budgets at or above the smallest training pool run once, as 'all' (None).
    """
    mode = protocol.split_mode(samples.task, n_images)
    folds_of = [assign_folds(protocol, mode, repeat, image_index=samples.image_index, y=samples.y,
                             coords=samples.coords) for repeat in range(protocol.n_repeats)]
    pool = min(int(np.sum(folds != fold)) for folds in folds_of for fold in range(protocol.n_folds))
    budgets, clipped = effective_budgets(budgets, pool)
    if clipped:
        _budget_warning(samples.task, clipped, pool)
    rows: list[EvalRow] = []
    for repeat, folds in enumerate(folds_of):
        for fold in range(protocol.n_folds):
            test = np.flatnonzero(folds == fold)
            train = np.flatnonzero(folds != fold)
            y_train, y_test = samples.y[train], samples.y[test]
            for budget in budgets:
                draw = train[training_draw(y_train, budget, protocol, repeat, fold)]
                for extractor, data in samples.features.items():
                    for head_name in heads:
                        row = _train_and_score(samples.task, extractor, head_name, budget, data, samples.y,
                                               draw, test, y_test, repeat, fold, mode, protocol, n_jobs,
                                               head_options)
                        row.upsampler = samples.upsamplers.get(extractor, "-")
                        rows.append(row)
        if log:
            done = [r for r in rows if r.repeat == repeat]
            log(f"{samples.task}: repeat {repeat + 1}/{protocol.n_repeats} done "
                f"(mean macro-F1 {np.nanmean([r.macro_f1 for r in done]):.3f} over {len(done)} runs)")
    return rows


def new_head(name: str, task: str, *, random_state: int | None = None, n_jobs: int | None = None,
             options: dict | None = None) -> Any:
    """A fresh head ``name`` for ``task`` ('pixels' or 'objects'); seed and threads go to heads that take them.

    ``options`` (the user's) win over the seed and thread count.
    """
    registry = default_registry()
    kind = "pixel" if task == "pixels" else "object"
    spec = registry.head_spec(name, kind)
    accepted = accepted_options(spec.load_factory(), spec.options)
    extra = {k: v for k, v in (("random_state", random_state), ("n_jobs", n_jobs)) if k in accepted}
    return registry.get_head(name, kind, **{**extra, **(options or {})})


def _train_and_score(task, extractor, head_name, budget, data, y, draw, test, y_test, repeat, fold, mode,
                     protocol, n_jobs, head_options=None) -> EvalRow:
    seed = int(protocol.rng(repeat, fold, 2).integers(2**31))
    row = EvalRow(task=task, extractor=extractor, head=head_name, budget=budget, n_train=int(len(draw)),
                  n_test=int(len(test)), repeat=repeat, fold=fold, split=mode,
                  n_features=int(data.features().shape[1]), n_classes_test=int(len(np.unique(y_test))),
                  macro_f1=float("nan"), train_s=float("nan"), predict_s=float("nan"))
    if len(np.unique(y[draw])) < 2 or len(test) == 0:
        warnings.warn(f"{task} repeat {repeat} fold {fold}: the training draw holds fewer than two classes "
                      "(or the test fold is empty); macro-F1 is NaN for this fold.", UserWarning, stacklevel=3)
        return row
    head = new_head(head_name, task, random_state=seed, n_jobs=n_jobs, options=(head_options or {}).get(head_name))
    t0 = time.perf_counter()
    head.fit(data.subset(draw))
    t1 = time.perf_counter()
    proba = head.predict_proba(data.subset(test))
    pred = np.asarray(head.classes_)[np.argmax(proba, axis=1)]
    t2 = time.perf_counter()
    row.macro_f1 = macro_f1(y_test, pred, ignore=None)
    row.train_s, row.predict_s = t1 - t0, t2 - t1
    return row


def _extractor_kind(name: Any) -> str:
    from vfm_features.registry import get_spec

    if not isinstance(name, str):
        return getattr(name, "kind", "pixel")
    return get_spec(name).kind


def evaluate(dataset: Dataset, *, extractors: Sequence[str] = ("filters", "regionprops"),
             heads: Sequence[str] = ("rf",), tasks: Sequence[str] | None = None,
             pixel_budgets: Sequence[int | None] = PIXEL_BUDGETS,
             object_budgets: Sequence[int | None] = OBJECT_BUDGETS, protocol: Protocol | None = None,
             pixels_per_image: int | None = 100_000, extractor_options: dict[str, dict] | None = None,
             n_jobs: int | None = -1, cache: Any = None, upsampler: Any = "bilinear",
             upsampler_options: dict | None = None, head_options: dict[str, dict] | None = None,
             log: Callable[[str], Any] | None = None) -> Evaluation:
    """Macro-F1 against label budget for every extractor x head on ``dataset``.

    Parameters
    ----------
    dataset : Dataset
        From :func:`vfm_features.evaluation.datasets.load_dataset` or ``synthetic_dataset``.
    extractors : names of registered extractors. Pixel extractors serve both tasks
        (objects get the mean of the embedding over their mask, as ``ObjectClassifier``
        does); object extractors such as ``regionprops`` serve the object task only.
    heads : registered head names (:func:`vfm_features.list_heads`), for both tasks.
    head_options : ``{head name: options}`` for those heads (e.g. ``{"deap": {"max_iter": 200}}``);
        checked on a head of each task before any feature is computed.
    upsampler, upsampler_options : how pixel extractors' embeddings are read (default bilinear).
    tasks : 'pixels' and/or 'objects'; default: every task the dataset has labels for.
    pixel_budgets, object_budgets : labels used for training (None = all); budgets at or
        above what the smallest training folds hold run once, as None ("all"), with a
        :class:`BudgetWarning`: the set ends where the data does.
    protocol : folds, repeats, seed and block size (default: 5 folds x 5 repeats, seed 0).
    pixels_per_image : labelled pixels kept per image (uniform draw; None = all).
    extractor_options : ``{extractor name: options}`` passed to ``get_extractor``.
    n_jobs : threads for the heads (-1 = all cores).
    cache : an embedding cache (or its path) for extractors that are slow to run.
    log : called with one line of progress text at a time (e.g. ``print``).
    """
    protocol = protocol or Protocol()
    tasks = tuple(tasks) if tasks is not None else dataset.tasks
    for task in tasks:
        if task not in TASKS:
            raise InputError(f"Unknown task {task!r}; use one of {TASKS}.")
        if task not in dataset.tasks:
            need = "labels/" if task == "pixels" else "instances/ and object_classes/"
            raise InputError(f"The {task} task needs {need} in {dataset.source or 'the dataset'}.")
    if not tasks:
        raise InputError("The dataset has no labels for any task.")
    head_options = dict(head_options or {})
    stray = sorted(set(head_options) - set(heads))
    if stray:
        raise InputError(f"head_options name heads {stray} that this run does not use; its heads are {list(heads)}.")
    for head in heads:  # unknown names and options fail before any feature is computed
        for task in tasks:
            default_registry().head_spec(head, "pixel" if task == "pixels" else "object")
            if head in head_options:
                new_head(head, task, options=head_options[head])
    keep = any(default_registry().head_spec(h, "pixel" if t == "pixels" else "object").load_factory().needs_embeddings
               for h in heads for t in tasks)
    budgets = {"pixels": check_budgets(pixel_budgets, "pixel"), "objects": check_budgets(object_budgets, "object")}
    options = extractor_options or {}
    kinds = {name: _extractor_kind(name) for name in extractors}
    samples = {}
    if "pixels" in tasks:
        samples["pixels"] = pixel_samples(dataset, pixels_per_image, protocol)
    if "objects" in tasks:
        samples["objects"] = object_samples(dataset)
    for name in extractors:
        wanted = [s for t, s in samples.items() if t == "objects" or kinds[name] == "pixel"]
        if not wanted:
            raise InputError(f"{name!r} is an object extractor and serves only the objects task; "
                             f"this run has tasks {list(tasks)}.")
        compute_features(name, options.get(name), dataset, wanted, cache=cache, upsampler=upsampler,
                         upsampler_options=upsampler_options, keep_embeddings=keep, log=log)
    rows: list[EvalRow] = []
    for task, s in samples.items():
        if not s.features:
            raise InputError(f"No extractor given serves the {task} task; add a pixel extractor such as 'filters'.")
        rows += run_protocol(s, budgets[task], heads, protocol, n_images=len(dataset), n_jobs=n_jobs,
                             head_options=head_options, log=log)
    return Evaluation(rows=rows, protocol=protocol, dataset=dataset.source or "dataset", n_images=len(dataset))
