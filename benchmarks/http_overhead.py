"""HTTP overhead of the ``openai`` backend: request throughput vs a bare client loop.

Usage::

    python benchmarks/http_overhead.py [--latency-ms 50] [--concurrency 1,16,128,1024]
                                       [--repeats 5] [--json out.json]

A local OpenAI-compatible server (``mmsim.testing.echo_server``) runs in a separate
process and answers every chat completion after a fixed artificial latency L. At each
concurrency C the client keeps C requests in flight for ``max(40, 8*C)`` requests:

* ``ideal``: Little's law, C / L requests per second;
* ``mmsim openai``: ``OpenAIBackend.generate`` (body building, shared client, retry
  wrapper, reply parsing; ``max_connections = C``; the response cache is off);
* ``bare aiohttp`` / ``bare httpx``: one shared session/client with a connection limit of
  C and a semaphore of C, posting the same body bytes and reading the reply — the loop a
  careful user would write by hand. httpx is skipped above ``--httpx-max`` concurrency
  (its pool collapses there; see benchmarks/README.md).

The paths run interleaved, ``--repeats`` times each; the best run is reported.
Not a test: it prints a table and the ratios
(mmsim / bare loop of the same client library, mmsim / ideal) and optionally writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmsim.backends.base import GenerateRequest  # noqa: E402
from mmsim.backends.openai import OpenAIBackend, aiohttp_available  # noqa: E402
from mmsim.messages import ChatTurn, Text  # noqa: E402

PROMPT = "What is shown in the figure? 'Answer: <letter>'"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mmsim.testing.echo_server", "--port",
                             str(port), "--latency-ms", str(latency_ms)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line}")
    return proc, f"http://127.0.0.1:{port}/v1"


async def drive(n: int, c: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``one(i)`` for i < n with ``c`` in flight; returns seconds. Objects built before
    are frozen out of the garbage collector's sight, as the runner does while it plays
    (``gc_tuned``), for every path alike."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await one(i)
    gc.collect()
    gc.freeze()
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(c)])
        return time.perf_counter() - t0
    finally:
        gc.unfreeze()


async def run_mmsim(url: str, n: int, c: int) -> float:
    b = OpenAIBackend("bench", {"base_url": url, "model": "echo", "temperature": 0,
                                "max_connections": c, "timeout_s": 60})
    reqs = [GenerateRequest(messages=(ChatTurn(role="user", parts=(
        Text(text=f"{i}: {PROMPT}"),)),)) for i in range(n)]
    await b.generate(reqs[0])  # warm the connection pool like the bare loops do

    async def one(i: int) -> None:
        await b.generate(reqs[i])
    try:
        return await drive(n, c, one)
    finally:
        await b.aclose()


def _body(i: int) -> bytes:
    return json.dumps({"model": "echo", "messages": [{"role": "user",
                                                      "content": f"{i}: {PROMPT}"}],
                       "temperature": 0}).encode()


async def run_aiohttp(url: str, n: int, c: int) -> float:
    import aiohttp

    bodies = [_body(i) for i in range(n)]
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:
        async with s.post(url + "/chat/completions", data=bodies[0], headers=headers) as r:
            await r.read()

        async def one(i: int) -> None:
            async with s.post(url + "/chat/completions", data=bodies[i], headers=headers) as r:
                json.loads(await r.read())
        return await drive(n, c, one)


async def run_httpx(url: str, n: int, c: int) -> float:
    import httpx

    bodies = [_body(i) for i in range(n)]
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=c,
                                                     max_keepalive_connections=c),
                                 timeout=httpx.Timeout(60, pool=None)) as client:
        await client.post(url + "/chat/completions", content=bodies[0], headers=headers)

        async def one(i: int) -> None:
            r = await client.post(url + "/chat/completions", content=bodies[i],
                                  headers=headers)
            json.loads(r.content)
        return await drive(n, c, one)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", default="1,16,128,1024")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--httpx-max", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    if not aiohttp_available():
        print("note: aiohttp is not installed; mmsim uses httpx", file=sys.stderr)
    lat = a.latency_ms / 1000
    proc, url = start_server(a.latency_ms)
    rows: list[dict[str, Any]] = []
    try:
        for c in [int(x) for x in a.concurrency.split(",")]:
            n = max(40, 8 * c)
            paths: list[tuple[str, Callable[[str, int, int], Awaitable[float]]]] = [
                ("mmsim openai", run_mmsim)]
            if aiohttp_available():
                paths.append(("bare aiohttp", run_aiohttp))
            if c <= a.httpx_max:
                paths.append(("bare httpx", run_httpx))
            secs: dict[str, list[float]] = {name: [] for name, _ in paths}
            for _ in range(a.repeats):  # interleaved, so load from elsewhere hits all paths
                for name, fn in paths:
                    secs[name].append(asyncio.run(fn(url, n, c)))
            for name, _ in paths:
                s = min(secs[name])
                rows.append({"path": name, "concurrency": c, "requests": n, "seconds": s,
                             "req_per_s": n / s, "ideal_req_per_s": c / lat,
                             "vs_ideal": (n / s) / (c / lat), "all_seconds": secs[name]})
    finally:
        proc.terminate()
        proc.wait(5)
    client = "aiohttp" if aiohttp_available() else "httpx"
    print(f"latency {a.latency_ms:g} ms, best of {a.repeats}; mmsim uses {client}")
    print(f"{'path':<14} {'C':>5} {'reqs':>6} {'s':>7} {'req/s':>9} {'ideal':>8} "
          f"{'vs ideal':>8} {'vs bare':>8}")
    for r in rows:
        bare = next((x for x in rows if x["concurrency"] == r["concurrency"]
                     and x["path"] == f"bare {client}"), None)
        r["vs_bare"] = r["req_per_s"] / bare["req_per_s"] if bare else None
        vb = f"{r['vs_bare']:.2f}" if r["vs_bare"] is not None else "—"
        print(f"{r['path']:<14} {r['concurrency']:>5} {r['requests']:>6} {r['seconds']:>7.3f} "
              f"{r['req_per_s']:>9,.0f} {r['ideal_req_per_s']:>8,.0f} {r['vs_ideal']:>8.2f} "
              f"{vb:>8}")
    if a.json:
        a.json.write_text(json.dumps({"latency_ms": a.latency_ms, "client": client,
                                      "python": platform.python_version(),
                                      "cpus": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
