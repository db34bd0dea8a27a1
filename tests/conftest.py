from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMALL = """
name: small
seed: 3
dataset: {name: synthetic, size: 40, seed: 1}
receivers:
  - {name: r1, backend: sim, params: {skill: 0.0}}
  - {name: r2, backend: sim, params: {skill: -0.5, format_noise: 0.1}}
providers:
  - {name: p1, backend: sim, params: {skill: 2.5, leak_rate: 0.2}}
  - {name: p2, backend: sim, params: {skill: 1.5}}
policies:
  - binary
  - detailed
  - {name: d-d-r, schedule: [detailed, detailed, reveal]}
protocol: {max_rounds: 3}
run: {concurrency: 16, bootstrap: 200}
"""


@pytest.fixture
def small_scenario(tmp_path: Path) -> Path:
    p = tmp_path / "small.yaml"
    p.write_text(SMALL)
    return p


def run_cli(*args: str, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mmsim.cli", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=timeout, env=env)


class StopAfter:
    """A progress sink that asks ``kernel`` to stop once ``n`` episodes have finished (a
    run interrupted part-way, as by Ctrl-C, for resume tests)."""

    def __init__(self, n: int):
        self.n, self.seen = n, 0
        self.kernel: Any = None

    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        self.seen += n
        if self.seen >= self.n and self.kernel is not None:
            self.kernel.request_stop()


def play(scenario: Path, run_dir: Path, executor: Any = None, progress: Any = None) -> Any:
    """Run (or resume) ``scenario`` into ``run_dir`` in-process; returns the Kernel (its
    counters: played, skipped, failed, turns)."""
    import anyio

    from mmsim.runtime import Kernel
    from mmsim.scenario import load_scenario

    kernel = Kernel(load_scenario(scenario), run_dir, executor=executor, progress=progress)
    anyio.run(kernel.run)
    return kernel


def read_store(run_dir: Path, fn: Any, *args: Any, **kw: Any) -> Any:
    """``fn(store, *args, **kw)`` on the run's store, opened for reading and closed after
    (the figures of a run computed in-process, as ``mmsim report`` does)."""
    from mmsim.store import RunStore

    store = RunStore.open(run_dir, create=False)
    try:
        return fn(store, *args, **kw)
    finally:
        store.close()


def report_json(run_dir: Path, *extra: str) -> dict[str, Any]:
    """``mmsim report RUN --format json`` (``extra``: e.g. ``--plugin F``), manifest left
    out (it holds paths and times)."""
    import json

    r = run_cli("report", str(run_dir), "--format", "json", *extra)
    assert r.returncode == 0, r.stderr
    m: dict[str, Any] = json.loads(r.stdout)
    m.pop("manifest", None)
    return m
