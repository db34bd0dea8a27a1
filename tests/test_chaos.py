"""Crash-resume chaos: a 2,000-episode simulated run killed with SIGKILL at 20 random
moments ends with exactly 2,000 episodes, no duplicates and the metrics of an uninterrupted
run; SIGINT/SIGTERM stop a run cleanly (exit 130/143, status ``interrupted``, one line
saying how to resume) and the rerun finishes with identical metrics.

Design (the smallest honest one on 2 cores): 1 receiver that always answers wrong, 1
provider, 18 policies, 100 synthetic items and ``test_set: all_wrong``, so screening (2 x
100) + feedback (18 x 100) = 2,000 episodes; sim latency makes the play last ~7 s. Process
start-up (imports, drawing 100 images) costs ~1 s per restart and much more when the machine
is loaded, so kill moments are drawn (seeded RNG) relative to what the restart is doing, not
to a fixed clock: 30 % are a uniform delay in the first 0.6 s (start-up, data loading, store
opening), the rest a uniform delay of up to 0.2 s after the restart's first new commit (mid
play: screening or feedback episodes in flight, batches being committed). Each kill lands
on a live process; the last (unkilled) run finishes the rest.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_cli

N_ITEMS = 100
POLICIES = 18
TOTAL = 2 * N_ITEMS + POLICIES * N_ITEMS  # screening (2 agents) + feedback episodes
KILLS = 20
BASES = ("binary", "detailed", "reveal", "retry")


def chaos_yaml(latency_ms: float = 70, concurrency: int = 48) -> str:
    schedules = [(a, b, c) for a in BASES for b in BASES for c in BASES][:POLICIES]
    pols = "\n".join(f"  - {{name: s{i:02d}, schedule: [{', '.join(s)}]}}"
                     for i, s in enumerate(schedules))
    agent = "backend: sim, params: {{skill: {skill}, format_noise: 0.0, latency_ms: {lat}}}"
    return f"""name: chaos
seed: 11
dataset: {{name: synthetic, size: {N_ITEMS}, seed: 5}}
receivers:
  - {{name: r, {agent.format(skill=-30.0, lat=latency_ms)}}}
providers:
  - {{name: p, {agent.format(skill=30.0, lat=latency_ms)}}}
policies:
{pols}
protocol: {{max_rounds: 3, test_set: all_wrong}}
run: {{concurrency: {concurrency}, bootstrap: 100}}
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _start(scn: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mmsim.cli", "run", str(scn), "--out",
                             str(out), "--no-progress", *extra], env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _metrics(run_dir: Path) -> dict[str, Any]:
    r = run_cli("report", str(run_dir), "--format", "json")
    assert r.returncode == 0, r.stderr
    m: dict[str, Any] = json.loads(r.stdout)
    return m


def _comparable(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in ("counts", "agents", "cells")}


def _count(db: Path, where: str = "1") -> int:
    if not db.exists():
        return 0
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(c.execute(f"SELECT COUNT(*) FROM episodes WHERE {where}").fetchone()[0])
    except sqlite3.Error:  # no table yet (killed while creating the store)
        return 0
    finally:
        c.close()


def _store_facts(db: Path) -> tuple[int, int, str, str]:
    c = sqlite3.connect(db)
    try:
        n = c.execute("SELECT COUNT(*) FROM episodes WHERE status='done'").fetchone()[0]
        dup = c.execute("SELECT COUNT(*) - COUNT(DISTINCT episode_id) FROM episodes"
                        ).fetchone()[0]
        status = c.execute("SELECT status FROM runs").fetchone()[0]
        ok = c.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        c.close()
    return int(n), int(dup), str(status), str(ok)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], float]:
    """The uninterrupted run: its scenario file, metrics and wall time."""
    d = tmp_path_factory.mktemp("chaos")
    scn = d / "chaos.yaml"
    scn.write_text(chaos_yaml())
    t0 = time.monotonic()
    r = run_cli("run", str(scn), "--out", str(d / "ref"), "--no-progress")
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    m = _metrics(d / "ref")
    assert sum(m["counts"].values()) == TOTAL and m["counts"]["feedback.done"] == 1800
    return scn, m, wall


def test_sigkill_20_times_then_resume_equals_uninterrupted(
        reference: tuple[Path, dict[str, Any], float], tmp_path: Path) -> None:
    scn, ref, _ = reference
    out = tmp_path / "killed"
    db = out / "mmsim.sqlite"
    rng = random.Random(20260917)
    progress: list[int] = []
    for k in range(KILLS):
        during_startup = rng.random() < 0.3
        delay = rng.uniform(0.0, 0.6 if during_startup else 0.2)
        n0 = _count(db)
        proc = _start(scn, out)
        try:
            if not during_startup:  # wait for this restart's first commit, then a bit more
                deadline = time.monotonic() + 60
                while _count(db) <= n0 and time.monotonic() < deadline:
                    assert proc.poll() is None, f"restart {k} ended before committing"
                    time.sleep(0.02)
            time.sleep(delay)
            assert proc.poll() is None, f"restart {k} finished before its kill"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        progress.append(_count(db))
    assert progress == sorted(progress), f"episodes lost between kills: {progress}"
    assert 0 < progress[-1] < TOTAL, progress
    # kills landed while episodes were being played and committed, not only at start-up
    assert sum(b > a for a, b in zip([0, *progress], progress, strict=False)) >= 5, progress
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "(resumed)" in r.stderr
    n, dup, status, ok = _store_facts(db)
    assert (n, dup, status, ok) == (TOTAL, 0, "finished", "ok")
    assert _comparable(_metrics(out)) == _comparable(ref)


def _interrupt(scn: Path, out: Path, sig: int, after_feedback: int) -> int:
    """Start the run, send ``sig`` once ``after_feedback`` feedback episodes are committed,
    check the clean stop; return the episodes saved."""
    db = out / "mmsim.sqlite"
    proc = _start(scn, out)
    deadline = time.monotonic() + 60
    while _count(db, "kind='feedback'") < after_feedback and time.monotonic() < deadline:
        assert proc.poll() is None, "the run finished before it could be interrupted"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert f"interrupted ({signal.Signals(sig).name})" in lines[0]
    assert f"resume with: mmsim run {scn} --out {out} --no-progress" in lines[0]
    n, dup, status, ok = _store_facts(db)
    assert status == "interrupted" and dup == 0 and ok == "ok" and 0 < n < TOTAL
    assert f"{n} episodes saved" in lines[0]
    return n


def test_sigint_then_sigterm_stop_cleanly_and_rerun_matches(
        reference: tuple[Path, dict[str, Any], float], tmp_path: Path) -> None:
    """SIGINT exits 130 and SIGTERM 143 after a clean stop (status ``interrupted``, one line
    with the command that resumes); the rerun of that command finishes with the metrics of
    the uninterrupted run."""
    scn, ref, _ = reference
    out = tmp_path / "run"
    first = _interrupt(scn, out, signal.SIGINT, 200)
    second = _interrupt(scn, out, signal.SIGTERM, first)  # 200 more feedback episodes
    assert second > first
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"{second} already done" in r.stderr
    assert _store_facts(out / "mmsim.sqlite") == (TOTAL, 0, "finished", "ok")
    assert _comparable(_metrics(out)) == _comparable(ref)


SLOW_POLICY = """
import anyio
from mmsim import Feedback, FeedbackContext, policy

@policy("chaos-slow")
async def slow(ctx: FeedbackContext) -> Feedback:
    await anyio.sleep(60)
    return ctx.feedback("no", kind="binary")
"""


def test_second_signal_aborts_at_once(tmp_path: Path) -> None:
    """While in-flight episodes get their grace period, a second SIGINT exits at once;
    what was committed stays intact and a rerun (without the slow policy) resumes."""
    scn = tmp_path / "chaos.yaml"
    scn.write_text(chaos_yaml(latency_ms=0))
    plug = tmp_path / "slow.py"
    plug.write_text(SLOW_POLICY)
    out = tmp_path / "run"
    db = out / "mmsim.sqlite"
    proc = _start(scn, out, "--plugin", str(plug), "--set", "policies=[chaos-slow]",
                  "--limit", "10")
    deadline = time.monotonic() + 60
    while _count(db) < 20 and time.monotonic() < deadline:  # screening committed
        assert proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)  # feedback episodes are now waiting in the slow policy
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None, "the first signal must wait for episodes in flight"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    assert time.monotonic() - t0 < 3
    assert proc.returncode == 130
    c = sqlite3.connect(db)
    try:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT COUNT(*) FROM episodes WHERE kind='screen'").fetchone()[0] == 20
    finally:
        c.close()
