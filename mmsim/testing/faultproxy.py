"""A fault-injecting HTTP proxy for OpenAI-compatible endpoints.

Put it in front of any upstream server; each request gets, with probability ``rate``, one
fault drawn uniformly (seeded RNG) from ``kinds``; other requests are forwarded as they are.

===================== ==================================================================
fault                 what the client sees
===================== ==================================================================
429_retry_after       429 with ``Retry-After: <retry_after_s>`` (upstream not called)
429                   429 without Retry-After
500, 503              a 5xx error
hang                  nothing for ``hang_s`` seconds (past the client's timeout), then EOF
reset                 the connection reset (RST) after the request was read
truncated_json        the upstream reply cut in half (a complete HTTP reply, broken JSON)
malformed_json        the upstream reply with a JSON syntax error
empty_content         the upstream reply with ``"content": ""``
wrong_content_type    200 with ``Content-Type: text/html`` and an HTML error page
slow_stream           the upstream reply, trickled out over ``slow_s`` seconds
===================== ==================================================================

From tests::

    with FaultProxy(upstream=srv.base_url, rate=0.2, seed=1) as proxy:
        proxy.base_url, proxy.counts

From the command line::

    python -m mmsim.testing.faultproxy --upstream http://127.0.0.1:8000 --rate 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from mmsim.testing._http import Request, ThreadedServer, parse_request, response_bytes

FAULT_KINDS: tuple[str, ...] = (
    "429_retry_after", "429", "500", "503", "hang", "reset", "truncated_json",
    "malformed_json", "empty_content", "wrong_content_type", "slow_stream")

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
        "content-encoding"}


class FaultProxy:
    """The proxy; a context manager that runs it in a background thread.

    Args:
        upstream: the upstream origin or base URL (its path is ignored: request paths are
            forwarded as they are).
        rate: probability that a request gets a fault.
        kinds: the faults to draw from (default: all of :data:`FAULT_KINDS`).
        seed: seeds the fault RNG.
        retry_after_s: the Retry-After value of ``429_retry_after``.
        hang_s: how long ``hang`` stays silent.
        slow_s: how long ``slow_stream`` takes to send its body.
        only_post: inject faults into POST requests only (GETs are forwarded).
    """

    def __init__(self, upstream: str, *, rate: float = 0.2, kinds: Sequence[str] | None = None,
                 seed: int = 0, retry_after_s: float = 1.0, hang_s: float = 30.0,
                 slow_s: float = 5.0, only_post: bool = True, host: str = "127.0.0.1",
                 port: int = 0):
        parts = urlsplit(upstream)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"upstream must be a URL like http://host:port, got {upstream!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.rate = rate
        self.kinds = tuple(kinds) if kinds else FAULT_KINDS
        bad = [k for k in self.kinds if k not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; known: {', '.join(FAULT_KINDS)}")
        self.rng = random.Random(seed)
        self.retry_after_s = retry_after_s
        self.hang_s = hang_s
        self.slow_s = slow_s
        self.only_post = only_post
        self.host = host
        self.port = port
        self.counts: Counter[str] = Counter()  # fault kind (or "ok") -> requests
        self._lock = threading.Lock()
        self._thread: ThreadedServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def draw(self, req: Request) -> str:
        """The fault for one request, or ``"ok"``."""
        with self._lock:
            fault = "ok"
            if (req.method == "POST" or not self.only_post) and self.rng.random() < self.rate:
                fault = self.rng.choice(self.kinds)
            self.counts[fault] += 1
            return fault

    # -- serving ---------------------------------------------------------------------
    async def serve(self, ready: Callable[[int], None] | None = None) -> None:
        """Serve until cancelled (on the running event loop)."""
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0),
                                     limits=httpx.Limits(max_connections=256)) as client:

            async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                              ) -> None:
                task = asyncio.current_task()
                assert task is not None
                tasks.add(task)
                try:
                    await self._connection(client, reader, writer)
                except (ConnectionError, asyncio.IncompleteReadError, OSError,
                        asyncio.CancelledError):
                    pass  # the client went away, or the proxy is stopping
                finally:
                    tasks.discard(task)
                    with contextlib.suppress(Exception):
                        writer.close()

            server = await asyncio.start_server(on_conn, self.host, self.port, backlog=1024)
            self.port = server.sockets[0].getsockname()[1]
            if ready is not None:
                ready(self.port)
            try:
                async with server:
                    await server.serve_forever()
            finally:
                for t in list(tasks):
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, client: httpx.AsyncClient, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        while True:
            parsed = parse_request(buf)
            while parsed is None:
                data = await reader.read(65536)
                if not data:
                    return
                buf += data
                parsed = parse_request(buf)
            req, used = parsed
            del buf[:used]
            if not await self._one(client, req, writer):
                return
            if not req.keep_alive:
                return

    async def _one(self, client: httpx.AsyncClient, req: Request,
                   writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must end."""
        fault = self.draw(req)
        if fault == "429_retry_after":
            return await _write(writer, response_bytes(
                429, b'{"error":{"message":"rate limited"}}',
                extra={"Retry-After": f"{self.retry_after_s:g}"}))
        if fault in ("429", "500", "503"):
            return await _write(writer, response_bytes(
                int(fault), b'{"error":{"message":"injected fault"}}'))
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
            return False
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "wrong_content_type":
            return await _write(writer, response_bytes(
                200, b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                content_type="text/html"))
        # forward to the upstream
        headers = {k: v for k, v in req.headers.items() if k not in _HOP}
        try:
            up = await client.request(req.method, self.origin + req.path, content=req.body,
                                      headers=headers)
        except httpx.HTTPError:
            return await _write(writer, response_bytes(502, b'{"error":{"message":"upstream"}}'))
        body = up.content
        ctype = up.headers.get("content-type", "application/json")
        if fault == "truncated_json":
            body = body[: max(1, len(body) // 2)]
        elif fault == "malformed_json":
            body = body.replace(b":", b"", 1) if b":" in body else b"{"
        elif fault == "empty_content":
            body = _empty_content(body)
        reply = response_bytes(up.status_code, body, content_type=ctype)
        if fault != "slow_stream":
            return await _write(writer, reply)
        steps = 20
        chunk = max(1, len(reply) // steps + 1)
        for i in range(0, len(reply), chunk):
            writer.write(reply[i:i + chunk])
            await writer.drain()
            await asyncio.sleep(self.slow_s / steps)
        return True

    # -- running in a thread -----------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread = ThreadedServer(self.serve)
        self.port = self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


async def _write(writer: asyncio.StreamWriter, data: bytes) -> bool:
    writer.write(data)
    await writer.drain()
    return True


def _empty_content(body: bytes) -> bytes:
    try:
        obj = json.loads(body)
        for ch in obj.get("choices", []):
            ch.setdefault("message", {})["content"] = ""
        return json.dumps(obj).encode()
    except (ValueError, AttributeError, TypeError):
        return body


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Fault-injecting proxy for OpenAI-compatible "
                                             "endpoints (see mmsim.testing.faultproxy).")
    ap.add_argument("--upstream", required=True, help="upstream origin, e.g. http://host:8000")
    ap.add_argument("--rate", type=float, default=0.2, help="fault probability per request")
    ap.add_argument("--kinds", default="", help=f"comma-separated subset of "
                                                f"{','.join(FAULT_KINDS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    ap.add_argument("--retry-after", type=float, default=1.0)
    ap.add_argument("--hang-s", type=float, default=30.0)
    ap.add_argument("--slow-s", type=float, default=5.0)
    a = ap.parse_args(argv)
    proxy = FaultProxy(a.upstream, rate=a.rate, seed=a.seed,
                       kinds=[k for k in a.kinds.split(",") if k] or None,
                       retry_after_s=a.retry_after, hang_s=a.hang_s, slow_s=a.slow_s,
                       host=a.host, port=a.port)

    def ready(port: int) -> None:
        print(f"fault proxy on http://{a.host}:{port}/v1 -> {proxy.origin} "
              f"(rate {a.rate}, kinds {','.join(proxy.kinds)})", flush=True)

    try:
        asyncio.run(proxy.serve(ready))
    except KeyboardInterrupt:
        print(dict(proxy.counts))


if __name__ == "__main__":
    main()
