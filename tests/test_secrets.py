"""Secrets never reach a run's artefacts.

Fake keys are put in the environment (``OPENAI_API_KEY``, ``MMSIM_TEST_KEY``) and an agent
names one with ``api_key_env`` (read by a plugin backend, as real backends do); the test runs
a scenario (debug logging on) and the report commands, then greps every artefact for the key
values: the store file and its WAL/SHM, every file under the run directory, stdout and stderr
of every command, the JSON and HTML reports and the JSONL/CSV exports. A key written
literally into a scenario (``api_key:``, ``token:``, ``password:`` ... at any depth, or
through ``--set``) is refused with exit 2, and the refusal does not echo the value.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SMALL

OPENAI_KEY = "sk-fake-OPENAI-0123456789abcdefXYZ"
TEST_KEY = "mmsim-test-SECRET-9f8e7d6c5b4a"
KEYS = (OPENAI_KEY, TEST_KEY)

KEYED_BACKEND = """
import os
from mmsim import backend
from mmsim.backends.sim import SimBackend


class KeyedSim(SimBackend):
    '''A sim agent that, like a hosted-model backend, holds an API key from the env.'''

    def __init__(self, name, params):
        params = dict(params)
        self._key = os.environ[params.pop("api_key_env")]
        super().__init__(name, params)


@backend("keyed-sim")
def make(name, params):
    return KeyedSim(name, params)
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": OPENAI_KEY,
           "MMSIM_TEST_KEY": TEST_KEY}
    return subprocess.run([sys.executable, "-m", "mmsim.cli", *args], capture_output=True,
                          cwd=cwd, env=env, timeout=120)


def _assert_clean(blob: bytes, what: str) -> None:
    for key in KEYS:
        for form in (key.encode(), key.encode("utf-16-le")):
            assert form not in blob, f"a key leaked into {what}"


def test_no_key_in_any_artefact(tmp_path: Path) -> None:
    plug = tmp_path / "keyed.py"
    plug.write_text(KEYED_BACKEND)
    scn = tmp_path / "s.yaml"
    scn.write_text(SMALL.replace("size: 40", "size: 12").replace(
        "{name: r1, backend: sim, params: {skill: 0.0}}",
        "{name: r1, backend: keyed-sim, params: {skill: 0.0, api_key_env: MMSIM_TEST_KEY}}"))
    out = tmp_path / "run"
    outputs: list[tuple[str, bytes]] = []
    r = _cli("run", str(scn), "--out", str(out), "--no-progress", "--plugin", str(plug),
             "--log-level", "debug", cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    outputs += [("run stdout", r.stdout), ("run stderr", r.stderr)]
    for fmt in ("table", "json"):
        r = _cli("report", str(out), "--format", fmt, cwd=tmp_path)
        assert r.returncode == 0, r.stderr.decode()
        outputs += [(f"report {fmt} stdout", r.stdout), (f"report {fmt} stderr", r.stderr)]
    html = tmp_path / "report.html"
    r = _cli("report", str(out), "--format", "html", "-o", str(html), cwd=tmp_path)
    if r.returncode == 0:  # the HTML report, where this build has it
        outputs += [("report html", html.read_bytes()), ("report html stderr", r.stderr)]
    for fmt in ("jsonl", "csv"):  # exports (written under the run dir, grepped below)
        r = _cli("export", str(out), "--format", fmt, "--messages", cwd=tmp_path)
        if r.returncode == 0:
            outputs += [(f"export {fmt} stdout", r.stdout), (f"export {fmt} stderr", r.stderr)]
    # the store is read while the WAL may still hold pages: read every file as bytes
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != plug]
    assert any(p.name == "mmsim.sqlite" for p in files)
    for p in files:
        outputs.append((str(p.relative_to(tmp_path)), p.read_bytes()))
    assert len(outputs) >= 8
    for what, blob in outputs:
        _assert_clean(blob, what)


def test_literal_keys_are_refused_without_echoing_them(tmp_path: Path) -> None:
    scn = tmp_path / "s.yaml"
    cases = [
        (f"{{skill: 0.0, api_key: {OPENAI_KEY}}}", "receivers.0.params.api_key"),
        (f"{{skill: 0.0, auth: {{password: {TEST_KEY}}}}}", "receivers.0.params.auth.password"),
        (f"{{skill: 0.0, OPENAI_API_KEY: {OPENAI_KEY}}}", "receivers.0.params.OPENAI_API_KEY"),
    ]
    for params, field in cases:
        scn.write_text(SMALL.replace("params: {skill: 0.0}", f"params: {params}"))
        r = _cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress", cwd=tmp_path)
        assert r.returncode == 2, r.stderr.decode()
        err = r.stderr.decode()
        assert field in err and "holds a credential" in err and "_env" in err
        _assert_clean(r.stdout + r.stderr, f"the error for {field}")
        assert not (tmp_path / "run").exists()
    scn.write_text(SMALL)
    r = _cli("validate", str(scn), "--set", f"providers.0.params.token={TEST_KEY}",
             cwd=tmp_path)
    assert r.returncode == 2 and b"holds a credential" in r.stderr
    assert b"token=<redacted>" in r.stderr
    _assert_clean(r.stdout + r.stderr, "the --set error")
    # a key-like name that is not a credential is fine (max_tokens, tokens_per_char)
    scn.write_text(SMALL.replace("params: {skill: 0.0}",
                                 "params: {skill: 0.0, tokens_per_char: 0.3}"))
    assert _cli("validate", str(scn), cwd=tmp_path).returncode == 0
