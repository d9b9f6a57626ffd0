"""The evaluation harness: protocol splits, dataset folders, CSV, plot, warnings and the CLI."""

import csv
import json
import warnings

import numpy as np
import pytest

from vfm_features import InputError
from vfm_features.cli import main
from vfm_features.evaluation.datasets import Dataset, load_dataset, save_dataset, synthetic_dataset
from vfm_features.evaluation.evaluate import BudgetWarning, Samples, evaluate, run_protocol
from vfm_features.evaluation.evaluate import new_head
from vfm_features.heads.base import ObjectSamples, PixelSamples
from vfm_features.registry import list_heads
from vfm_features.io import write_image
from vfm_features.evaluation.protocol import Protocol, assign_folds, block_groups, check_budgets, training_draw
from vfm_features.evaluation.report import read_csv

FAST = dict(pixel_budgets=[50, 200], object_budgets=[6, None], pixels_per_image=2000, n_jobs=1)


@pytest.fixture(scope="module")
def tiny():
    return synthetic_dataset(3, (64, 64), random_state=3)


@pytest.fixture(scope="module")
def tiny_result(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        return evaluate(tiny, extractors=["filters", "regionprops"], protocol=Protocol(n_folds=2, n_repeats=2), **FAST)


@pytest.fixture
def folder(tmp_path, tiny):
    return save_dataset(tiny, tmp_path / "ds")


# -- protocol ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["images", "blocks", "objects"])
def test_splits_are_deterministic_disjoint_and_cover_everything(mode):
    rng = np.random.default_rng(0)
    n = 3000
    image_index = rng.integers(0, 7, n)
    coords = rng.integers(0, 200, (n, 2))
    y = rng.integers(1, 4, n)
    p = Protocol(n_folds=5, n_repeats=3, seed=4, block=32)
    a = assign_folds(p, mode, 1, image_index=image_index, y=y, coords=coords)
    b = assign_folds(p, mode, 1, image_index=image_index, y=y, coords=coords)
    np.testing.assert_array_equal(a, b)  # same seed and repeat: same folds
    assert set(np.unique(a)) == set(range(5))  # every sample in exactly one fold, no fold empty
    assert not np.array_equal(a, assign_folds(p, mode, 2, image_index=image_index, y=y, coords=coords))
    if mode == "images":  # an image never spans two folds
        assert all(len(np.unique(a[image_index == i])) == 1 for i in np.unique(image_index))
    if mode == "blocks":
        groups = block_groups(image_index, coords, 32)
        assert all(len(np.unique(a[groups == g])) == 1 for g in np.unique(groups))
    if mode == "objects":  # stratified: every fold has every class in about equal numbers
        for c in (1, 2, 3):
            counts = np.bincount(a[y == c], minlength=5)
            assert counts.max() - counts.min() <= 1


def test_split_mode_follows_the_number_of_images():
    p = Protocol()
    assert p.split_mode("pixels", 5) == "images" and p.split_mode("objects", 9) == "images"
    assert p.split_mode("pixels", 4) == "blocks" and p.split_mode("objects", 1) == "objects"


def test_too_few_units_for_the_folds():
    with pytest.raises(InputError, match="fewer folds"):
        assign_folds(Protocol(n_folds=5), "images", 0, image_index=np.array([0, 0, 1, 2]), y=np.ones(4))


def test_training_draws_are_nested_and_balanced():
    y = np.repeat([1, 2, 3], [500, 60, 2000])
    p = Protocol(seed=1)
    small, large = training_draw(y, 90, p, 0, 1), training_draw(y, 600, p, 0, 1)
    assert set(small) <= set(large)
    assert np.bincount(y[small]).tolist() == [0, 30, 30, 30]
    np.testing.assert_array_equal(small, training_draw(y, 90, p, 0, 1))
    assert len(training_draw(y, None, p, 0, 1)) == len(y)


def test_check_budgets():
    assert check_budgets([None, 300, 100, 100], "pixel") == [100, 300, None]
    with pytest.raises(InputError, match="whole number >= 1"):
        check_budgets([0], "pixel")


# -- results: rows, CSV, plot ------------------------------------------------------------
def test_rows_cover_the_protocol(tiny_result):
    rows = tiny_result.rows
    pixels = [r for r in rows if r.task == "pixels"]
    objects = [r for r in rows if r.task == "objects"]
    assert len(pixels) == 1 * 1 * 2 * 2 * 2  # extractor x head x budgets x repeats x folds
    # 4-9 objects per training pool: budget 6 cannot be filled everywhere, so it runs once with 'all'
    assert len(objects) == 2 * 1 * 1 * 2 * 2
    assert {r.budget for r in objects} == {None}
    assert {r.split for r in pixels} == {"images"} and {r.split for r in objects} == {"images"}
    assert all(0 <= r.macro_f1 <= 1 for r in rows)
    assert all(r.n_train <= (r.budget or 10**9) for r in rows)
    assert max(r.macro_f1 for r in pixels) > 0.5  # chance is about 0.25


def test_evaluation_is_reproducible(tiny, tiny_result):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        again = evaluate(tiny, extractors=["filters"], tasks=["pixels"], protocol=Protocol(n_folds=2, n_repeats=2),
                         **FAST)
    first = [(r.budget, r.repeat, r.fold, r.n_train, r.macro_f1) for r in tiny_result.rows
             if r.task == "pixels"]
    assert [(r.budget, r.repeat, r.fold, r.n_train, r.macro_f1) for r in again.rows] == first


def test_csv_columns_and_round_trip(tiny_result, tmp_path):
    path = tiny_result.to_csv(tmp_path / "out.csv")
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["task", "extractor", "head", "budget", "n_train", "n_test", "repeat", "fold", "split",
                      "n_features", "n_classes_test", "macro_f1", "train_s", "predict_s", "upsampler"]
    back = read_csv(path)
    assert {(r.extractor, r.upsampler) for r in back} == {("filters", "bilinear"), ("regionprops", "-")}
    assert len(back) == len(tiny_result.rows)
    assert {r.budget for r in back if r.task == "objects"} == {None}  # 'all' reads back as None
    assert back[0].macro_f1 == pytest.approx(tiny_result.rows[0].macro_f1, rel=1e-5)


def test_plot_is_written(tiny_result, tmp_path):
    pytest.importorskip("matplotlib")
    path = tiny_result.plot(tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "regionprops" in tiny_result.summary()


# -- warnings and bad input ----------------------------------------------------------------
def test_budgets_above_the_labels_run_once_as_all(tiny):
    with pytest.warns(BudgetWarning, match=r"budgets 500, 30000, 100000 reach the 500 labelled pixels"):
        res = evaluate(tiny, extractors=["filters"], tasks=["pixels"], pixel_budgets=[100, 500, 30_000, 100_000],
                       protocol=Protocol(n_folds=2, n_repeats=1), pixels_per_image=500, n_jobs=1)
    # three images of 500 pixels dealt into two folds: training holds one or two images, all of it used once
    assert [r.budget for r in res.rows] == [100, None, 100, None]
    assert {r.n_train for r in res.rows if r.budget is None} == {500, 1000}


def test_effective_budgets_end_where_the_data_does():
    from vfm_features.evaluation.protocol import PIXEL_BUDGETS, effective_budgets

    assert effective_budgets(PIXEL_BUDGETS, 8_000) == ([100, 300, 1_000, 3_000, None], [10_000, 30_000, 100_000])
    assert effective_budgets([100, None], 8_000) == ([100, None], [])
    assert effective_budgets(PIXEL_BUDGETS, 10**6) == (list(PIXEL_BUDGETS), [])


def test_plot_shows_clipped_budgets_once_as_all(tmp_path):
    from vfm_features.evaluation.report import axis_ticks, curves, plot_curves
    from vfm_features.evaluation.rows import EvalRow

    def row(budget, n_train, fold):
        return EvalRow(task="pixels", extractor="filters", head="rf", budget=budget, n_train=n_train, n_test=10,
                       repeat=0, fold=fold, split="blocks", n_features=4, n_classes_test=2, macro_f1=0.5,
                       train_s=0.1, predict_s=0.1)

    # a file from before budgets were folded: 3000 and 10000 both clipped to the 2000 labels of each fold
    rows = [row(b, min(b, 2000), f) for b in (100, 3000, 10_000) for f in (0, 1)]
    (points,) = curves(rows).values()
    assert [(p[0], p[1], p[4]) for p in points] == [(100, 100.0, 2), (None, 2000.0, 2)]
    assert axis_ticks(curves(rows), "pixels") == {100: "100", 2000: "all (2000)"}
    pytest.importorskip("matplotlib")
    assert plot_curves(rows, tmp_path / "p.png").exists()


def test_class_absent_from_a_fold_scores_the_classes_present():
    rng = np.random.default_rng(0)
    y = np.array([1] * 40 + [2] * 40 + [3] * 10)
    image_index = np.r_[np.arange(80) % 4, np.full(10, 4)]  # class 3 lives in image 4 only
    X = (y[:, None] + 0.1 * rng.standard_normal((90, 3))).astype(np.float32)
    rows_only = ObjectSamples(image_index, np.arange(90), y, rows=X)
    s = Samples("objects", image_index, y, ids=np.arange(90), features={"toy": rows_only})
    rows = run_protocol(s, [None], ["rf"], Protocol(n_folds=5, n_repeats=1), n_images=5, n_jobs=1)
    by_fold = {r.fold: r for r in rows}
    assert sorted(r.n_classes_test for r in rows).count(1) == 1  # the fold holding image 4 has class 3 only
    assert all(np.isfinite(r.macro_f1) for r in rows)
    assert all(r.macro_f1 == 1.0 for r in by_fold.values() if r.n_classes_test == 2)


def test_unknown_head_and_extractor_misuse(tiny):
    with pytest.raises(InputError, match="Unknown pixel head 'rff'.*'rf'"):
        evaluate(tiny, heads=["rff"])
    with pytest.raises(InputError, match="object extractor"):
        evaluate(tiny, extractors=["regionprops"], tasks=["pixels"])


def test_head_options_reach_the_heads_and_bad_ones_fail_first(tiny):
    run = dict(extractors=["filters"], tasks=["pixels"], protocol=Protocol(n_folds=2, n_repeats=1),
               pixel_budgets=[200], pixels_per_image=2000, n_jobs=1)
    with pytest.raises(InputError, match="does not take that option"):
        evaluate(tiny, head_options={"rf": {"n_estimatorz": 2}}, **run)
    with pytest.raises(InputError, match="does not use"):
        evaluate(tiny, head_options={"rf-reference": {"n_estimators": 2}}, **run)
    few = evaluate(tiny, head_options={"rf": {"n_estimators": 1, "max_depth": 1}}, **run)
    default = evaluate(tiny, **run)
    assert np.mean([r.macro_f1 for r in few.rows]) < np.mean([r.macro_f1 for r in default.rows])
    forest = new_head("rf", "pixels", n_jobs=1, options={"n_estimators": 3})
    assert forest.n_estimators == 3


def test_heads_are_registered_by_name():
    assert {"rf", "rf-reference"} <= set(list_heads("pixel")) and {"rf", "rf-reference"} <= set(list_heads("object"))


def test_rf_head_trains_the_classifiers_default_forest():
    X = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    y = np.arange(40) % 2 + 1
    samples = PixelSamples([None], [None], np.zeros(40, np.int64), np.zeros((40, 2)), None, y, rows=X)
    for task, (trees, depth) in (("pixels", (64, 10)), ("objects", (200, None))):
        forest = new_head("rf", task, n_jobs=1).fit(samples).forest_
        assert (forest.n_estimators, forest.max_depth) == (trees, depth)


def test_folder_round_trip(folder, tiny):
    ds = load_dataset(folder)
    assert ds.names == tiny.names and ds.tasks == ("pixels", "objects")
    np.testing.assert_array_equal(ds.labels[1], tiny.labels[1])
    assert ds.object_classes[2] == tiny.object_classes[2]


def test_missing_label_file_is_named(folder):
    (folder / "labels" / "synthetic01.tif").unlink()
    with pytest.raises(InputError, match=r"labels/synthetic01\.\* is missing"):
        load_dataset(folder)


def test_label_without_image_is_named(folder):
    write_image(folder / "labels" / "stray.tif", np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError, match=r"stray\.tif has no image"):
        load_dataset(folder)


def test_mismatched_shape_is_named(folder):
    write_image(folder / "instances" / "synthetic02.tif", np.zeros((32, 64), np.int32))
    with pytest.raises(InputError, match=r"synthetic02\.tif has shape \(32, 64\)"):
        load_dataset(folder)


def test_bad_object_classes_are_named(folder):
    (folder / "object_classes" / "synthetic00.json").write_text(json.dumps({"9999": 1}))
    with pytest.raises(InputError, match=r"synthetic00\.json names object id\(s\) \[9999\]"):
        load_dataset(folder)
    (folder / "object_classes" / "synthetic00.json").unlink()
    (folder / "object_classes" / "synthetic00.csv").write_text("object,label\n1,2\n")
    with pytest.raises(InputError, match=r"synthetic00\.csv is not a valid object class file"):
        load_dataset(folder)


def test_csv_object_classes(folder, tiny):
    (folder / "object_classes" / "synthetic00.json").unlink()
    rows = "".join(f"{k},{v}\n" for k, v in tiny.object_classes[0].items())
    (folder / "object_classes" / "synthetic00.csv").write_text("id,class\n" + rows)
    assert load_dataset(folder).object_classes[0] == tiny.object_classes[0]


def test_half_an_object_task_is_refused(folder):
    import shutil

    shutil.rmtree(folder / "object_classes")
    with pytest.raises(InputError, match="object_classes is missing"):
        load_dataset(folder)


def test_no_images_folder(tmp_path):
    with pytest.raises(InputError, match="images is missing"):
        load_dataset(tmp_path)


# -- the command ------------------------------------------------------------------------------
def test_cli_writes_csv_and_plot(folder, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "res"
    code = main(["evaluate", str(folder), "--folds", "2", "--repeats", "1", "--pixel-budgets", "50,1e2",
                 "--object-budgets", "5,all", "--pixels-per-image", "1000", "--jobs", "1", "-o", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "macro-F1" in text and "regionprops" in text
    assert (out / "evaluation.png").exists()
    rows = read_csv(out / "evaluation.csv")
    assert {r.task for r in rows} == {"pixels", "objects"}
    assert {r.budget for r in rows if r.task == "pixels"} == {50, 100}


def test_cli_names_the_bad_file(folder, tmp_path, capsys):
    (folder / "instances" / "synthetic00.tif").unlink()
    assert main(["evaluate", str(folder), "-o", str(tmp_path / "x")]) == 1
    assert "instances/synthetic00.* is missing" in capsys.readouterr().err


def test_cli_needs_a_folder_or_demo(capsys):
    assert main(["evaluate"]) == 1
    assert "--demo" in capsys.readouterr().err


def test_dataset_without_labels_has_no_task():
    ds = Dataset(names=["a"], images=[np.zeros((4, 4))])
    assert ds.tasks == ()
    with pytest.raises(InputError, match="needs labels/"):
        evaluate(ds, tasks=["pixels"])
