"""Dynamic batching of concurrent calls for in-process backends.

:class:`MicroBatcher` turns many concurrent ``await batcher.submit(item)`` calls (one per
episode) into calls of one synchronous ``run_batch(items)`` function, run in a worker thread
so the event loop keeps going. A batch closes when it holds ``max_batch`` items or
``max_wait_s`` after it started collecting; only one batch runs at a time, and the calls
that arrive while it runs form the next one, so under load batches fill up on their own.

No background task is involved: the first waiting caller *leads* (collects, runs the batch,
delivers the results) and then hands the lead to the oldest caller still waiting. Every
task has an owner (its caller); cancelling a caller never strands the others.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

import anyio

In = TypeVar("In")
Out = TypeVar("Out")


class _Slot(Generic[In, Out]):
    __slots__ = ("done", "error", "event", "item", "key", "lead", "result")

    def __init__(self, item: In, key: Hashable):
        self.item = item
        self.key = key
        self.event = anyio.Event()
        self.result: Out | None = None
        self.error: BaseException | None = None
        self.lead = False  # this caller runs the next batch
        self.done = False  # result or error delivered


class MicroBatcher(Generic[In, Out]):
    """Collects concurrent ``submit`` calls into batches.

    Args:
        run_batch: runs one batch in a worker thread; returns one result (or exception
            instance) per item, in order. An exception it raises fails every item.
        max_batch: the largest batch.
        max_wait_s: how long a batch waits for company once it starts collecting.
        key: items with different keys never share a batch (e.g. generation settings).
    """

    def __init__(self, run_batch: Callable[[list[In]], Sequence[Out | BaseException]], *,
                 max_batch: int = 32, max_wait_s: float = 0.005,
                 key: Callable[[In], Hashable] | None = None):
        self.run_batch = run_batch
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max(0.0, max_wait_s)
        self.key = key
        self.batch_sizes: list[int] = []  # every batch run, in order (for tests/benchmarks)
        self._pending: deque[_Slot[In, Out]] = deque()
        self._leading = False
        self._full: anyio.Event | None = None  # set when a batch's worth is pending
        self._limiter = anyio.CapacityLimiter(1)

    async def submit(self, item: In) -> Out:
        """Queue ``item``, wait for its batch to run, and return its result."""
        slot: _Slot[In, Out] = _Slot(item, self.key(item) if self.key is not None else None)
        self._pending.append(slot)
        if self._full is not None and self._ready():
            self._full.set()
        if not self._leading:
            self._leading = True
            slot.lead = True
        else:
            try:
                await slot.event.wait()
            except BaseException:
                self._abandon(slot)
                raise
        if not slot.done:  # woken up to lead
            await self._lead(slot)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _ready(self) -> bool:
        if len(self._pending) < self.max_batch:
            return False
        k = self._pending[0].key
        return sum(1 for s in self._pending if s.key == k) >= self.max_batch

    def _abandon(self, slot: _Slot[In, Out]) -> None:
        """A waiting caller was cancelled: drop its item, pass the lead on if it had it."""
        try:
            self._pending.remove(slot)
        except ValueError:
            pass  # already taken into a running batch: its result is dropped
        if slot.lead and not slot.done:
            self._hand_off()

    def _hand_off(self) -> None:
        if self._pending:
            nxt = self._pending[0]
            nxt.lead = True
            nxt.event.set()  # wakes it up as the next leader (its result is not set yet)
        else:
            self._leading = False

    async def _lead(self, me: _Slot[In, Out]) -> None:
        batch: list[_Slot[In, Out]] = []
        try:
            wait = self.max_wait_s
            if wait > 0 and not self._ready():
                self._full = anyio.Event()
                with anyio.move_on_after(wait):
                    await self._full.wait()
            k = me.key
            rest: deque[_Slot[In, Out]] = deque()
            while self._pending:
                s = self._pending.popleft()
                if s.key == k and len(batch) < self.max_batch:
                    batch.append(s)
                else:
                    rest.append(s)
            self._pending = rest
            self.batch_sizes.append(len(batch))
            items = [s.item for s in batch]
            try:
                results = await anyio.to_thread.run_sync(self.run_batch, items,
                                                         limiter=self._limiter)
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for "
                                       f"{len(batch)} items")
            except Exception as exc:
                results = [exc] * len(batch)
            for s, r in zip(batch, results, strict=True):
                if isinstance(r, BaseException):
                    s.error = r
                else:
                    s.result = r
                s.done = True
        finally:
            self._full = None
            for s in batch:
                if not s.done:
                    s.error, s.done = RuntimeError("the batch was cancelled"), True
                s.event.set()
            if me not in batch:  # cancelled before the batch was taken
                try:
                    self._pending.remove(me)
                except ValueError:
                    pass
            self._hand_off()
