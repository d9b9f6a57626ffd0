"""The thread policy: one budget (set_threads / VFM_FEATURES_THREADS / cores) that every pool and library follows."""

import numpy as np
import pytest

from vfm_features import threads
from vfm_features.errors import InputError


@pytest.fixture(autouse=True)
def _restore():
    previous = threads.set_threads(None)
    yield
    threads.set_threads(previous)


def test_budget_defaults_to_usable_cores(monkeypatch):
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    assert threads.thread_budget() == threads.usable_cpus() >= 1
    assert threads.n_threads(None) == 1
    assert threads.n_threads(-1) == threads.usable_cpus()


def test_environment_variable_and_set_threads(monkeypatch):
    monkeypatch.setenv(threads.ENV_VAR, "3")
    assert threads.thread_budget() == 3
    assert threads.n_threads(-1) == 3 and threads.n_threads(-2) == 2 and threads.n_threads(8) == 3
    assert threads.set_threads(1) is None  # the call overrides the environment
    assert threads.thread_budget() == 1 and threads.n_threads(-1) == 1 and threads.n_threads(4) == 1
    assert threads.set_threads(None) == 1
    assert threads.thread_budget() == 3


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_bad_budgets_name_the_fix(monkeypatch, bad):
    monkeypatch.setenv(threads.ENV_VAR, bad)
    with pytest.raises(InputError, match="VFM_FEATURES_THREADS must be a positive whole number"):
        threads.thread_budget()
    with pytest.raises(InputError, match="positive whole number"):
        threads.set_threads(0)
    with pytest.raises(InputError, match="positive whole number"):
        threads.set_threads(True)


def test_native_threads_limits_blas_and_restores_it():
    pytest.importorskip("threadpoolctl")
    from threadpoolctl import threadpool_info

    def blas():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS is loaded
    before = blas()
    with threads.native_threads(1):
        assert all(n == 1 for n in blas())
    assert blas() == before


def test_apply_torch_threads_sets_torch_only_when_imported(monkeypatch):
    import sys

    calls = []

    class FakeTorch:
        @staticmethod
        def get_num_threads():
            return 7

        @staticmethod
        def set_num_threads(n):
            calls.append(n)

    threads.set_threads(2)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert threads.apply_torch_threads() == 2 and calls == []  # torch is never imported by it
    monkeypatch.setitem(sys.modules, "torch", FakeTorch)
    threads.apply_torch_threads()
    assert calls == [2]


def test_the_forest_follows_the_budget(small_data):
    from vfm_features import PixelClassifier

    threads.set_threads(1)
    d = small_data[0]
    clf = PixelClassifier("filters", budget=500).fit(d.image, d.scribbles(0.03, random_state=0))
    assert clf.head_.n_jobs == -1 and clf.head_.forest_.n_jobs == 1
