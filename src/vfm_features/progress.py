"""Progress bars: tqdm when asked for, a plain iterator otherwise."""

from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], enabled: bool | object, *, desc: str = "", total: int | None = None) -> Iterable[T]:
    """Wrap ``items`` in a tqdm bar when ``enabled`` is true; a callable receives (done, total) instead."""
    if callable(enabled):
        seq = list(items)

        def gen():
            for i, item in enumerate(seq):
                yield item
                enabled(i + 1, len(seq))
        return gen()
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, leave=False)
