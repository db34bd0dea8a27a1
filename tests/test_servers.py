"""Server lifecycle (``servers:``): start on a free port, wait for health, resolve
``params: {server: NAME}``, write logs, stop process groups on success, failure and Ctrl-C.

The servers here are small Python HTTP servers (no torch needed); each starts a child
process, so the tests also check that the whole process group goes away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest
from conftest import ROOT

from mmsim.errors import ScenarioError
from mmsim.runtime.servers import ServerError, ServerGroup, resolve_params
from mmsim.scenario import load_scenario
from mmsim.spec import ServerSpec

FAKE_SERVER = textwrap.dedent('''
    import http.server, json, os, subprocess, sys, time
    port, mode, pidfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with open(pidfile, "w") as f:
        json.dump({"server": os.getpid(), "child": child.pid}, f)
    print("fake server starting on", port, "mode", mode, flush=True)
    if mode == "crash":
        print("RuntimeError: CUDA out of memory (pretend)", flush=True)
        sys.exit(3)
    if mode == "hang":
        time.sleep(300)

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            print("request", self.path, flush=True)

    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
''')

# A backend plugin that talks to its server over HTTP (GET base_url/models), then answers.
PLUGIN = textwrap.dedent('''
    import time
    import httpx
    from mmsim.backends import Backend, Completion, backend

    class Pinger(Backend):
        def __init__(self, name, params):
            super().__init__(name, params)
            self.url = params["base_url"]
            self.delay = float(params.get("delay", 0))
            self.boom = bool(params.get("boom", False))

        async def generate(self, request):
            if self.boom:
                raise RuntimeError("backend bug")
            async with httpx.AsyncClient(trust_env=False) as c:
                r = await c.get(self.url + "/models")
            r.raise_for_status()
            if self.delay:
                import anyio
                await anyio.sleep(self.delay)
            return Completion(text="Answer: A")

    backend("pinger")(Pinger)
''')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of this process would still answer: look at its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: dict[str, int], timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids.values()):
            return []
        time.sleep(0.05)
    return [k for k, p in pids.items() if _alive(p)]


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    p = tmp_path / "fake_server.py"
    p.write_text(FAKE_SERVER)
    return p


def _spec(fake: Path, pidfile: Path, mode: str = "ok", **kw: object) -> ServerSpec:
    return ServerSpec.model_validate({
        "name": "srv", "command": ["{python}", str(fake), "{port}", mode, str(pidfile)],
        "model": "fake-model", "health_path": "/health", **kw})


def test_server_starts_on_a_free_port_and_stops_with_its_children(fake: Path,
                                                                   tmp_path: Path) -> None:
    pidfile = tmp_path / "pids.json"

    async def main() -> dict[str, int]:
        async with ServerGroup([_spec(fake, pidfile)], tmp_path / "servers") as group:
            servers = await group.wait_healthy()
            srv = servers["srv"]
            assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
            resolved = resolve_params({"server": "srv", "max_tokens": 8}, servers)
            assert resolved == {"base_url": srv.base_url, "model": "fake-model",
                                "max_tokens": 8}
            assert resolve_params({"server": "srv", "model": "m2"}, servers)["model"] == "m2"
            pids: dict[str, int] = json.loads(pidfile.read_text())
            assert all(_alive(p) for p in pids.values())
            return pids

    pids = anyio.run(main)
    assert _wait_gone(pids) == []
    log = (tmp_path / "servers" / "srv.log").read_text()
    assert "fake server starting" in log and "request /health" in log


def test_crashing_server_reports_its_last_log_lines(fake: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids.json"

    async def main() -> None:
        async with ServerGroup([_spec(fake, pidfile, "crash")], tmp_path / "servers") as g:
            await g.wait_healthy()

    with pytest.raises(ServerError) as info:
        anyio.run(main)
    msg = info.value.one_line()
    assert "servers.srv" in msg and "exited with code 3" in msg
    assert "CUDA out of memory (pretend)" in msg and "srv.log" in msg
    assert _wait_gone(json.loads(pidfile.read_text())) == []


def test_server_that_never_gets_healthy_times_out_and_is_killed(fake: Path,
                                                                tmp_path: Path) -> None:
    pidfile = tmp_path / "pids.json"

    async def main() -> None:
        async with ServerGroup([_spec(fake, pidfile, "hang", startup_timeout_s=1.5)],
                               tmp_path / "servers") as g:
            await g.wait_healthy()

    with pytest.raises(ServerError, match=r"not healthy after 1.5 s"):
        anyio.run(main)
    assert _wait_gone(json.loads(pidfile.read_text())) == []


def _scenario(tmp_path: Path, fake: Path, pidfile: Path, params: str) -> Path:
    scn = tmp_path / "scn.yaml"
    scn.write_text(textwrap.dedent(f'''
        name: servers-test
        dataset: {{name: synthetic, size: 6, seed: 1}}
        servers:
          - name: fake
            command: ["{{python}}", "{fake}", "{{port}}", ok, "{pidfile}"]
            model: fake-model
            startup_timeout_s: 30
        receivers:
          - {{name: r1, backend: pinger, params: {params}, concurrency: 4}}
        providers:
          - {{name: p1, backend: sim, params: {{skill: 3}}}}
        policies: [binary]
        protocol: {{max_rounds: 1, test_set: all_wrong}}
        run: {{concurrency: 4, bootstrap: 0}}
    '''))
    (tmp_path / "plugin.py").write_text(PLUGIN)
    return scn


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmsim.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_run_through_a_server_writes_log_and_manifest_then_stops_it(fake: Path,
                                                                    tmp_path: Path) -> None:
    pidfile = tmp_path / "pids.json"
    scn = _scenario(tmp_path, fake, pidfile, "{server: fake}")
    out = tmp_path / "run"
    r = subprocess.run(_cli("run", str(scn), "--out", str(out), "--no-progress", "--plugin",
                            str(tmp_path / "plugin.py")),
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert _wait_gone(json.loads(pidfile.read_text())) == []
    log = (out / "servers" / "fake.log").read_text()
    assert "request /v1/models" in log  # the agent reached the server it named
    from mmsim.store import RunStore

    store = RunStore.open(out, create=False)
    try:
        run = store.run()
        counts = store.counts()
    finally:
        store.close()
    assert run is not None
    assert counts.get("screen.done") == 12
    manifest = run.get("manifest") or {}
    if isinstance(manifest, str):
        manifest = json.loads(manifest)
    assert manifest["servers"]["fake"]["model"] == "fake-model"


def test_failing_run_leaves_no_orphans(fake: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids.json"
    scn = _scenario(tmp_path, fake, pidfile, "{server: fake, boom: true}")
    r = subprocess.run(_cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress",
                            "--plugin", str(tmp_path / "plugin.py")),
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode != 0
    assert pidfile.is_file()  # the server was up when the run failed
    assert _wait_gone(json.loads(pidfile.read_text())) == []


def test_ctrl_c_stops_the_servers(fake: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids.json"
    scn = _scenario(tmp_path, fake, pidfile, "{server: fake, delay: 30}")
    proc = subprocess.Popen(_cli("run", str(scn), "--out", str(tmp_path / "run"),
                                 "--no-progress", "--plugin", str(tmp_path / "plugin.py")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        log = tmp_path / "run" / "servers" / "fake.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until an agent call reached the server
            if log.is_file() and "request /v1/models" in log.read_text():
                break
            time.sleep(0.1)
        else:
            pytest.fail("the run never reached its server")
        pids = json.loads(pidfile.read_text())
        proc.send_signal(signal.SIGINT)  # a clean stop begins (grace period for episodes)...
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)  # ...and a second Ctrl-C exits at once (os._exit)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _wait_gone(pids) == []


def test_scenario_checks_server_references(tmp_path: Path) -> None:
    scn = tmp_path / "s.yaml"
    scn.write_text(textwrap.dedent('''
        name: s
        dataset: {name: synthetic, size: 4}
        servers:
          - {name: recv-server, command: transformers, model: /m}
        receivers:
          - {name: r, backend: sim, params: {server: recv-sever}}
        providers:
          - {name: p, backend: sim}
        policies: [binary]
    '''))
    with pytest.raises(ScenarioError, match=r"did you mean 'recv-server'"):
        load_scenario(scn)
    scn.write_text(scn.read_text().replace("recv-sever", "recv-server")
                   .replace("command: transformers, model: /m", "command: vllm"))
    with pytest.raises(ScenarioError, match=r"'vllm' servers need a model") as info:
        load_scenario(scn)
    assert "servers.0" in info.value.one_line()
    # a scenario without servers keeps its fingerprint (no 'servers' key in canonical())
    scn.write_text(scn.read_text().replace("params: {server: recv-server}", "params: {}")
                   .split("servers:")[0] + "receivers:" + scn.read_text().split(
                       "receivers:")[1].replace("params: {server: recv-server}", "params: {}"))
    assert "servers" not in load_scenario(scn).scenario.canonical()
