"""Batched, ordered writes of finished episodes to the run store from one background task."""

from __future__ import annotations

from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from mmsim.store.sqlite import EpisodeRecord, RunStore


class EpisodeSink:
    """Collects finished episodes and commits them in batches in a worker thread.

    ``add`` is cheap; it waits (backpressure) only when ``max_pending`` records are waiting.
    Leaving the ``async with`` block flushes everything; an error while writing propagates.
    """

    def __init__(self, store: RunStore | None, *, batch: int = 512, interval_s: float = 0.2,
                 max_pending: int = 20_000):
        self.store = store
        self.batch = batch
        self.interval_s = interval_s
        self.max_pending = max_pending
        self._pending: list[EpisodeRecord] = []
        self._wake = anyio.Event()
        self._drained = anyio.Event()
        self._closed = False
        self._tg: TaskGroup | None = None
        self.written = 0

    async def __aenter__(self) -> EpisodeSink:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._loop, name="episode-sink")
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        self._closed = True
        self._wake.set()
        assert self._tg is not None
        return await self._tg.__aexit__(et, e, tb)

    async def add(self, record: EpisodeRecord) -> None:
        self._pending.append(record)
        if len(self._pending) >= self.batch:
            self._wake.set()
        while len(self._pending) >= self.max_pending:
            self._drained = anyio.Event()
            await self._drained.wait()

    async def _loop(self) -> None:
        while True:
            with anyio.move_on_after(self.interval_s):
                await self._wake.wait()
            self._wake = anyio.Event()
            batch, self._pending = self._pending, []
            if batch:
                if self.store is not None:
                    store = self.store
                    with anyio.CancelScope(shield=True):  # a started commit completes
                        await anyio.to_thread.run_sync(store.write_episodes, batch)
                self.written += len(batch)
            self._drained.set()
            if self._closed and not self._pending:
                return
