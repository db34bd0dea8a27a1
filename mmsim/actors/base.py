"""The actor base: a bounded inbox, a pool of workers, and ``await actor.ask(msg)``.

Actors are owned by an :class:`ActorSystem`, an anyio task group: leaving the ``async with``
block closes every inbox and waits for the workers, and an error in any task cancels the
rest. An exception raised while handling a message is delivered to the caller of ``ask``,
which decides whether it is fatal.
"""

from __future__ import annotations

from types import TracebackType
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mmsim.registry import cancelled_for_real

Req = TypeVar("Req")
Rep = TypeVar("Rep")


class _Reply(Generic[Rep]):
    __slots__ = ("error", "event", "value")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: Rep | None = None
        self.error: BaseException | None = None


class Actor(Generic[Req, Rep]):
    """Base class: override :meth:`handle`.

    Args:
        name: the sender name stamped on this actor's messages.
        inbox_size: how many requests may wait in the inbox before ``ask`` blocks
            (backpressure).
        concurrency: how many requests are handled at once (workers).
    """

    #: Handle ``ask`` in the caller's task when a slot is free and nothing is queued.
    #: Actors that batch requests (several at once through the inbox) set this to False.
    inline: bool = True

    def __init__(self, name: str, *, inbox_size: int = 1024, concurrency: int = 64):
        self.name = name
        self.inbox_size = inbox_size
        self.concurrency = max(1, concurrency)
        self._active = 0  # requests being handled, inline or by workers (<= concurrency)
        self._queued = 0  # requests in the inbox not yet taken by a worker
        self._workers = 0  # worker tasks started (on demand, at most ``concurrency``)
        self._idle = 0  # workers waiting for a request
        self._tg: TaskGroup | None = None
        self._slot_freed: anyio.Event | None = None  # exists only while a worker waits
        self._send: MemoryObjectSendStream[tuple[Req, _Reply[Rep]]] | None = None
        self._recv: MemoryObjectReceiveStream[tuple[Req, _Reply[Rep]]] | None = None

    async def handle(self, msg: Req) -> Rep:
        """Answer one request. Runs in one of the actor's workers."""
        raise NotImplementedError

    async def ask(self, msg: Req) -> Rep:
        """Send ``msg`` and wait for the reply (re-raising the handler's exception)."""
        if self._send is None:
            raise RuntimeError(f"actor {self.name!r} is not running (spawn it in an ActorSystem)")
        if self.inline and self._active < self.concurrency and self._queued == 0:
            # a free slot and nobody queued: handle in the caller's task, no hand-off
            self._active += 1
            try:
                return await self.handle(msg)
            finally:
                self._release()
        reply: _Reply[Rep] = _Reply()
        self._queued += 1
        try:
            try:  # fast path: no scheduler round-trip when the inbox has room
                self._send.send_nowait((msg, reply))
            except anyio.WouldBlock:
                await self._send.send((msg, reply))  # backpressure: wait for room
        except BaseException:
            self._queued -= 1
            raise
        if self._idle < self._queued and self._workers < self.concurrency:
            self._spawn_worker()
        await reply.event.wait()  # always yields, so callers cannot starve the loop
        if reply.error is not None:
            raise reply.error
        return reply.value  # type: ignore[return-value]

    async def _worker(self, recv: MemoryObjectReceiveStream[tuple[Req, _Reply[Rep]]]) -> None:
        async with recv:
            while True:
                try:
                    try:  # take queued work without a scheduler round-trip
                        msg, reply = recv.receive_nowait()
                    except anyio.WouldBlock:
                        self._idle += 1
                        try:
                            msg, reply = await recv.receive()
                        finally:
                            self._idle -= 1
                except anyio.EndOfStream:
                    return
                self._queued -= 1
                while self._active >= self.concurrency:  # inline calls hold every slot
                    if self._slot_freed is None:
                        self._slot_freed = anyio.Event()
                    await self._slot_freed.wait()
                self._active += 1
                try:
                    reply.value = await self.handle(msg)
                except BaseException as exc:  # delivered to the asker, which decides
                    if cancelled_for_real(exc):
                        raise
                    reply.error = exc  # (also a CancelledError the handler raised itself)
                finally:
                    self._release()
                reply.event.set()

    def _release(self) -> None:
        self._active -= 1
        if self._slot_freed is not None:  # wake the workers waiting for a slot
            self._slot_freed.set()
            self._slot_freed = None

    def _start(self, tg: TaskGroup) -> None:
        send, recv = anyio.create_memory_object_stream[tuple[Req, _Reply[Rep]]](self.inbox_size)
        self._send, self._recv, self._tg = send, recv, tg

    def _spawn_worker(self) -> None:
        """Start one more worker (workers start when requests queue, not up front: an
        actor whose calls are handled inline never pays for a pool of idle tasks)."""
        assert self._tg is not None and self._recv is not None
        self._workers += 1
        self._tg.start_soon(self._worker, self._recv.clone(), name=f"{self.name}-worker")

    async def aclose(self) -> None:
        """Close the inbox: workers finish what is queued, then exit."""
        if self._send is not None:
            await self._send.aclose()
        if self._recv is not None:
            self._recv.close()  # the workers hold their own clones

    async def shutdown(self) -> None:
        """Release resources held by the actor (backends); called after workers exit."""


A = TypeVar("A", bound=Actor)  # type: ignore[type-arg]


class ActorSystem:
    """Owns actors: ``async with ActorSystem() as system: m = system.spawn(ModelActor(...))``."""

    def __init__(self) -> None:
        self._tg: TaskGroup | None = None
        self._actors: list[Actor] = []  # type: ignore[type-arg]

    async def __aenter__(self) -> ActorSystem:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    def spawn(self, actor: A) -> A:
        if self._tg is None:
            raise RuntimeError("ActorSystem is not entered")
        actor._start(self._tg)
        self._actors.append(actor)
        return actor

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        assert self._tg is not None
        for actor in self._actors:
            await actor.aclose()
        try:
            return await self._tg.__aexit__(et, e, tb)
        finally:
            with anyio.CancelScope(shield=True):
                for actor in self._actors:
                    await actor.shutdown()
