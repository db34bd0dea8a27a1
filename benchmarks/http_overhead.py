"""HTTP overhead of the ``openai`` backend: request throughput vs a bare client loop.

Usage::

    python benchmarks/http_overhead.py [--latency-ms 50] [--concurrency 1,16,128,1024]
                                       [--repeats 5] [--pin auto|on|off] [--gc runner|python]
                                       [--json out.json]

A local OpenAI-compatible server (``mmsim.testing.echo_server``) runs in a separate
process and answers every chat completion after a fixed artificial latency L. At each
concurrency C the client keeps C requests in flight for ``max(40, 8*C)`` requests:

* ``ideal``: Little's law, C / L requests per second;
* ``mmsim openai``: ``OpenAIBackend.generate`` (body building, shared client, retry
  wrapper, reply parsing and validation, usage, ``Completion``; ``max_connections = C``;
  the response cache is off);
* ``bare aiohttp`` / ``bare httpx``: one shared session/client with a connection limit of
  C, C workers, and per request what any client must do: build the JSON body (the very
  bytes mmsim sends; checked before timing), POST it, check the status, read and
  ``json.loads`` the reply, take the text of ``choices[0]``. httpx is skipped above
  ``--httpx-max`` concurrency (its pool collapses there; see benchmarks/README.md).

Every path stores each reply's text and the script checks afterwards that all are
non-empty. The paths run interleaved, ``--repeats`` times each; the best run is reported,
with the median and the median of the per-repeat ratios to the bare loop.

``--pin auto`` (the default) puts the server on the last CPU of this process's affinity
set and the client on the first when there are at least two, so that the server's work
does not land on the client's core and the figures at high concurrency measure the
client (``taskset``-style, via ``os.sched_setaffinity``). ``--gc runner`` (the default)
times every path under the runner's ``gc_tuned()`` (the objects built before are frozen,
young collections every 50,000 allocations), as mmsim plays; ``--gc python`` keeps
Python's default thresholds (objects built before are still frozen).
Not a test: it prints a table and the ratios
(mmsim / bare loop of the same client library, mmsim / ideal) and optionally writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmsim.backends.base import GenerateRequest  # noqa: E402
from mmsim.backends.openai import OpenAIBackend, aiohttp_available  # noqa: E402
from mmsim.messages import ChatTurn, Text  # noqa: E402
from mmsim.runtime.pool import gc_tuned  # noqa: E402

PROMPT = "What is shown in the figure? 'Answer: <letter>'"
GC_MODE = "runner"  # set by main(): "runner" (gc_tuned) or "python" (default thresholds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(latency_ms: float, cpu: int | None = None
                 ) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.Popen([sys.executable, "-m", "mmsim.testing.echo_server", "--port",
                             str(port), "--latency-ms", str(latency_ms)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=pin)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line}")
    return proc, f"http://127.0.0.1:{port}/v1"


@contextlib.contextmanager
def _collector() -> Iterator[None]:
    if GC_MODE == "runner":
        with gc_tuned():
            yield
    else:
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()


Timing = tuple[float, float]  # (wall seconds, client CPU seconds)


async def drive(n: int, c: int, one: Callable[[int], Awaitable[None]]) -> Timing:
    """Run ``one(i)`` for i < n with ``c`` in flight; returns (seconds, client CPU seconds).
    The collector is set up the same way for every path (``--gc``)."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await one(i)
    gc.collect()
    with _collector():
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*[worker() for _ in range(c)])
        return time.perf_counter() - t0, time.process_time() - cpu0


async def warm(c: int, one: Callable[[int], Awaitable[None]]) -> None:
    """Untimed: ``c`` requests at once, so the pool holds its ``c`` connections before the
    clock starts (a long run pays for opening them once)."""
    await asyncio.gather(*[one(i) for i in range(c)])


def _texts(n: int) -> list[str]:
    return [f"{i}: {PROMPT}" for i in range(n)]


def _requests(n: int) -> list[GenerateRequest]:
    return [GenerateRequest(messages=(ChatTurn(role="user", parts=(Text(text=t),)),))
            for t in _texts(n)]


def _check(name: str, out: list[str | None]) -> None:
    bad = sum(1 for t in out if not t)
    if bad:
        raise RuntimeError(f"{name}: {bad} of {len(out)} requests got no text")


async def run_mmsim(url: str, n: int, c: int) -> Timing:
    b = OpenAIBackend("bench", {"base_url": url, "model": "echo", "temperature": 0,
                                "max_connections": c, "timeout_s": 60})
    reqs = _requests(n)
    out: list[str | None] = [None] * n

    async def one(i: int) -> None:
        out[i] = (await b.generate(reqs[i])).text
    warm_reqs = _requests(c)  # other objects: the encoder's per-turn cache does not help

    async def warm_one(i: int) -> None:
        await b.generate(warm_reqs[i])
    await warm(c, warm_one)
    try:
        timing = await drive(n, c, one)
    finally:
        await b.aclose()
    _check("mmsim", out)
    return timing


def _body(text: str) -> bytes:
    """What a hand-written client sends: the same bytes as mmsim (checked in main)."""
    return json.dumps({"model": "echo", "messages": [{"role": "user", "content": text}],
                       "temperature": 0.0}, separators=(",", ":")).encode()


def _text(reply: bytes) -> str:
    text: str = json.loads(reply)["choices"][0]["message"]["content"]
    return text


async def run_aiohttp(url: str, n: int, c: int) -> Timing:
    import aiohttp

    texts = _texts(n)
    out: list[str | None] = [None] * n
    url = url + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:

        async def one(i: int) -> None:
            async with s.post(url, data=_body(texts[i]), headers=headers) as r:
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}")
                out[i] = _text(await r.read())
        await warm(c, one)
        timing = await drive(n, c, one)
    _check("bare aiohttp", out)
    return timing


async def run_httpx(url: str, n: int, c: int) -> Timing:
    import httpx

    texts = _texts(n)
    out: list[str | None] = [None] * n
    url = url + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=c,
                                                     max_keepalive_connections=c),
                                 timeout=httpx.Timeout(60, pool=None)) as client:

        async def one(i: int) -> None:
            r = await client.post(url, content=_body(texts[i]), headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}")
            out[i] = _text(r.content)
        await warm(c, one)
        timing = await drive(n, c, one)
    _check("bare httpx", out)
    return timing


def _same_bodies() -> None:
    b = OpenAIBackend("bench", {"base_url": "http://127.0.0.1:1/v1", "model": "echo",
                                "temperature": 0})
    for t in _texts(3):
        req = GenerateRequest(messages=(ChatTurn(role="user", parts=(Text(text=t),)),))
        if b.body(req) != _body(t):
            raise RuntimeError(f"bare body differs from mmsim's: {_body(t)!r} vs "
                               f"{b.body(req)!r}")


def _pin(mode: str) -> tuple[int | None, int | None]:
    """(client cpu, server cpu) or (None, None)."""
    if mode == "off" or not hasattr(os, "sched_setaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        if mode == "on":
            raise SystemExit("--pin on needs at least two CPUs")
        return None, None
    return cpus[0], cpus[-1]


def main() -> None:
    global GC_MODE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", default="1,16,128,1024")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--httpx-max", type=int, default=128)
    ap.add_argument("--pin", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--gc", choices=["runner", "python"], default="runner")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    GC_MODE = a.gc
    if not aiohttp_available():
        print("note: aiohttp is not installed; mmsim uses httpx", file=sys.stderr)
    _same_bodies()
    lat = a.latency_ms / 1000
    client_cpu, server_cpu = _pin(a.pin)
    load0 = os.getloadavg()
    proc, url = start_server(a.latency_ms, server_cpu)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    rows: list[dict[str, Any]] = []
    client = "aiohttp" if aiohttp_available() else "httpx"
    try:
        for c in [int(x) for x in a.concurrency.split(",")]:
            n = max(40, 8 * c)
            paths: list[tuple[str, Callable[[str, int, int], Awaitable[Timing]]]] = [
                ("mmsim openai", run_mmsim)]
            if aiohttp_available():
                paths.append(("bare aiohttp", run_aiohttp))
            if c <= a.httpx_max:
                paths.append(("bare httpx", run_httpx))
            secs: dict[str, list[float]] = {name: [] for name, _ in paths}
            cpus: dict[str, list[float]] = {name: [] for name, _ in paths}
            for _ in range(a.repeats):  # interleaved, so load from elsewhere hits all paths
                for name, fn in paths:
                    wall, cpu = asyncio.run(fn(url, n, c))
                    secs[name].append(wall)
                    cpus[name].append(cpu)
            bare = f"bare {client}" if f"bare {client}" in secs else None
            for name, _ in paths:
                s = min(secs[name])
                paired = cpu_paired = None
                if bare is not None:  # each repeat's ratio to the bare run next to it
                    paired = statistics.median([b / m for m, b in zip(secs[name], secs[bare],
                                                                      strict=True)])
                    cpu_paired = statistics.median([b / m for m, b in zip(
                        cpus[name], cpus[bare], strict=True)])
                rows.append({"path": name, "concurrency": c, "requests": n, "seconds": s,
                             "req_per_s": n / s,
                             "median_req_per_s": n / statistics.median(secs[name]),
                             "ideal_req_per_s": c / lat, "vs_ideal": (n / s) / (c / lat),
                             "vs_bare_paired_median": paired,
                             "cpu_us_per_req": min(cpus[name]) / n * 1e6,
                             "cpu_vs_bare_paired_median": cpu_paired,
                             "all_seconds": secs[name], "all_cpu_seconds": cpus[name]})
    finally:
        proc.terminate()
        proc.wait(5)
    load1 = os.getloadavg()
    pin = (f"client on cpu {client_cpu}, server on cpu {server_cpu}" if client_cpu is not None
           else "not pinned")
    print(f"latency {a.latency_ms:g} ms, best of {a.repeats}; mmsim uses {client}; {pin}; "
          f"gc {a.gc}; load average {load0[0]:.2f} -> {load1[0]:.2f} "
          f"({os.cpu_count()} cpus)")
    print(f"{'path':<14} {'C':>5} {'reqs':>6} {'s':>7} {'req/s':>9} {'median':>9} "
          f"{'ideal':>8} {'vs ideal':>8} {'vs bare':>8} {'paired':>7} {'cpu us':>7} "
          f"{'cpu pr':>7}")
    for r in rows:
        best = next((x for x in rows if x["concurrency"] == r["concurrency"]
                     and x["path"] == f"bare {client}"), None)
        r["vs_bare"] = r["req_per_s"] / best["req_per_s"] if best else None

        def f(v: float | None) -> str:
            return f"{v:.2f}" if v is not None else "—"
        print(f"{r['path']:<14} {r['concurrency']:>5} {r['requests']:>6} {r['seconds']:>7.3f} "
              f"{r['req_per_s']:>9,.0f} {r['median_req_per_s']:>9,.0f} "
              f"{r['ideal_req_per_s']:>8,.0f} {r['vs_ideal']:>8.2f} {f(r['vs_bare']):>8} "
              f"{f(r['vs_bare_paired_median']):>7} {r['cpu_us_per_req']:>7.0f} "
              f"{f(r['cpu_vs_bare_paired_median']):>7}")
    print("vs bare: best req/s over the bare loop's best; paired: median over repeats of "
          "the ratio to the bare run of the same repeat; cpu us: client CPU per request "
          "(best); cpu pr: paired ratio of bare CPU to this path's CPU")
    if a.json:
        a.json.write_text(json.dumps({"latency_ms": a.latency_ms, "client": client,
                                      "python": platform.python_version(),
                                      "cpus": os.cpu_count(), "pin": pin, "gc": a.gc,
                                      "load_average": [load0, load1], "rows": rows},
                                     indent=2))


if __name__ == "__main__":
    main()
