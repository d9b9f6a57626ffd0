"""The arrows of docs/architecture.md: no import cycles, no plugin imports in the core, thread safety, small pickles."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import vfm_features as vf

CORE = Path(vf.__file__).parent


def _module_name(path: Path) -> str:
    parts = ("vfm_features",) + path.relative_to(CORE).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Module -> modules of vfm_features it imports anywhere (function-level and TYPE_CHECKING imports too)."""
    modules = {_module_name(p): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in targets if t in modules and t != mod and t != "vfm_features"
                           and not mod.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles_in_the_core():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_core_imports_no_plugin_and_no_adapter():
    plugins = {p.name for p in (CORE.parents[1] / "plugins").iterdir() if p.is_dir()}
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in plugins, f"{path} imports the plugin {name}"


def test_lower_layers_do_not_reach_up():
    graph = import_graph()
    rules = {"vfm_features.features": ("vfm_features.heads", "vfm_features.classifiers", "vfm_features.evaluation"),
             "vfm_features.heads": ("vfm_features.classifiers", "vfm_features.evaluation"),
             "vfm_features.models": ("vfm_features.heads", "vfm_features.classifiers", "vfm_features.evaluation"),
             "vfm_features.extractor": ("vfm_features.heads", "vfm_features.classifiers", "vfm_features.evaluation")}
    for mod, targets in graph.items():
        for layer, forbidden in rules.items():
            if mod == layer or mod.startswith(layer + "."):
                bad = [t for t in targets if t.startswith(forbidden)]
                assert not bad, f"{mod} imports {bad}"


def test_public_api_is_importable_without_torch():
    code = ("import vfm_features as v, sys; [getattr(v, n) for n in v.__all__ if n not in ('ModelExtractor',)]; "
            "bad=[m for m in ('torch','transformers','segment_anything','sam2','skops') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def _threads(fn, n=2):
    out: list = [None] * n
    errors: list = []

    def run(i):
        try:
            out[i] = fn()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


def test_an_extractor_embeds_from_two_threads_with_identical_results(small_data):
    ext = vf.get_extractor("filters", tile_shape=64, halo=24)
    image = small_data[1].image
    serial = ext.embed(image).data
    for data in _threads(lambda: ext.embed(image).data):
        np.testing.assert_array_equal(data, serial)


def test_a_classifier_predicts_from_two_threads(small_data):
    d = small_data[0]
    clf = vf.PixelClassifier("filters", head_options={"n_estimators": 3}).fit(d.image, d.scribbles(0.03, random_state=0))
    images = [small_data[1].image, small_data[2].image]
    serial = [clf.predict_proba(im) for im in images]
    got = _threads(lambda: [clf.predict_proba(im) for im in images])
    for result in got:
        for a, b in zip(result, serial):
            np.testing.assert_array_equal(a, b)


def test_a_fitted_classifier_pickles_without_embeddings(small_data):
    d = small_data[0]
    clf = vf.PixelClassifier("filters", head_options={"n_estimators": 3}).fit(d.image, d.scribbles(0.03, random_state=0))
    clf.predict(d.image)  # fills the memory of the last embedding (32 x 96 x 96 float32 = 1.2 MB)
    blob = pickle.dumps(clf)
    assert len(blob) < 300_000
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.predict(d.image), clf.predict(d.image))
    again.partial_fit(small_data[1].image, small_data[1].scribbles(0.03, random_state=1))  # the samples survived


def test_cache_keys_do_not_depend_on_installed_extras(tmp_path, monkeypatch, small_data):
    pytest.importorskip("zarr")
    from vfm_features import EmbeddingCache

    ext = vf.get_extractor("filters", sigmas=[1.0])
    image = small_data[0].image[..., None]
    key = EmbeddingCache(tmp_path / "a.zarr").key(ext, image)
    monkeypatch.setitem(sys.modules, "xxhash", None)  # as if xxhash were not installed
    assert EmbeddingCache(tmp_path / "b.zarr").key(ext, image) == key


def test_a_cache_of_the_previous_format_is_reported_once(tmp_path):
    zarr = pytest.importorskip("zarr")
    from vfm_features import EmbeddingCache
    from vfm_features.features.cache import CacheWarning

    root = zarr.open_group(str(tmp_path / "old.zarr"), mode="w")
    root.attrs["vfm_features_cache"] = {"format": 1, "library": "0.1.0"}
    zarr.open_group(str(tmp_path / "old.zarr" / ("0" * 32)), mode="w")  # an old entry
    with pytest.warns(CacheWarning, match="format 1.*1 entries cannot be reused.*clear"):
        EmbeddingCache(tmp_path / "old.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = EmbeddingCache(tmp_path / "old.zarr")
    cache.clear()
    assert not any(p.name == "0" * 32 for p in (tmp_path / "old.zarr").iterdir())
