"""Running block tasks as Dask tasks: local threads or processes, synchronous, or a dask.distributed cluster.

``scheduler`` is ``"threads"`` (default), ``"processes"``, ``"synchronous"``, a
scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``. The shared
object (the classifier) enters the graph once: on a cluster each worker
deserialises it once and keeps it, so a GPU worker loads one model and batches
its blocks through it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from vfm_features.errors import InputError
from vfm_features.progress import progress_bar

LOCAL = ("threads", "processes", "synchronous")


def _client(scheduler: Any) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise ImportError("A dask.distributed scheduler needs the package distributed: "
                          "pip install 'vfm-features[scale]'") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler, timeout="20s"), True
    except (OSError, TimeoutError) as exc:
        raise InputError(f"Cannot reach the dask scheduler {scheduler!r} ({exc}); start it with "
                         "'dask scheduler' and workers with 'dask worker ADDRESS', or use --scheduler threads.") from None


def run_tasks(fn: Callable[..., Any], shared: Any, items: Sequence[Any], *, scheduler: Any = "threads",
              num_workers: int | None = None, progress: Any = False, desc: str = "blocks",
              log: Callable[[str], Any] | None = None) -> list[Any]:
    """``[fn(shared, item) for item in items]`` as Dask tasks; results in the order of ``items``.

    Failed tasks are retried once on a cluster (a lost worker); any other failure
    is raised after the tasks that finished have kept their results on disk.
    """
    import dask

    if not items:
        return []
    if isinstance(scheduler, str) and scheduler in LOCAL:
        shared_node = dask.delayed(shared, pure=True, traverse=False)
        tasks = [dask.delayed(fn, pure=False)(shared_node, item) for item in items]
        bar = _Bar(len(tasks), progress, desc)
        with bar.callback():
            out = dask.compute(*tasks, scheduler=scheduler, num_workers=num_workers)
        bar.close()
        return list(out)
    if isinstance(scheduler, str) and not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")) \
            and ":" not in scheduler:
        raise InputError(f"scheduler={scheduler!r} is not one of {LOCAL} nor a scheduler address such as "
                         "'tcp://127.0.0.1:8786'.")
    from distributed import as_completed

    client, owned = _client(scheduler)
    try:
        if log:
            log(f"dask dashboard: {client.dashboard_link}")
        [shared_future] = client.scatter([shared], broadcast=True)
        futures = [client.submit(fn, shared_future, item, pure=False, retries=1) for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[Any] = [None] * len(futures)
        for future in progress_bar(as_completed(futures), progress, desc=desc, total=len(futures)):
            out[index[future.key]] = future.result()
        return out
    finally:
        if owned:
            client.close()


class _Bar:
    """A progress bar for Dask's local schedulers (one tick per finished block task)."""

    def __init__(self, total: int, progress: Any, desc: str) -> None:
        self.total, self.progress, self.desc, self.done = total, progress, desc, 0
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False)

    def callback(self) -> Any:
        from dask.callbacks import Callback

        outer = self

        class Tick(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                name = key[0] if isinstance(key, tuple) else key
                if str(name).startswith(("_block_task", "block_task", "pixel_task", "partial_task", "paint_task")):
                    outer.tick()

        return Tick()

    def tick(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif callable(self.progress):
            self.progress(self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
