"""A minimal HTTP/1.1 request parser and a helper to run an asyncio server in a thread.

Just enough HTTP for the test servers: ``Content-Length`` bodies (no chunked requests),
keep-alive connections, one request at a time per connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


def parse_request(buf: bytearray) -> tuple[Request, int] | None:
    """Parse one request from the start of ``buf``; None until it is complete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    method, path, _ = [*head[0].split(" ", 2), "", ""][:3]
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    total = end + 4 + length
    if len(buf) < total:
        return None
    return Request(method, path, headers, bytes(buf[end + 4:total])), total


def response_bytes(status: int, body: bytes, *, content_type: str = "application/json",
                   extra: dict[str, str] | None = None, length: int | None = None) -> bytes:
    """An HTTP/1.1 response; ``length`` overrides the Content-Length header."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
             f"Content-Type: {content_type}",
             f"Content-Length: {len(body) if length is None else length}"]
    for k, v in (extra or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ThreadedServer:
    """Runs ``serve(ready)`` on its own event loop in a daemon thread.

    ``serve`` starts an asyncio server, calls ``ready(port)`` and waits until cancelled.
    """

    def __init__(self, serve: Callable[[Callable[[int], None]], Coroutine[Any, Any, Any]]):
        self._serve = serve
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    def start(self) -> int:
        self._thread = threading.Thread(target=self._main, name="mmsim-test-server",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test server did not start")
        if self._error is not None:
            raise self._error
        return self.port

    def _main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()

        def ready(port: int) -> None:
            self.port = port
            self._ready.set()

        self._task = loop.create_task(self._serve(ready))
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(10)
