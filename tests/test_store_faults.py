"""A store that is locked, or a disk that fills up, in the middle of a run.

Both faults are real SQLite conditions, not mocks: another connection holds ``BEGIN
EXCLUSIVE`` on the store for longer than the writer's busy timeout, or the writer's
connection has ``PRAGMA max_page_count`` set just above the store's size (SQLite then fails
writes with ``database or disk is full``, as on a full disk). A ``--plugin`` file sets the
pragma on the run's connection (a short ``busy_timeout`` for the lock case, so the test
does not wait the default 30 s).

The contract (docs/guarantees.md): the run stops with exit 3 and one line naming the store
and the cause, no traceback; every episode committed before the fault is still there and the
store passes ``PRAGMA integrity_check``; rerunning the same command once the lock is gone
(or the limit lifted) resumes and finishes with the metrics of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_cli
from test_chaos import chaos_yaml

from mmsim.errors import StoreError
from mmsim.store import EpisodeRecord, RunStore, run_dir_lock

FAULT_PLUGIN = """
from mmsim.store.sqlite import RunStore

_open = RunStore.open.__func__


def _faulty_open(cls, run_dir, *, create=True):
    store = _open(cls, run_dir, create=create)
    store.conn.execute("PRAGMA busy_timeout = 300")
    {extra}
    return store


RunStore.open = classmethod(_faulty_open)
"""
FULL = ('pages = store.conn.execute("PRAGMA page_count").fetchone()[0]\n'
        '    store.conn.execute(f"PRAGMA max_page_count = {pages + 500}")')


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    d = tmp_path_factory.mktemp("faults")
    scn = d / "faults.yaml"
    scn.write_text(chaos_yaml(latency_ms=40))
    r = run_cli("run", str(scn), "--out", str(d / "ref"), "--no-progress")
    assert r.returncode == 0, r.stderr
    return scn, _metrics(d / "ref")


def _metrics(run_dir: Path) -> dict[str, Any]:
    r = run_cli("report", str(run_dir), "--format", "json")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    return {k: m[k] for k in ("counts", "agents", "cells")}


def _committed(db: Path) -> set[str]:
    if not db.exists():
        return set()
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in c.execute("SELECT episode_id FROM episodes WHERE status='done'")}
    except sqlite3.OperationalError:  # the run is still creating the store
        return set()
    finally:
        c.close()


def _integrity(db: Path) -> str:
    c = sqlite3.connect(db)
    try:
        return str(c.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        c.close()


def _check_stopped(proc: subprocess.Popen[str], stderr: str) -> str:
    assert proc.returncode == 3, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("error: ") and "mmsim.sqlite" in lines[0]
    assert "rerun the same command to resume" in lines[0]
    return lines[0]


def test_locked_store_stops_cleanly_and_resumes(scenario: tuple[Path, dict[str, Any]],
                                                tmp_path: Path) -> None:
    scn, ref = scenario
    plug = tmp_path / "busy.py"
    plug.write_text(FAULT_PLUGIN.format(extra="pass"))
    out = tmp_path / "run"
    db = out / "mmsim.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mmsim.cli", "run", str(scn), "--out",
                             str(out), "--no-progress", "--plugin", str(plug)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run finished before the store could be locked"
        if len(_committed(db)) >= 200:
            break
        time.sleep(0.05)
    holder = sqlite3.connect(db, isolation_level=None, timeout=10)
    holder.execute("BEGIN EXCLUSIVE")
    before = _committed(db)  # a WAL reader still sees every committed episode
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = _check_stopped(proc, stderr)
    assert "locked" in line
    after = _committed(db)
    assert before <= after and len(after) < 2000  # nothing committed was lost
    assert _integrity(db) == "ok"
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"{len(after)} already done" in r.stderr
    assert _integrity(db) == "ok" and len(_committed(db)) == 2000
    assert _metrics(out) == ref


def test_full_disk_stops_cleanly_and_resumes(scenario: tuple[Path, dict[str, Any]],
                                             tmp_path: Path) -> None:
    scn, ref = scenario
    plug = tmp_path / "full.py"
    plug.write_text(FAULT_PLUGIN.format(extra=FULL))
    out = tmp_path / "run"
    db = out / "mmsim.sqlite"
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress", "--plugin", str(plug))

    class P:
        returncode = r.returncode
    line = _check_stopped(P(), r.stderr)  # type: ignore[arg-type]
    assert "full" in line
    kept = _committed(db)
    assert 0 < len(kept) < 2000
    assert _integrity(db) == "ok"
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"{len(kept)} already done" in r.stderr
    assert kept <= _committed(db) and len(_committed(db)) == 2000
    assert _integrity(db) == "ok"
    assert _metrics(out) == ref


def test_write_on_locked_store_raises_store_error(tmp_path: Path) -> None:
    """The writer's own error is reported (not a 'cannot rollback' masking it) and the
    connection stays usable once the lock is released."""
    store = RunStore.open(tmp_path)
    store.conn.execute("PRAGMA busy_timeout = 50")
    holder = sqlite3.connect(tmp_path / "mmsim.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    rec = EpisodeRecord(episode_id="e1", run_id="r", kind="screen", model="a",
                        sample_id="s", category="c", status="done")
    with pytest.raises(StoreError, match="locked by another process"):
        store.write_episodes([rec])
    holder.execute("ROLLBACK")
    holder.close()
    store.write_episodes([rec])
    done = store.done_ids()
    assert len(done) == 1 and "e1" in done
    store.close()


def test_store_has_one_writer_per_run_dir(tmp_path: Path) -> None:
    """Another process cannot open the run for writing (naming the pid that holds it);
    readers can; the lock goes with close(), and a run directory the lock created and
    nobody wrote into is removed again."""
    probe = ("import sys\nfrom mmsim.store import RunStore\n"
             "from mmsim.errors import UserError\n"
             "try:\n    RunStore.open(sys.argv[1]).close()\n"
             "except UserError as e:\n    print(e.message, file=sys.stderr); sys.exit(2)\n")

    def other_process() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", probe, str(tmp_path / "run")],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    writer = RunStore.open(tmp_path / "run")
    again = RunStore.open(tmp_path / "run")  # the same process: re-entrant
    r = other_process()
    assert r.returncode == 2, r.stderr
    assert f"another mmsim process (pid {os.getpid()})" in r.stderr
    reader = RunStore.open(tmp_path / "run", create=False)
    assert reader.counts() == writer.counts()
    reader.close()
    again.close()
    assert other_process().returncode == 2  # still held by ``writer``
    writer.close()
    assert other_process().returncode == 0, "free again"

    assert not (tmp_path / "run" / "mmsim.lock").exists()  # removed when let go

    with run_dir_lock(tmp_path / "fresh"):
        assert (tmp_path / "fresh" / "mmsim.lock").read_text().strip() == str(os.getpid())
    assert not (tmp_path / "fresh").exists()


def test_second_run_on_a_running_dir_exits_2_and_the_first_is_intact(tmp_path: Path) -> None:
    """Two `mmsim run` on one --out: the second stops with exit 2 at once and writes
    nothing; the first finishes every episode, and its store is intact."""
    scn = tmp_path / "chaos.yaml"
    scn.write_text(chaos_yaml(latency_ms=60), encoding="utf-8")
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "mmsim.cli", "run", str(scn), "--out",
                              str(out), "--no-progress"], env={**os.environ,
                              "PYTHONPATH": str(ROOT)}, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    db = out / "mmsim.sqlite"
    deadline = time.monotonic() + 60
    while not _committed(db) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before the second could start"
    second = run_cli("run", str(scn), "--out", str(out), "--no-progress")
    still_running = first.poll() is None
    assert second.returncode == 2, second.stderr
    assert f"another mmsim process (pid {first.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert still_running
    assert len(_committed(db)) == 2 * 100 + 18 * 100
    assert _integrity(db) == "ok"
