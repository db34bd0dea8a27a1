"""A deterministic OpenAI-compatible chat-completions server for tests and benchmarks.

It answers ``POST /v1/chat/completions`` with a reply derived from a hash of the request's
messages (the same messages always get the same reply), with usage counts; ``GET
/health`` and ``GET /v1/models`` answer too. It counts requests and can record their raw
bodies. A fixed artificial ``latency_s`` is added to every completion.

From tests::

    with EchoServer(record=True) as srv:
        url = srv.base_url          # http://127.0.0.1:PORT/v1
        ...
        srv.hits, srv.bodies

From the command line (e.g. a benchmark's server process)::

    python -m mmsim.testing.echo_server --port 8000 --latency-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from mmsim.testing._http import Request, ThreadedServer, parse_request, response_bytes


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content
                         if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _n_images(messages: list[Any]) -> int:
    return sum(1 for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list)
               for p in m["content"] if isinstance(p, dict) and p.get("type") != "text")


def default_answer(messages: list[Any], digest: bytes) -> str:
    """An answer in the format the prompt asks for, chosen by the messages' hash."""
    first_user = next((_text_of(m.get("content")) for m in messages
                       if isinstance(m, dict) and m.get("role") == "user"), "")
    if "Answer: <number>" in first_user:
        return f"Looking at the figure, I count carefully.\nAnswer: {digest[0] % 12}"
    if "Answer: <letter>" in first_user:
        return f"Looking at the figure, I compare the options.\nAnswer: {'ABCD'[digest[0] % 4]}"
    return f"Check the image again; note {digest.hex()[:6]}."


class EchoServer:
    """The server; a context manager that runs it in a background thread.

    Args:
        latency_s: added to every chat completion (scheduled, not blocking).
        record: keep the raw request bodies in ``bodies``.
        answer: ``(messages, digest) -> text``; ``default_answer`` by default.
        port: 0 for a free port.
    """

    def __init__(self, *, latency_s: float = 0.0, record: bool = False,
                 answer: Callable[[list[Any], bytes], str] = default_answer,
                 host: str = "127.0.0.1", port: int = 0):
        self.latency_s = latency_s
        self.record = record
        self.answer = answer
        self.host = host
        self.port = port
        self.hits = 0  # chat completions served
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._thread: ThreadedServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- request handling -----------------------------------------------------------
    def handle(self, req: Request) -> tuple[bytes, float]:
        """The response bytes for ``req`` and the delay before sending them."""
        if req.method == "GET" and req.path in ("/health", "/v1/health"):
            return response_bytes(200, b'{"status":"ok"}'), 0.0
        if req.method == "GET" and req.path == "/v1/models":
            return response_bytes(200, b'{"object":"list","data":[{"id":"echo",'
                                       b'"object":"model"}]}'), 0.0
        if req.method != "POST" or req.path != "/v1/chat/completions":
            return response_bytes(404, b'{"error":{"message":"not found"}}'), 0.0
        try:
            body = json.loads(req.body)
            messages = body["messages"]
            assert isinstance(messages, list)
        except (ValueError, KeyError, AssertionError, TypeError):
            return response_bytes(400, b'{"error":{"message":"bad request"}}'), 0.0
        with self._lock:
            self.hits += 1
            if self.record:
                self.bodies.append(req.body)
                self.headers.append(dict(req.headers))
        digest = hashlib.blake2b(json.dumps(messages, sort_keys=True).encode(),
                                 digest_size=16).digest()
        n = int(body.get("n") or 1)
        texts = [self.answer(messages, digest)]
        for i in range(1, n):
            texts.append(self.answer(messages, hashlib.blake2b(digest + bytes([i]),
                                                               digest_size=16).digest()))
        prompt_chars = sum(len(_text_of(m.get("content"))) for m in messages
                           if isinstance(m, dict))
        completion = sum(len(t) // 4 + 1 for t in texts)
        out = {
            "id": f"chatcmpl-{digest.hex()[:12]}", "object": "chat.completion",
            "created": 0, "model": body.get("model", "echo"),
            "choices": [{"index": i, "message": {"role": "assistant", "content": t},
                         "finish_reason": "stop"} for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": prompt_chars // 4 + 1 + 64 * _n_images(messages),
                      "completion_tokens": completion,
                      "total_tokens": prompt_chars // 4 + 1 + completion},
        }
        return response_bytes(200, json.dumps(out).encode()), self.latency_s

    # -- serving ---------------------------------------------------------------------
    async def serve(self, ready: Callable[[int], None] | None = None) -> None:
        """Serve until cancelled (on the running event loop)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Protocol(self), self.host, self.port,
                                          backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        if ready is not None:
            ready(self.port)
        async with server:
            await server.serve_forever()

    def start(self) -> EchoServer:
        self._thread = ThreadedServer(self.serve)
        self.port = self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class _Protocol(asyncio.Protocol):
    def __init__(self, server: EchoServer):
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            parsed = parse_request(self.buf)
            if parsed is None:
                return
            req, used = parsed
            del self.buf[:used]
            reply, delay = self.server.handle(req)
            keep = req.keep_alive
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._send, reply, keep)
            else:
                self._send(reply, keep)

    def _send(self, data: bytes, keep: bool) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(data)
        if not keep:
            t.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    a = ap.parse_args(argv)
    srv = EchoServer(latency_s=a.latency_ms / 1000, host=a.host, port=a.port)

    def ready(port: int) -> None:
        print(f"listening on http://{a.host}:{port}/v1", flush=True)

    try:
        asyncio.run(srv.serve(ready))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
