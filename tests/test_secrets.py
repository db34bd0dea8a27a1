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


PLAIN_KEY = "plainvalue-0123456789ZZ"  # no key format, no secret-looking variable name
LEAKY_BACKEND = """
import os
import structlog
from mmsim import backend
from mmsim.backends.sim import SimBackend
from mmsim.errors import InfrastructureError


class Leaky(SimBackend):
    '''A backend whose errors and replies echo its key, as a hosted API's 401 body does.'''

    def __init__(self, name, params):
        params = dict(params)
        self._key = os.environ[params.pop("api_key_env")]
        super().__init__(name, params)

    async def generate(self, request):
        c = await super().generate(request)
        structlog.get_logger("plugin").warning("calling", auth=f"Bearer {self._key}")
        if request.seed % 2:
            raise InfrastructureError(
                f"401 Incorrect API key provided: Bearer {self._key}. "
                f"request headers: {{'Authorization': 'Bearer {os.environ['OPENAI_API_KEY']}'}}"
                f" key={self._key} other=sk-proj-abcdefABCDEF0123456789")
        return type(c)(text=c.text + f" (I was called with {self._key})", usage=c.usage,
                       latency_s=c.latency_s, simulated=c.simulated, meta=c.meta)


@backend("leaky-sim")
def make(name, params):
    return Leaky(name, params)
"""


def test_keys_echoed_by_a_backend_are_redacted_everywhere(tmp_path: Path) -> None:
    """An error body or a reply that echoes the key (the value of ``api_key_env``, an
    ``Authorization`` header, an ``sk-`` key) reaches no artefact: not the store's
    ``episodes.error`` or messages, not the logs, reports, exports or stderr."""
    plug = tmp_path / "leaky.py"
    plug.write_text(LEAKY_BACKEND)
    scn = tmp_path / "s.yaml"
    scn.write_text(SMALL.replace("size: 40", "size: 12").replace(
        "{name: r1, backend: sim, params: {skill: 0.0}}",
        "{name: r1, backend: leaky-sim, params: {skill: 0.0, api_key_env: PROVIDER_X}}"))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": OPENAI_KEY,
           "PROVIDER_X": PLAIN_KEY}

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "mmsim.cli", *args], capture_output=True,
                              cwd=tmp_path, env=env, timeout=120)

    outputs: list[tuple[str, bytes]] = []
    r = cli("run", str(scn), "--out", str(out), "--no-progress", "--plugin", str(plug),
            "--log-level", "debug")
    assert r.returncode == 4, r.stderr.decode()  # episodes failed permanently (401s)
    outputs += [("run stdout", r.stdout), ("run stderr", r.stderr)]
    assert b"<redacted>" in r.stderr  # the log line was there, redacted
    for args in (["report", str(out), "--format", "json"],
                 ["report", str(out), "--format", "html", "-o", str(tmp_path / "r.html")],
                 ["export", str(out), "--format", "jsonl", "--messages"],
                 ["export", str(out), "--format", "csv"]):
        r = cli(*args)
        assert r.returncode == 0, (args, r.stderr.decode())
        outputs += [(" ".join(args[:2]), r.stdout + r.stderr)]
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != plug]
    outputs += [(str(p.relative_to(tmp_path)), p.read_bytes()) for p in files]
    import sqlite3

    c = sqlite3.connect(out / "mmsim.sqlite")
    try:
        errors = [e for (e,) in c.execute("SELECT error FROM episodes WHERE error IS NOT NULL")]
    finally:
        c.close()
    assert errors and all("Bearer <redacted>" in e for e in errors), errors[:2]
    for what, blob in outputs:
        for key in (OPENAI_KEY, PLAIN_KEY, "sk-proj-abcdefABCDEF0123456789"):
            assert key.encode() not in blob, f"{key} leaked into {what}"


def test_server_secrets_come_from_the_environment(tmp_path: Path) -> None:
    """A ``servers:`` entry may not hold a credential in ``env`` or ``args``; ``env_from``
    names the variable instead, and the error does not echo the value."""
    scn = tmp_path / "s.yaml"
    base = SMALL.replace("policies:", "servers:\n  - name: s1\n    command: [python, -m, "
                         "http.server, '{port}']\n    EXTRA\npolicies:")
    for extra, what in [(f"args: [--api-key, {TEST_KEY}]", "args holds a credential"),
                        (f"args: ['--token={TEST_KEY}']", "args holds a credential"),
                        (f"env: {{VLLM_API_KEY: {TEST_KEY}}}", "env.VLLM_API_KEY holds"),
                        (f"env: {{MODE: {OPENAI_KEY}}}", "env.MODE holds")]:
        scn.write_text(base.replace("EXTRA", extra))
        r = _cli("validate", str(scn), cwd=tmp_path)
        assert r.returncode == 2, (extra, r.stderr.decode())
        assert what in r.stderr.decode() and "servers.0" in r.stderr.decode()
        _assert_clean(r.stdout + r.stderr, extra)
    scn.write_text(base.replace("EXTRA", "env_from: {VLLM_API_KEY: MMSIM_TEST_KEY}"))
    r = _cli("validate", str(scn), cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()


def test_scrub_patterns() -> None:
    from mmsim.redaction import register_secret, scrub

    register_secret("a-registered-value-42")
    cases = {
        "Incorrect API key provided: Bearer sk-proj-abcDEF1234567890xyz": "Bearer <redacted>",
        '{"Authorization": "Bearer abcdefgh12345678"}': '{"Authorization": "Bearer <redacted>"}',
        "vllm serve m --api-key s3cretvalue99 --port 1": "--api-key <redacted> --port 1",
        "GET /v1?api_key=abcd1234&y=2": "?api_key=<redacted>&y=2",
        "token hf_abcdefghijklmnop here": "token <redacted> here",
        "x a-registered-value-42 y": "x <redacted> y",
        "AKIAABCDEFGHIJKLMNOP": "<redacted>",
    }
    for text, want in cases.items():
        got = scrub(text)
        assert want in got, (text, got)
        assert scrub(got) == got  # idempotent
    for text in ("max_tokens: 12, --max-tokens 5", "desk-lamp sk-1", "a normal sentence"):
        assert scrub(text) == text


def test_readers_redact_stores_written_before_redaction(tmp_path: Path) -> None:
    """A store that already holds a key (written before the redaction pass existed) is
    shown redacted by ``export`` and ``report``."""
    import sqlite3

    scn = tmp_path / "s.yaml"
    scn.write_text(SMALL.replace("size: 40", "size: 6"))
    out = tmp_path / "run"
    assert _cli("run", str(scn), "--out", str(out), "--no-progress", cwd=tmp_path
                ).returncode == 0
    leaked = f"401 Incorrect API key provided: Bearer {OPENAI_KEY}"
    c = sqlite3.connect(out / "mmsim.sqlite")
    c.execute("UPDATE episodes SET status='failed', error=? WHERE episode_id IN "
              "(SELECT episode_id FROM episodes LIMIT 3)", (leaked,))
    c.execute("UPDATE messages SET payload=json_set(payload, '$.text', ?) WHERE kind="
              "'response'", (leaked,))
    c.commit()
    c.close()
    for args in (["export", str(out), "-o", str(tmp_path / "x.jsonl"), "--messages"],
                 ["export", str(out), "--format", "csv", "-o", "-"],
                 ["report", str(out), "--format", "json"],
                 ["report", str(out), "--format", "html", "-o", str(tmp_path / "r.html")]):
        r = _cli(*args, cwd=tmp_path)
        assert r.returncode == 0, r.stderr.decode()
        _assert_clean(r.stdout + r.stderr, " ".join(args[:3]))
    for f in ("x.jsonl", "x.messages.jsonl", "r.html"):
        blob = (tmp_path / f).read_bytes()
        _assert_clean(blob, f)
    assert b"<redacted>" in (tmp_path / "x.messages.jsonl").read_bytes()
    r = _cli("export", str(out), "-o", "-", cwd=tmp_path)
    assert b"Bearer <redacted>" in r.stdout
