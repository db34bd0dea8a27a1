"""What the kernel gives every protocol, checked on classification, dynamic and video:
``--executor ray`` (identical episodes, resume across executors), ``servers:`` blocks, the
response cache (a rerun makes no server call), a clean SIGINT stop with the resume command,
and secrets redacted from what the run stores.

Each protocol runs a small scenario of sim agents (openai agents against a local echo
server where a server is the point); a local Ray with 2 CPUs is started once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import ROOT, StopAfter, play, report_json, run_cli

from mmsim.runtime import Kernel
from mmsim.runtime.executors import LocalExecutor, RayExecutor
from mmsim.scenario import load_scenario
from mmsim.store import RunStore
from mmsim.testing import EchoServer

ray = pytest.importorskip("ray")

CLS = """kind: classification
name: k-cls
seed: 1
dataset: {name: synthetic-objects, size: 12, seed: 2}
models:
  - {name: good, MODEL_GOOD}
  - {name: poor, MODEL_POOR}
encoders: [string]
protocols:
  multiple_choice: {k: 4, distractors: [random]}
  batch: {sizes: [1, 4], orders: 2}
run: {concurrency: CONC}
"""

DYN = """kind: dynamic
name: k-dyn
seed: 2
dataset: {name: synthetic-scenes, size: 8, seed: 1}
tasks: [qa, caption, count]
models:
  - {name: base, MODEL_GOOD}
  - {name: weak, MODEL_POOR}
judges:
  - {name: judge, backend: sim, params: {noise: 0.1}}
judge:
  use: judge
  min_auroc: 0.5
  calibration: {items: 4, paraphrases: 1, corruptions: 1, runs: 1}
run: {concurrency: CONC}
"""

VIDEO = """kind: video
name: k-video
seed: 3
dataset: {name: synthetic-video, items_per_level: 3, training_items: 3}
frames: {fps: 1, min_frames: 2, max_frames: 4, size: 64, send: images}
models:
  - {name: base, MODEL_GOOD}
  - {name: post, MODEL_POOR}
rollouts: {samples: 2, temperature: 1.0, split: training, k: [1, 2], export: []}
run: {concurrency: CONC}
"""

KINDS = {"classification": CLS, "dynamic": DYN, "video": VIDEO}
SIM = ("backend: sim, params: {skill: 1.5, latency_ms: LAT}",
       "backend: sim, params: {skill: 0.0, latency_ms: LAT}")


def _scenario(tmp: Path, kind: str, *, models: tuple[str, str] = SIM, lat: float = 0.0,
              conc: int = 8, extra: str = "") -> Path:
    text = KINDS[kind].replace("MODEL_GOOD", models[0]).replace("MODEL_POOR", models[1])
    text = text.replace("LAT", str(lat)).replace("CONC", str(conc)) + extra
    p = tmp / f"{kind}.yaml"
    p.write_text(text)
    return p


def _rows(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every stored episode without its timings, and its messages (images are referenced
    under each run's own assets/: the run directory is left out of their paths)."""
    store = RunStore.open(run_dir, create=False)
    try:
        out = {}
        for r in store.episodes():
            row = {k: v for k, v in r.items() if k not in ("finished_at", "latency_s")}
            msgs = [{k: v for k, v in m.items() if k != "latency_s"}
                    for m in store.messages(r["episode_id"])]
            row["messages"] = json.loads(json.dumps(msgs).replace(str(run_dir), "RUN"))
            out[r["episode_id"]] = row
        return out
    finally:
        store.close()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_ray_equals_local_and_resume_crosses_executors(kind: str, ray_cluster: None,
                                                        tmp_path: Path) -> None:
    scn = _scenario(tmp_path, kind)
    local = play(scn, tmp_path / "local", LocalExecutor())
    assert local.failed == 0 and local.played > 20
    remote = play(scn, tmp_path / "ray", RayExecutor(workers=2, batch_size=8))
    assert (remote.played, remote.failed) == (local.played, local.failed)
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "local")
    # stopped part-way on Ray, finished locally: the same run as an uninterrupted one
    prog = StopAfter(10)
    part = Kernel(load_scenario(scn), tmp_path / "mixed",
                  executor=RayExecutor(workers=2, batch_size=4), progress=prog)
    prog.kernel = part
    anyio.run(part.run)
    assert 0 < part.played < local.played
    rest = play(scn, tmp_path / "mixed", LocalExecutor())
    assert rest.skipped == part.played and part.played + rest.played == local.played
    assert _rows(tmp_path / "mixed") == _rows(tmp_path / "local")
    assert report_json(tmp_path / "mixed") == report_json(tmp_path / "local")


ECHO_SERVER = """
servers:
  - name: echo
    command: ["{python}", "-m", "mmsim.testing.echo_server", "--port", "{port}"]
    model: echo-model
"""
OPENAI_VIA_SERVER = ("backend: openai, params: {server: echo, temperature: 0, timeout_s: 30}",
                     "backend: openai, params: {server: echo, temperature: 0, max_tokens: 8,"
                     " timeout_s: 30}")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_servers_block_starts_the_server_the_agents_use_and_stops_it(kind: str,
                                                                     tmp_path: Path) -> None:
    scn = _scenario(tmp_path, kind, models=OPENAI_VIA_SERVER, extra=ECHO_SERVER)
    out = tmp_path / "run"
    r = run_cli("validate", str(scn))
    assert r.returncode == 0, r.stderr
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress", timeout=180)
    assert r.returncode == 0, r.stderr
    assert "0 failed" in r.stderr
    log = (out / "servers" / "echo.log").read_text()
    assert "listening on http://127.0.0.1:" in log
    store = RunStore.open(out, create=False)
    try:
        run = store.run()
        eps = list(store.episodes())
    finally:
        store.close()
    assert run is not None and run["manifest"]["servers"]["echo"]["model"] == "echo-model"
    assert run["manifest"]["kind"] == kind
    replies = [m for e in eps for m in _messages(out, e["episode_id"])
               if m["kind"] == "response"]
    assert replies and all(not m["simulated"] for m in replies)  # the real HTTP path
    assert {e["status"] for e in eps} == {"done"}


def _messages(run_dir: Path, episode_id: str) -> list[dict[str, Any]]:
    store = RunStore.open(run_dir, create=False)
    try:
        return store.messages(episode_id)
    finally:
        store.close()


SECRET = "sk-live-0123456789abcdefSECRET"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_response_cache_replays_without_server_calls_and_secrets_are_redacted(
        kind: str, tmp_path: Path) -> None:
    with EchoServer() as srv:
        # cache: true, so that the video rollouts (sampled at a temperature) are cached too,
        # one entry per sample
        agent = ("backend: openai, cache: true, params: {base_url: '" + srv.base_url + "', "
                 "model: echo, temperature: 0, timeout_s: 30, extra_body: {user: '"
                 + SECRET + "'}}")
        scn = _scenario(tmp_path, kind, models=(agent, agent))
        out = tmp_path / "run"
        first = play(scn, out)
        calls = srv.hits
        assert calls > 0 and first.failed == 0
        before = _rows(out)
        again = play(scn, out)  # a finished run: nothing to play, no call
        assert again.played == 0 and srv.hits == calls
        # every episode lost, the cache kept: played again, answered from the cache only
        db = sqlite3.connect(out / "mmsim.sqlite")
        db.execute("DELETE FROM messages")
        db.execute("DELETE FROM episodes")
        db.commit()
        db.close()
        replay = play(scn, out)
        assert replay.played == first.played and srv.hits == calls
        assert _strip_usage(_rows(out)) == _strip_usage(before)
    blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert SECRET.encode() not in blob  # neither in the stored scenario nor the manifest


def _strip_usage(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Rows with what a cached reply may change (retries, latency) left out."""
    out = {}
    for k, r in rows.items():
        msgs = [{f: v for f, v in m.items() if f not in ("usage", "latency_s")}
                for m in r["messages"]]
        out[k] = {**{f: v for f, v in r.items() if f != "messages"}, "messages": msgs}
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_sigint_stops_cleanly_prints_the_resume_command_and_resume_finishes(
        kind: str, tmp_path: Path) -> None:
    scn = _scenario(tmp_path, kind, lat=60.0, conc=2)
    ref = tmp_path / "ref"
    r = run_cli("run", str(scn), "--out", str(ref), "--no-progress", timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mmsim.cli", "run", str(scn), "--out", str(out),
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not _done_some(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "interrupted (SIGINT)" in stderr and "resume with: mmsim run" in stderr
    store = RunStore.open(out, create=False)
    try:
        run = store.run()
        n_done = sum(store.counts().values())
    finally:
        store.close()
    assert run is not None and run["status"] == "interrupted" and n_done > 0
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress", timeout=300)
    assert r.returncode == 0 and "(resumed)" in r.stderr, r.stderr
    assert report_json(out) == report_json(ref)


def _done_some(run_dir: Path) -> bool:
    db = run_dir / "mmsim.sqlite"
    if not db.exists():
        return False
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)
        try:
            n = con.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return int(n) >= 4
