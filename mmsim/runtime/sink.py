"""Batched writes of finished episodes to the run store from a dedicated writer thread.

An episode is encoded to rows (JSON payloads) in the event loop when it ends, and the
writer thread runs the SQL: SQLite does its work without the GIL, so on a machine with two
cores the store costs the event loop little more than the encoding. Batches are committed
when ``batch`` episodes are waiting or every ``interval_s`` seconds, whichever comes first,
so a crash loses at most the last interval's episodes (a resumed run plays them again).
"""

from __future__ import annotations

import queue
import threading
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from mmsim.store.sqlite import EncodedEpisode, EpisodeRecord, RunStore

_STOP = None


class EpisodeSink:
    """Collects finished episodes and commits them in batches.

    ``add`` is cheap; it waits (backpressure) only when ``max_batches`` batches are queued
    for the writer. Leaving the ``async with`` block flushes everything and waits for the
    writer; an error while writing is raised by the next ``add`` or on exit.
    """

    def __init__(self, store: RunStore | None, *, batch: int = 256, interval_s: float = 0.2,
                 max_batches: int = 4):
        self.store = store
        self.batch = batch
        self.interval_s = interval_s
        self._pending: list[EncodedEpisode] = []
        self._queue: queue.Queue[list[EncodedEpisode] | None] = queue.Queue(max_batches)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._tg: TaskGroup | None = None
        self._closed = False
        self.written = 0  # episodes committed (or, without a store, accepted)

    async def __aenter__(self) -> EpisodeSink:
        if self.store is not None:
            self._thread = threading.Thread(target=self._write_loop, name="mmsim-store-writer",
                                            daemon=True)
            self._thread.start()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._tick, name="episode-sink-tick")
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        self._closed = True
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        # Flush even when the run is failing or cancelled: finished episodes are kept.
        with anyio.CancelScope(shield=True):
            await self._submit(self._pending)
            self._pending = []
            if self._thread is not None:
                await anyio.to_thread.run_sync(self._queue.put, _STOP)
                await anyio.to_thread.run_sync(self._thread.join)
        if self._error is not None and et is None:
            raise self._error
        return None

    async def add(self, record: EpisodeRecord) -> None:
        if self._error is not None:
            raise self._error
        if self.store is None:
            self.written += 1
            return
        self._pending.append(RunStore.encode(record))
        if len(self._pending) >= self.batch:
            batch, self._pending = self._pending, []
            await self._submit(batch)

    async def add_encoded(self, episode: EncodedEpisode) -> None:
        """Like :meth:`add`, for an episode already encoded (by a remote worker)."""
        if self._error is not None:
            raise self._error
        if self.store is None:
            self.written += 1
            return
        self._pending.append(episode)
        if len(self._pending) >= self.batch:
            batch, self._pending = self._pending, []
            await self._submit(batch)

    async def _submit(self, batch: list[EncodedEpisode]) -> None:
        if not batch or self._thread is None:
            return
        try:
            self._queue.put_nowait(batch)
        except queue.Full:  # the writer is behind: wait for room (backpressure)
            await anyio.to_thread.run_sync(self._queue.put, batch)

    async def _tick(self) -> None:
        while not self._closed:
            await anyio.sleep(self.interval_s)
            if self._pending:
                batch, self._pending = self._pending, []
                await self._submit(batch)

    def _write_loop(self) -> None:
        assert self.store is not None
        while True:
            batch = self._queue.get()
            if batch is _STOP:
                return
            if self._error is not None:
                continue  # drain without writing after a failure
            try:
                self.store.write_encoded(batch)
                self.written += len(batch)
            except BaseException as exc:  # reported to the event loop by add/exit
                self._error = exc
