"""Installing a plugin for a test the way pip would: a module plus a dist-info folder with entry points."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

TOY = Path(__file__).parent / "toy_plugin" / "vfm_toy.py"


def install(root: Path, module: str, *, source: str | Path | None = None, dist: str = "third-party-plugin",
            version: str = "0.1", group: str = "vfm_features.plugins", entry: str | None = None) -> Path:
    """Write ``module`` (from ``source`` text or file) and ``<dist>-<version>.dist-info`` into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Path):
        shutil.copy(source, root / f"{module}.py")
    else:
        (root / f"{module}.py").write_text(textwrap.dedent(source or ""))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry or module} = {module}\n")
    (info / "top_level.txt").write_text(module + "\n")
    return root


def install_toy(root: Path, version: str = "0.1") -> Path:
    return install(root, "vfm_toy", source=TOY, dist="vfm-toy", version=version, entry="toy")


def counting_filters(sigmas=(1.0,)):
    """A filters extractor that counts how many planes it embeds (to prove caching and memos work)."""
    from vfm_features import FeatureExtractor, get_extractor

    class Counting(FeatureExtractor):
        def __init__(self):
            inner = get_extractor("filters", sigmas=list(sigmas))
            super().__init__(inner.spec, **inner.options)
            self.inner, self.calls = inner, 0

        def n_features_for(self, n_channels):
            return self.inner.n_features_for(n_channels)

        def _embed_plane(self, plane):
            self.calls += 1
            return self.inner._embed_plane(plane)

    return Counting()
