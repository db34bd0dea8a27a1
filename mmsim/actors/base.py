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

    def __init__(self, name: str, *, inbox_size: int = 1024, concurrency: int = 64):
        self.name = name
        self.inbox_size = inbox_size
        self.concurrency = max(1, concurrency)
        self._send: MemoryObjectSendStream[tuple[Req, _Reply[Rep]]] | None = None
        self._recv: MemoryObjectReceiveStream[tuple[Req, _Reply[Rep]]] | None = None

    async def handle(self, msg: Req) -> Rep:
        """Answer one request. Runs in one of the actor's workers."""
        raise NotImplementedError

    async def ask(self, msg: Req) -> Rep:
        """Send ``msg`` and wait for the reply (re-raising the handler's exception)."""
        if self._send is None:
            raise RuntimeError(f"actor {self.name!r} is not running (spawn it in an ActorSystem)")
        reply: _Reply[Rep] = _Reply()
        await self._send.send((msg, reply))
        await reply.event.wait()
        if reply.error is not None:
            raise reply.error
        return reply.value  # type: ignore[return-value]

    async def _worker(self, recv: MemoryObjectReceiveStream[tuple[Req, _Reply[Rep]]]) -> None:
        async with recv:
            async for msg, reply in recv:
                try:
                    reply.value = await self.handle(msg)
                except Exception as exc:  # delivered to the asker, which owns the decision
                    reply.error = exc
                reply.event.set()

    def _start(self, tg: TaskGroup) -> None:
        send, recv = anyio.create_memory_object_stream[tuple[Req, _Reply[Rep]]](self.inbox_size)
        self._send, self._recv = send, recv
        for _ in range(self.concurrency - 1):
            tg.start_soon(self._worker, recv.clone(), name=f"{self.name}-worker")
        tg.start_soon(self._worker, recv, name=f"{self.name}-worker")

    async def aclose(self) -> None:
        """Close the inbox: workers finish what is queued, then exit."""
        if self._send is not None:
            await self._send.aclose()

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
