"""End-to-end CLI tests: real subprocesses, a real SQLite store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, run_cli


def _metrics(run_dir: Path) -> dict:
    r = run_cli("report", str(run_dir), "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_run_prints_table_and_report_json(small_scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = run_cli("run", str(small_scenario), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "SIMULATED" in r.stdout and "r1" in r.stdout and "d-d-r" in r.stdout
    m = _metrics(out)
    assert m["simulated"] is True
    assert m["counts"]["screen.done"] == 4 * 40
    assert len(m["cells"]) == 2 * 2 * 3
    for c in m["cells"]:
        assert c["n"] == 40
        assert c["n_test"] <= c["n_wrong"]
        assert c["accuracy"]["value"] == (c["n"] - c["n_wrong"]) / c["n"]
        if c["n_test"]:
            assert c["correction_rate"]["value"] == c["n_corrected"] / c["n_test"]
            lo, hi = c["correction_rate"]["lo"], c["correction_rate"]["hi"]
            assert lo <= c["correction_rate"]["value"] <= hi
            cum = [x["cumulative"]["value"] for x in c["correction_by_round"]]
            assert cum == sorted(cum) and abs(cum[-1] - c["correction_rate"]["value"]) < 1e-12
    # reveal in the last round corrects nearly everything; binary does not
    by = {(c["receiver"], c["provider"], c["policy"]): c for c in m["cells"]}
    assert by[("r1", "p1", "d-d-r")]["correction_rate"]["value"] > \
        by[("r1", "p1", "binary")]["correction_rate"]["value"]
    # the leaky provider's detailed feedback is flagged
    assert by[("r1", "p1", "detailed")]["n_leaked"] > 0
    assert by[("r1", "p2", "detailed")]["n_leaked"] == 0


def test_rerun_is_a_noop_and_same_metrics(small_scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli("run", str(small_scenario), "--out", str(out), "--no-progress").returncode == 0
    first = _metrics(out)
    r = run_cli("run", str(small_scenario), "--out", str(out), "--no-progress")
    assert r.returncode == 0 and "0 episodes played" in r.stderr and "(resumed)" in r.stderr
    assert _metrics(out)["cells"] == first["cells"]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    scn = tmp_path / "big.yaml"
    scn.write_text((ROOT / "scenarios" / "interfeedback.yaml").read_text()
                   .replace("params: {skill: 2.5, feedback_quality: 0.9}",
                            "params: {skill: 2.5, feedback_quality: 0.9, latency_ms: 2}"))
    ref = tmp_path / "ref"
    assert run_cli("run", str(scn), "--out", str(ref), "--no-progress",
                   "--limit", "150").returncode == 0
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mmsim.cli", "run", str(scn), "--out",
                             str(out), "--no-progress", "--limit", "150"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "mmsim.sqlite"
    deadline = time.time() + 60
    import sqlite3

    n = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if db.exists():
            try:
                c = sqlite3.connect(db)
                n = c.execute("SELECT COUNT(*) FROM episodes WHERE kind='feedback'").fetchone()[0]
                c.close()
            except sqlite3.Error:
                continue
            if n > 50:
                break
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert n > 0
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress", "--limit", "150")
    assert r.returncode == 0, r.stderr
    assert "(resumed)" in r.stderr
    a, b = _metrics(ref), _metrics(out)
    assert a["counts"] == b["counts"]
    assert a["cells"] == b["cells"] and a["agents"] == b["agents"]
    c = sqlite3.connect(db)
    dup = c.execute("SELECT COUNT(*) - COUNT(DISTINCT episode_id) FROM episodes").fetchone()[0]
    assert dup == 0


def test_broken_scenario_names_file_line_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "scenarios" / "interfeedback.yaml").read_text()
    bad.write_text(text.replace("name: sim-provider-sloppy\n    backend: sim",
                                "name: sim-provider-sloppy\n    backend: simm"))
    r = run_cli("run", str(bad), "--out", str(tmp_path / "x"), "--no-progress")
    assert r.returncode == 2
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if "simm" in t)
    assert f"bad.yaml:{line}" in r.stderr and "providers.1.backend" in r.stderr
    assert "did you mean 'sim'" in r.stderr
    assert not (tmp_path / "x").exists()  # nothing written before validation


def test_bad_inputs_exit_2(tmp_path: Path, small_scenario: Path) -> None:
    y = tmp_path / "y.yaml"
    y.write_text("name: x\ndataset: [unclosed\n")
    r = run_cli("validate", str(y))
    assert r.returncode == 2 and "y.yaml:" in r.stderr and "invalid YAML" in r.stderr
    y.write_text(small_scenario.read_text().replace("protocol: {max_rounds: 3}",
                                                    "protocol: {max_round: 3}"))
    r = run_cli("validate", str(y))
    assert r.returncode == 2 and "protocol.max_round" in r.stderr and "max_rounds" in r.stderr
    r = run_cli("validate", str(small_scenario), "--set", "policies=[binary, nope]")
    assert r.returncode == 2 and "--set policies" in r.stderr and "unknown policy" in r.stderr
    r = run_cli("validate", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "not found" in r.stderr
    r = run_cli("report", str(tmp_path / "nowhere"))
    assert r.returncode == 2
    plug = tmp_path / "boom.py"
    plug.write_text("x = 1\nraise RuntimeError('boom')\n")
    r = run_cli("validate", str(small_scenario), "--plugin", str(plug))
    assert r.returncode == 2 and "boom.py:2" in r.stderr and "boom" in r.stderr


def test_different_scenario_same_dir_refused(small_scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli("run", str(small_scenario), "--out", str(out), "--no-progress",
                   "--limit", "10").returncode == 0
    r = run_cli("run", str(small_scenario), "--out", str(out), "--no-progress",
                "--limit", "12")
    assert r.returncode == 2 and "different scenario" in r.stderr


def test_custom_policy_plugin_and_list(small_scenario: Path, tmp_path: Path) -> None:
    plug = tmp_path / "my_policies.py"
    plug.write_text(
        "from mmsim import Feedback, FeedbackContext, policy\n\n"
        "@policy('hint-then-reveal')\n"
        "async def hint_then_reveal(ctx: FeedbackContext) -> Feedback:\n"
        "    if ctx.round == 1:\n"
        "        hint = await ctx.ask_provider('hint please')\n"
        "        return ctx.feedback(hint, kind='detailed')\n"
        "    return ctx.feedback(f'The answer is {ctx.sample.answer_text}.',\n"
        "                        kind='reveal', reveals_answer=True)\n")
    r = run_cli("list", "--plugin", str(plug))
    assert r.returncode == 0 and "hint-then-reveal" in r.stdout and "binary" in r.stdout
    out = tmp_path / "run"
    r = run_cli("run", str(small_scenario), "--plugin", str(plug), "--set",
                "policies=[binary, hint-then-reveal]", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    cells = {c["policy"]: c for c in _metrics(out)["cells"] if c["receiver"] == "r1"
             and c["provider"] == "p2"}
    assert cells["hint-then-reveal"]["correction_rate"]["value"] > 0.8


def test_default_scenario_runs_fast(tmp_path: Path) -> None:
    t0 = time.time()
    r = run_cli("run", "scenarios/interfeedback.yaml", "--out", str(tmp_path / "d"),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    assert time.time() - t0 < 60
    assert "sim-strong" in r.stdout and "detailed-then-reveal" in r.stdout


def test_validate_checks_agent_params_without_building_anything(tmp_path: Path) -> None:
    """A typo in an agent's params fails `mmsim validate` (exit 2, file:line and field) as
    it would fail `mmsim run`, for every kind and backend, without loading a model, reading
    a key or starting a server."""
    base = ("name: t\ndataset: {name: synthetic, size: 4}\n"
            "policies: [binary]\nproviders:\n  - {name: p, backend: sim}\nreceivers:\n")
    cases = {
        "  - {name: r, backend: sim, params: {skil: 1}}\n":
            ("receivers.0.params.skil", "Extra inputs"),
        "  - {name: r, backend: openai, params: {model: m, base_url: 'http://h:1/v1', "
        "max_retries: -1}}\n":
            ("receivers.0.params.max_retries", "greater than or equal"),
        "  - {name: r, backend: hf, params: {model: /nowhere, max_new_tokens: lots}}\n":
            ("receivers.0.params.max_new_tokens", "valid integer"),
        "  - {name: r, backend: vllm, params: {max_new_tokens: 8}}\n":
            ("receivers.0.params.model", "is required"),
    }
    for i, (agent, (field, why)) in enumerate(cases.items()):
        y = tmp_path / f"s{i}.yaml"
        y.write_text(base + agent)
        r = run_cli("validate", str(y))
        assert r.returncode == 2, (agent, r.stdout)
        assert f"s{i}.yaml:7: {field}" in r.stderr and why in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    # The same agents with good params validate (an hf model that does not exist is not
    # loaded, an openai key is not read, a vllm engine is not started).
    y = tmp_path / "good.yaml"
    y.write_text(base + "  - {name: r, backend: hf, params: {model: /nowhere}}\n"
                 "  - {name: o, backend: openai, params: {model: m, base_url: 'http://h:1/v1', "
                 "api_key_env: NOT_SET_X}}\n"
                 "  - {name: v, backend: vllm, params: {model: /nowhere}}\n")
    r = run_cli("validate", str(y))
    assert r.returncode == 0, r.stderr
    # Other kinds: the kind's own sim parameters.
    v = tmp_path / "video.yaml"
    v.write_text("name: v\nkind: video\nmodels:\n  - {name: m, backend: sim, "
                 "params: {skil: 1}}\n")
    r = run_cli("validate", str(v))
    assert r.returncode == 2 and "models.0.params.skil" in r.stderr, r.stderr
    c = tmp_path / "cls.yaml"
    c.write_text("name: c\nkind: classification\nmodels:\n  - {name: m, backend: sim, "
                 "params: {nope: 1}}\n")
    r = run_cli("validate", str(c))
    assert r.returncode == 2 and "models.0.params.nope" in r.stderr, r.stderr


def test_version_help_and_list_show_text_literally() -> None:
    from mmsim import __version__

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"mmsim {__version__}")
    env_cols = {"COLUMNS": "100"}
    r = subprocess.run([sys.executable, "-m", "mmsim.cli", "run", "--help"], text=True,
                       capture_output=True, cwd=ROOT, env={**os.environ, **env_cols,
                                                           "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0
    assert "mmsim[ray]" in r.stdout and "<bool>" not in r.stdout
    assert "--progress / --no-progress" in r.stdout and "--wide / --no-wide" in r.stdout
    assert "--allow-failed" in r.stdout and "--log-format" in r.stdout
    # plain metavars in every command's help: no typer type placeholders
    for cmd in ("run", "report", "compare", "export", "fit", "plan", "validate", "list",
                "data inspect"):
        r = subprocess.run([sys.executable, "-m", "mmsim.cli", *cmd.split(), "--help"],
                           text=True, capture_output=True, cwd=ROOT,
                           env={**os.environ, **env_cols, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 0, r.stderr
        assert not re.search(r"<(str|int|float|bool|path|list\[)[^>]*>|\{[a-z_]+\}",
                             r.stdout), (cmd, r.stdout)
    r = subprocess.run([sys.executable, "-m", "mmsim.cli", "report", "--help"], text=True,
                       capture_output=True, cwd=ROOT, env={**os.environ, **env_cols,
                                                           "PYTHONPATH": str(ROOT)})
    assert "Usage: python -m mmsim.cli report [OPTIONS] RUN_DIRS..." in r.stdout or \
        "report [OPTIONS] RUN_DIRS..." in r.stdout, r.stdout
    assert "--limit N" in subprocess.run(
        [sys.executable, "-m", "mmsim.cli", "run", "--help"], text=True, capture_output=True,
        cwd=ROOT, env={**os.environ, **env_cols, "PYTHONPATH": str(ROOT)}).stdout
    r = run_cli("list")
    assert r.returncode == 0
    assert "mmsim[hf]" in r.stdout or "mmsim[vllm]" in r.stdout, r.stdout
    for section in ("protocols", "video datasets", "classification datasets", "encoders"):
        assert section in r.stdout
    for name in ("seed-bench-r1", "synthetic-video", "interfeedback", "video"):
        assert name in r.stdout
    # a description spread over two docstring lines is shown whole, not cut mid-sentence
    flat = " ".join(r.stdout.replace("│", " ").split())
    from mmsim.protocols.video.data import VIDEO_DATASETS

    for _, doc in VIDEO_DATASETS.describe():
        assert doc.rstrip().endswith((".", ")")), doc
        assert " ".join(doc.split()) in flat


def test_run_fits_the_terminal_and_exit_codes(tmp_path: Path) -> None:
    """COLUMNS is honoured with stdout piped; permanently failed episodes exit 4
    (--allow-failed: 0); logs are human lines unless --log-format json."""
    from rich.cells import cell_len

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for cols in ("80", "120"):
        r = subprocess.run([sys.executable, "-m", "mmsim.cli", "run",
                            "scenarios/interfeedback.yaml", "--limit", "10", "--out",
                            str(tmp_path / "d"), "--no-progress"], text=True,
                           capture_output=True, cwd=ROOT, env={**env, "COLUMNS": cols},
                           timeout=120)
        assert r.returncode == 0, r.stderr
        widths = [cell_len(x) for x in r.stdout.splitlines()]
        assert max(widths) <= int(cols) and max(widths) > int(cols) - 10
        assert r.stdout.startswith("interfeedback: best of 24 cells is ")
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        "name: failing\ndataset: {name: synthetic, size: 3, seed: 1}\nreceivers:\n"
        "  - {name: r, backend: openai, params: {model: m, base_url: 'http://127.0.0.1:9/v1',"
        " max_retries: 0, timeout_s: 0.5}}\nproviders:\n  - {name: p, backend: sim}\n"
        "policies: [binary]\n")
    r = run_cli("run", str(failing), "--out", str(tmp_path / "f"), "--no-progress",
                "--log-level", "info")
    assert r.returncode == 4, r.stderr
    assert "3 episodes failed permanently" in r.stderr and "Traceback" not in r.stderr
    assert not any(x.lstrip().startswith("{") for x in r.stderr.splitlines())
    assert "episode.failed" in r.stderr
    r = run_cli("run", str(failing), "--out", str(tmp_path / "f2"), "--no-progress",
                "--allow-failed", "--log-format", "json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stderr.splitlines()]  # every stderr line is JSON
    assert [x["event"] for x in lines].count("episode.failed") == 3
    assert any(x["event"] == "run.summary" for x in lines)
    r = run_cli("run", str(failing), "--out", str(tmp_path / "f3"), "--log-format", "xml")
    assert r.returncode == 2 and "--log-format" in r.stderr
