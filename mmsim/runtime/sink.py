"""Batched writes of finished episodes to the run store from a dedicated writer thread.

An episode is encoded to rows (JSON payloads) in the event loop when it ends, and the
writer thread runs the SQL: SQLite does its work without the GIL, so on a machine with two
cores the store costs the event loop little more than the encoding. Batches are committed
when ``batch`` episodes are waiting or every ``interval_s`` seconds, whichever comes first,
so a crash loses at most the last interval's episodes (a resumed run plays them again).

Memory is bounded whatever the run's size or concurrency: at most ``max_batches`` batches
wait for the writer and two more fill in the event loop; while the writer is behind, the
episodes that end after that wait in :meth:`EpisodeSink.add` (their workers start no new
episode). (Blocking in a worker thread per full batch, as before, let every episode in
flight cut and hold a batch of its own.)
"""

from __future__ import annotations

import queue
import threading
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from mmsim.errors import StoreError
from mmsim.store.sqlite import EncodedEpisode, EpisodeRecord, RunStore

_STOP = None
#: How often the episode waiting for room in the writer's queue looks again.
_POLL_S = 0.005


class EpisodeSink:
    """Collects finished episodes and commits them in batches.

    ``add`` is cheap; it waits (backpressure) only while ``max_batches`` batches are queued
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
        self._room: anyio.Event | None = None  # while a task waits for room in the queue
        self.written = 0  # episodes committed (or, without a store, accepted)
        self._submitted = 0  # episodes handed to the writer

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
            if self._thread is not None:
                await self._submit(everything=True)
                await anyio.to_thread.run_sync(self._queue.put, _STOP)
                await anyio.to_thread.run_sync(self._thread.join)
            self._pending = []
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
            await self._submit_full()

    async def add_encoded(self, episode: EncodedEpisode) -> None:
        """Like :meth:`add`, for an episode already encoded (by a remote worker)."""
        if self._error is not None:
            raise self._error
        if self.store is None:
            self.written += 1
            return
        self._pending.append(episode)
        if len(self._pending) >= self.batch:
            await self._submit_full()

    async def _submit_full(self) -> None:
        # While one task waits for room, the next batch fills without waiting; episodes
        # wait (their workers start nothing new) only once it is full too.
        if self._room is None or len(self._pending) >= 2 * self.batch:
            await self._submit()

    async def _submit(self, *, everything: bool = False) -> None:
        """Hand the pending episodes to the writer, ``batch`` at a time (all of them with
        ``everything``; else full batches only). While the writer's queue is full, one
        caller polls for room and the others wait for it: their episodes join the pending
        list instead of each cutting a batch. Never yields while there is room."""
        if self._thread is None:
            return
        while self._pending and (everything or len(self._pending) >= self.batch):
            if self._room is not None:  # another task waits for room
                await self._room.wait()
                continue
            pending = self._pending
            batch, rest = ((pending, []) if len(pending) <= self.batch
                           else (pending[:self.batch], pending[self.batch:]))
            try:
                self._queue.put_nowait(batch)
            except queue.Full:  # the writer is behind: wait for room (backpressure)
                self._room = room = anyio.Event()
                try:
                    while self._queue.full():
                        if not self._thread.is_alive():
                            raise StoreError("the store writer thread stopped", where=str(
                                self.store.path if self.store is not None else "")
                            ) from self._error
                        await anyio.sleep(_POLL_S)
                finally:
                    self._room = None
                    room.set()
                continue
            self._pending = rest  # no await since ``pending`` was read: nothing lost
            self._submitted += len(batch)

    async def flush(self) -> None:
        """Commit every episode added so far, and wait until they are in the store (a
        protocol may read them back between phases)."""
        if self._thread is None:
            return
        await self._submit(everything=True)
        while self.written < self._submitted and self._error is None:
            if not self._thread.is_alive():
                break
            await anyio.sleep(_POLL_S)
        if self._error is not None:
            raise self._error

    async def _tick(self) -> None:
        while not self._closed:
            await anyio.sleep(self.interval_s)
            if self._pending and not self._queue.full():
                await self._submit(everything=True)

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
