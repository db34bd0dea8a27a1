"""Every exception user code can raise ends in a named, attributed error, never in a
silently dropped episode: a policy, a backend and a dataset plugin raising ``CancelledError``,
``KeyboardInterrupt``, ``SystemExit``, a bare ``BaseException`` subclass or an ordinary
``Exception`` make ``mmsim run`` exit 2 with one line naming the plugin file and line; the
run is marked ``failed`` (never ``finished``) and what was finished is kept. A plugin that
raises any of them while it is imported is named the same way. A real cancellation (a stop)
still stops the run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest
from conftest import SMALL, StopAfter, run_cli

GOOD = SMALL.replace("size: 40", "size: 6")

RAISES = {
    "cancelled": "raise asyncio.CancelledError()",
    "keyboard": "raise KeyboardInterrupt()",
    "sysexit": "sys.exit(3)",
    "sysexit0": "sys.exit(0)",
    "base": "raise Odd('odd')",
    "generatorexit": "raise GeneratorExit()",
    "exception": "raise ValueError('plain')",
}
EXPECT = {"cancelled": "CancelledError", "keyboard": "KeyboardInterrupt",
          "sysexit": "SystemExit: sys.exit(3)", "sysexit0": "SystemExit: sys.exit(0)",
          "base": "Odd: odd", "generatorexit": "GeneratorExit", "exception": "ValueError: plain"}
HEAD = "import asyncio\nimport sys\n\n\nclass Odd(BaseException):\n    pass\n\n\n"

POLICY = HEAD + """from mmsim import policy


@policy("ux-policy")
async def pol(ctx):
    if ctx.round >= 2:
        {raise_}
    return ctx.feedback("no", kind="binary")
"""
BACKEND = HEAD + """from mmsim import backend
from mmsim.backends.sim import SimBackend


class Flaky(SimBackend):
    async def generate(self, request):
        if request.purpose == "feedback":
            {raise_}
        return await super().generate(request)


@backend("ux-backend")
def make(name, params):
    return Flaky(name, params)
"""
DATASET = HEAD + """from mmsim.data import dataset


@dataset("ux-data")
def load(options, *, base_dir, cache_dir, limit):
    {raise_}
"""
ON_IMPORT = HEAD + "{raise_}\n"


def _run(tmp_path: Path, kind: str, which: str) -> tuple[int, str, Path]:
    template = {"policy": POLICY, "backend": BACKEND, "dataset": DATASET,
                "import": ON_IMPORT}[kind]
    code = template.replace("{raise_}", RAISES[which])
    plug = tmp_path / "plug.py"
    plug.write_text(code)
    scn = tmp_path / "s.yaml"
    text = GOOD
    if kind == "policy":
        text = text.replace("policies:\n  - binary\n  - detailed\n"
                            "  - {name: d-d-r, schedule: [detailed, detailed, reveal]}",
                            "policies: [ux-policy]")
    elif kind == "backend":
        text = text.replace("{name: p1, backend: sim,", "{name: p1, backend: ux-backend,")
    elif kind == "dataset":
        text = text.replace("{name: synthetic, size: 6, seed: 1}", "{name: ux-data}")
    scn.write_text(text)
    out = tmp_path / "run"
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress", "--plugin", str(plug))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    want_line = next(i for i, ln in enumerate(code.splitlines(), 1)
                     if ln.strip() == RAISES[which])
    assert f"plug.py:{want_line}" in lines[0], lines[0]
    assert EXPECT[which] in lines[0], lines[0]
    return r.returncode, lines[0], out


def _status(out: Path) -> tuple[str, dict[str, int]]:
    c = sqlite3.connect(out / "mmsim.sqlite")
    try:
        status = c.execute("SELECT status FROM runs").fetchone()[0]
        counts = {f"{k}.{s}": n for k, s, n in c.execute(
            "SELECT kind, status, COUNT(*) FROM episodes GROUP BY 1, 2")}
        return status, counts
    finally:
        c.close()


@pytest.mark.parametrize("which", list(RAISES))
@pytest.mark.parametrize("kind", ["policy", "backend"])
def test_episode_code_raising_anything_fails_the_run_by_name(
        tmp_path: Path, kind: str, which: str) -> None:
    code, line, out = _run(tmp_path, kind, which)
    assert code == 2, line
    assert line.startswith("error: ")
    status, counts = _status(out)
    assert status == "failed", (status, counts)
    assert counts.get("screen.done") == 2 * 6 + 2 * 6  # the screening phase was kept


@pytest.mark.parametrize("which", list(RAISES))
@pytest.mark.parametrize("kind", ["dataset", "import"])
def test_loader_or_import_raising_anything_is_named(tmp_path: Path, kind: str,
                                                    which: str) -> None:
    code, line, out = _run(tmp_path, kind, which)
    assert code == 2, line
    assert not out.exists()  # nothing was started


def test_a_real_stop_still_stops(tmp_path: Path) -> None:
    """A stop (what SIGINT does) cancels episodes in flight for real: the run ends
    ``interrupted``, not failed, and no plugin is blamed."""
    from mmsim.runtime import Kernel
    from mmsim.scenario import load_scenario

    scn = tmp_path / "s.yaml"
    scn.write_text(SMALL.replace("backend: sim, params: {skill: 0.0}",
                                 "backend: sim, params: {skill: 0.0, latency_ms: 50}"))
    stop = StopAfter(30)
    kernel = Kernel(load_scenario(scn), tmp_path / "run", progress=stop)
    kernel.stop_grace_s = 0.0
    stop.kernel = kernel
    result = anyio.run(kernel.run)
    assert result.interrupted is not None
    status, counts = _status(tmp_path / "run")
    assert status == "interrupted"
    assert 30 <= sum(counts.values()) < 40 * 2 * 2


def test_a_phase_short_of_its_plan_is_never_finished(tmp_path: Path) -> None:
    """An executor that silently drops jobs (as a swallowed cancellation did): the kernel
    compares the episodes that ended with the plan, marks the run ``failed`` and says how
    many are missing; the rerun plays them."""
    from mmsim.runtime import Kernel
    from mmsim.runtime.executors import LocalExecutor
    from mmsim.runtime.kernel import RunIncomplete
    from mmsim.scenario import load_scenario

    class Dropping(LocalExecutor):
        async def play(self, phase, jobs, concurrency):  # type: ignore[no-untyped-def]
            kept = [j for i, j in enumerate(jobs) if i % 3]
            await super().play(phase, kept, concurrency)

    scn = tmp_path / "s.yaml"
    scn.write_text(GOOD)
    out = tmp_path / "run"
    kernel = Kernel(load_scenario(scn), out, executor=Dropping())
    with pytest.raises(RunIncomplete, match=r"8 of 24 planned 'screening' episodes"):
        anyio.run(kernel.run)
    status, counts = _status(out)
    assert status == "failed" and counts == {"screen.done": 16}
    kernel = Kernel(load_scenario(scn), out)
    result = anyio.run(kernel.run)
    assert result.skipped == 16 and _status(out)[0] == "finished"
