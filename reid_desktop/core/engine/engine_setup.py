"""One way to put the engine together: the window, ``process`` and ``node`` all start their pipeline here.

A pipeline on a shared PostgreSQL database must also hear what the other processes change (targets, names, merges,
splits, their new embeddings) or it works on a stale picture of the history: the window and ``node`` once did this
each on their own, and ``process`` did not at all. Here it is done once, for every way the engine runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager

from reid_desktop.core.config import PipelineConfig
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.engine.runner import PipelineControl
from reid_desktop.core.store.change_feed import ChangeListener
from reid_desktop.core.store.database_url import PostgresLocation
from reid_desktop.core.store.interface import HistoryStore
from reid_desktop.core.store.shared_changes import Heard
from reid_desktop.core.vision.embedding import Embedder


@contextmanager
def assembled_pipeline(config: PipelineConfig, store: HistoryStore, control: PipelineControl,
                       embedder: Embedder, embedder_warnings: Sequence[str] = (),
                       heard: Callable[[Heard], None] | None = None) -> Iterator[Pipeline]:
    """The pipeline over the open ``store``, run through ``control`` (give both to :func:`runner.run`). On a shared
    database, other processes' changes are taken on between frames for as long as the block lasts; ``heard`` gets
    each one the pipeline has taken on."""
    pipeline = Pipeline(config, store, embedder=embedder, embedder_warnings=embedder_warnings)
    listener = None
    shared = store.shared
    if shared is not None:
        listener = follow_shared_changes(shared.postgres, control, pipeline, lambda: shared.backend_pid,
                                         lambda: shared.index_horizon, heard)
    try:
        yield pipeline
    finally:
        if listener is not None:
            listener.stop()


def follow_shared_changes(location: PostgresLocation, control: PipelineControl, pipeline: Pipeline,
                          own_backend: Callable[[], int], since: Callable[[], int | None],
                          applied: Callable[[Heard], None] | None = None) -> ChangeListener:
    """Start listening for other processes' changes and apply each to the running ``pipeline`` between frames
    (through ``control``); ``applied`` hears each one the pipeline has taken on. ``own_backend`` and ``since``:
    see :class:`~reid_desktop.core.store.change_feed.ChangeListener`."""
    def apply(change: Heard) -> None:
        def taken_on(done: Future[None]) -> None:
            if applied is not None and not done.cancelled() and done.exception() is None:
                applied(change)

        control.submit(lambda p: p.commands.apply_change(change)).add_done_callback(taken_on)

    listener = ChangeListener(location, apply, lambda: pipeline.embedder.key, own_backend,
                              lambda: [run for run in (pipeline.run_id,) if run is not None], since)
    listener.start()
    return listener
