"""The Ray executor (issue 7): same metrics as the local executor for the same seed, resume
across executors, and a killed worker loses no episode and writes none twice.

One local Ray (2 CPUs) is shared by the module; skipped when Ray is not installed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import StopAfter, play

from mmsim.metrics import compute
from mmsim.runtime import Kernel as Runner
from mmsim.runtime import Progress
from mmsim.runtime.executors import LocalExecutor, RayExecutor, make_executor
from mmsim.scenario import load_scenario
from mmsim.store import RunStore

ray = pytest.importorskip("ray")

SCENARIO = """
name: raysmall
seed: 5
dataset: {name: synthetic, size: 30, seed: 2}
receivers:
  - {name: r1, backend: sim, params: {skill: 0.0, latency_ms: LAT}}
  - {name: r2, backend: sim, params: {skill: -0.5, format_noise: 0.1, latency_ms: LAT}}
providers:
  - {name: p1, backend: sim, params: {skill: 2.5, leak_rate: 0.2, latency_ms: LAT}}
policies:
  - binary
  - {name: d-d-r, schedule: [detailed, detailed, reveal]}
protocol: {max_rounds: 3}
run: {concurrency: 8, bootstrap: 50}
"""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _scenario(tmp_path: Path, latency_ms: float = 0.0) -> Path:
    p = tmp_path / "raysmall.yaml"
    p.write_text(SCENARIO.replace("LAT", str(latency_ms)))
    return p


def _summary(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int]]:
    store = RunStore.open(run_dir, create=False)
    try:
        metrics = compute(store, resamples=50, seed=5)
        rows = [{k: v for k, v in r.items() if k != "finished_at"} for r in store.episodes()]
        msgs = {r["episode_id"]: len(store.messages(r["episode_id"])) for r in rows}
        return metrics, rows, msgs
    finally:
        store.close()


def test_ray_and_local_give_identical_metrics(ray_cluster: None, tmp_path: Path) -> None:
    scn = _scenario(tmp_path)
    local = play(scn, tmp_path / "local", LocalExecutor())
    ex = RayExecutor(workers=2, batch_size=16)
    remote = play(scn, tmp_path / "ray", ex)
    assert (remote.played, remote.failed, remote.turns) == (local.played, local.failed,
                                                            local.turns)
    assert local.played > 60  # screening (90) and feedback episodes
    m_local, rows_local, msgs_local = _summary(tmp_path / "local")
    m_ray, rows_ray, msgs_ray = _summary(tmp_path / "ray")
    assert rows_ray == rows_local
    assert msgs_ray == msgs_local
    assert m_ray == m_local
    assert ex.requeued == 0


def test_resume_works_whichever_executor_ran_before(ray_cluster: None, tmp_path: Path) -> None:
    scn = _scenario(tmp_path)
    ref = play(scn, tmp_path / "ref", LocalExecutor())
    # a ray run stopped part-way, resumed locally
    prog = StopAfter(20)
    runner = Runner(load_scenario(scn), tmp_path / "a", executor=RayExecutor(
        workers=2, batch_size=10), progress=prog)
    prog.kernel = runner
    anyio.run(runner.run)
    assert 0 < runner.played < ref.played
    resumed = play(scn, tmp_path / "a", LocalExecutor())
    assert resumed.skipped > 0
    assert runner.played + resumed.played == ref.played
    # a local run stopped part-way, resumed on ray
    prog = StopAfter(20)
    runner = Runner(load_scenario(scn), tmp_path / "b", executor=LocalExecutor(),
                    progress=prog)
    prog.kernel = runner
    anyio.run(runner.run)
    resumed = play(scn, tmp_path / "b", RayExecutor(workers=2, batch_size=10))
    assert resumed.skipped > 0 and runner.played + resumed.played == ref.played
    want = _summary(tmp_path / "ref")
    assert _summary(tmp_path / "a") == want
    assert _summary(tmp_path / "b") == want


class _KillOnce(Progress):
    """Kills worker 0's process (SIGKILL) when the first batch has come back."""

    def __init__(self, ex: RayExecutor):
        self.ex = ex
        self.killed: int | None = None

    def advance(self, n: int = 1) -> None:
        if self.killed is None:
            self.killed = ray.get(self.ex._handles[0].pid.remote())
            os.kill(self.killed, signal.SIGKILL)


def test_killed_worker_loses_nothing(ray_cluster: None, tmp_path: Path) -> None:
    scn = _scenario(tmp_path, latency_ms=3.0)
    local = play(scn, tmp_path / "local", LocalExecutor())
    ex = RayExecutor(workers=2, batch_size=6)
    prog = _KillOnce(ex)
    remote = play(scn, tmp_path / "ray", ex, prog)
    assert prog.killed is not None
    assert ex.requeued >= 1 and ex.restarts >= 1
    store = RunStore.open(tmp_path / "ray", create=False)
    try:
        ids = [r["episode_id"] for r in store.episodes()]
        n_msgs = store.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        store.close()
    assert len(ids) == len(set(ids)) == local.played + local.failed
    # episodes are counted once: a requeued batch's first try sent nothing back
    assert (remote.played, remote.failed, remote.turns) == (local.played, local.failed,
                                                            local.turns)
    assert n_msgs == sum(_summary(tmp_path / "local")[2].values())
    assert _summary(tmp_path / "ray") == _summary(tmp_path / "local")


def test_make_executor_names() -> None:
    assert isinstance(make_executor("local"), LocalExecutor)
    assert isinstance(make_executor("ray", address="auto"), RayExecutor)
    from mmsim.errors import UserError
    with pytest.raises(UserError):
        make_executor("spark")
    with pytest.raises(UserError):
        make_executor("local", address="auto")


def test_cli_run_with_ray_executor_then_resume_locally(ray_cluster: None,
                                                       tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mmsim.cli import app

    scn = _scenario(tmp_path)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", str(scn), "--out", str(out), "--executor", "ray",
                                 "--ray-workers", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "episodes played" in r.output
    r = CliRunner().invoke(app, ["run", str(scn), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert " 0 episodes played" in r.output and "(resumed)" in r.output
    r = CliRunner().invoke(app, ["run", str(scn), "--out", str(out), "--executor", "spark"])
    assert r.exit_code == 2
