"""Server lifecycle: start the model servers of a scenario's ``servers:`` section, wait for
their health endpoint, give their URLs to the agents that name them, stop them afterwards.

* Each server runs in its own process group (``start_new_session``) on a free port
  (``port: auto``) with ``CUDA_VISIBLE_DEVICES`` from ``gpu`` and extra ``env``; its output
  goes to ``<run_dir>/servers/<name>.log``.
* :meth:`ServerGroup.wait_healthy` polls ``http://host:port<health_path>`` until it answers
  200, failing with the server's last log lines when the process exits or
  ``startup_timeout_s`` passes.
* Leaving the ``async with`` block (normally, on an error, on Ctrl-C or cancellation) sends
  SIGTERM to each process group, then SIGKILL after ``STOP_GRACE_S``; an ``atexit`` hook and,
  on Linux, a parent-death signal cover the paths that skip it. No orphans.

An agent uses a server with ``params: {server: NAME}``: :func:`resolve_params` replaces it
by ``base_url`` (``http://host:port/v1``) and, unless the agent sets it, ``model``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import aiohttp
import anyio
import structlog

from mmsim.errors import UserError
from mmsim.redaction import scrub
from mmsim.spec import ServerSpec

log = structlog.get_logger("mmsim.servers")

STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 25
_INSTALL_HINT = {"vllm": "pip install vllm", "transformers": "pip install 'transformers[serving]'"}


class ServerError(UserError):
    """A server that could not be started or did not become healthy (exit code 2)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _executable(name: str, server: str) -> str:
    """``name`` from this Python's environment first (a venv not on PATH), then PATH."""
    sibling = Path(sys.executable).parent / name
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"command {name!r} not found ({_INSTALL_HINT.get(name, '')})",
                          where=f"servers.{server}")
    return found


def build_argv(spec: ServerSpec, port: int) -> list[str]:
    """The command line of ``spec`` listening on ``port``.

    ``vllm`` -> ``vllm serve MODEL --host H --port P ARGS``; ``transformers`` ->
    ``transformers serve MODEL --host H --port P ARGS``; a list is a custom argv in which
    ``{port}``, ``{host}``, ``{model}`` and ``{python}`` (this Python) are substituted.
    """
    if isinstance(spec.command, list):
        subst = {"port": str(port), "host": spec.host, "model": spec.model or "",
                 "python": sys.executable}
        argv = [a.format(**subst) for a in spec.command]
        return [*argv, *(a.format(**subst) for a in spec.args)]
    assert spec.model is not None  # checked by the schema
    return [_executable(spec.command, spec.name), "serve", spec.model, "--host", spec.host,
            "--port", str(port), *spec.args]


def _tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=n)).rstrip()
    except OSError:
        return "(no log)"


def _set_pdeathsig() -> None:  # runs in the child between fork and exec (Linux only)
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the parent


@dataclass(slots=True)
class RunningServer:
    spec: ServerSpec
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]
    log_file: IO[bytes]
    healthy: bool = False

    @property
    def origin(self) -> str:
        host = self.spec.host if self.spec.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What OpenAI-compatible clients use (``http://host:port/v1``)."""
        return self.origin + self.spec.api_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def describe(self) -> dict[str, Any]:
        return {"argv": [scrub(a) for a in self.argv], "pid": self.pid, "port": self.port,
                "base_url": self.base_url, "log": str(self.log_path), "model": self.spec.model}

    def stop_nowait(self) -> None:
        """SIGTERM the process group (no wait)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def kill_group(self) -> None:
        """SIGKILL whatever is left of the process group (children included)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.log_file.close()


_LIVE: set[int] = set()  # pgids started by this process and not yet stopped


@atexit.register
def kill_all_now() -> None:
    """SIGKILL every server process group this process started and has not stopped yet
    (at exit, and from paths that leave with ``os._exit``, such as a second Ctrl-C)."""
    for pgid in list(_LIVE):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    _LIVE.clear()


def resolve_params(params: dict[str, Any], servers: dict[str, RunningServer]) -> dict[str, Any]:
    """An agent's params with ``server: NAME`` replaced by that server's ``base_url`` (and
    ``model``, unless the agent sets its own)."""
    if "server" not in params:
        return params
    out = dict(params)
    name = out.pop("server")
    srv = servers.get(str(name))
    if srv is None:
        raise UserError(f"unknown server {name!r}; known: {', '.join(servers) or '(none)'}",
                        field="params.server")
    out["base_url"] = srv.base_url
    if "model" not in out and srv.spec.model is not None:
        out["model"] = srv.spec.model
    return out


class ServerGroup:
    """Starts servers on ``__aenter__`` (without waiting), stops them on ``__aexit__``.

    ``await group.wait_healthy()`` blocks until every server answers its health check, so
    a caller can do other start-up work (loading data) while the servers boot.
    """

    def __init__(self, specs: Iterable[ServerSpec], log_dir: Path):
        self.specs = list(specs)
        self.log_dir = Path(log_dir)
        self.servers: dict[str, RunningServer] = {}

    async def __aenter__(self) -> ServerGroup:
        try:
            for spec in self.specs:
                self.servers[spec.name] = self._start(spec)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _start(self, spec: ServerSpec) -> RunningServer:
        port = free_port(spec.host) if spec.port == "auto" else spec.port
        argv = build_argv(spec, port)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if spec.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(spec.gpu)
        env.update({k: str(v) for k, v in spec.env.items()})
        for k, name in spec.env_from.items():
            if name not in os.environ:
                raise ServerError(f"env_from: {k} names {name!r}, which is not set in "
                                  "mmsim's environment", where=f"server {spec.name!r}")
            env[k] = os.environ[name]
        f = log_path.open("ab")
        f.write(f"# mmsim: {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: "
                f"{scrub(' '.join(argv))}\n".encode())
        f.flush()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
                preexec_fn=_set_pdeathsig if sys.platform == "linux" else None)
        except OSError as exc:
            f.close()
            raise ServerError(f"cannot start {argv[0]!r}: {exc}",
                              where=f"servers.{spec.name}") from None
        _LIVE.add(proc.pid)
        log.info("server.start", server=spec.name, pid=proc.pid, port=port, argv=argv,
                 log=str(log_path))
        return RunningServer(spec, argv, port, log_path, proc, f)

    async def wait_healthy(self) -> dict[str, RunningServer]:
        """Wait for every server's health endpoint; raise :class:`ServerError` if one exits
        or times out (the caller's ``async with`` then stops them all)."""
        try:
            async with aiohttp.ClientSession(trust_env=False) as client, \
                    anyio.create_task_group() as tg:
                for srv in self.servers.values():
                    if not srv.healthy:
                        tg.start_soon(self._wait_one, client, srv)
        except BaseExceptionGroup as group:  # the first failing server, not a group of one
            match, _ = group.split(ServerError)
            first: BaseException | None = match
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            if first is not None:
                raise first from None
            raise
        return self.servers

    async def _wait_one(self, client: aiohttp.ClientSession, srv: RunningServer) -> None:
        spec = srv.spec
        url = srv.origin + spec.health_path
        t0 = time.monotonic()
        while True:
            code = srv.proc.poll()
            if code is not None:
                raise ServerError(
                    f"exited with code {code} before it was healthy ({' '.join(srv.argv)}); "
                    f"last lines of {srv.log_path}:\n{_tail(srv.log_path)}",
                    where=f"servers.{spec.name}")
            try:
                async with client.get(url, timeout=aiohttp.ClientTimeout(total=5.0)) as r:
                    ok = r.status == 200
                if ok:
                    srv.healthy = True
                    log.info("server.healthy", server=spec.name, url=srv.base_url,
                             startup_s=round(time.monotonic() - t0, 1))
                    return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() - t0 > spec.startup_timeout_s:
                raise ServerError(
                    f"not healthy after {spec.startup_timeout_s:g} s (GET {url}); "
                    f"last lines of {srv.log_path}:\n{_tail(srv.log_path)}",
                    where=f"servers.{spec.name}")
            await anyio.sleep(0.25)

    async def stop(self) -> None:
        """SIGTERM every group, wait up to ``STOP_GRACE_S``, SIGKILL what is left."""
        if not self.servers:
            return
        with anyio.CancelScope(shield=True):
            for srv in self.servers.values():
                srv.stop_nowait()
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline and \
                    any(s.proc.poll() is None for s in self.servers.values()):
                await anyio.sleep(0.05)
            for srv in self.servers.values():
                srv.kill_group()  # the leader may be gone while children linger
                _LIVE.discard(srv.pid)
                log.info("server.stop", server=srv.spec.name, pid=srv.pid,
                         returncode=srv.proc.returncode)
        self.servers = {}

    def describe(self) -> dict[str, Any]:
        return {n: s.describe() for n, s in self.servers.items()}


__all__ = ["RunningServer", "ServerError", "ServerGroup", "build_argv", "free_port",
           "kill_all_now", "resolve_params"]
