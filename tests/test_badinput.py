"""Bad-input corpus: every case makes ``mmsim`` exit 2 with one line on stderr that names
the file, the line (or row) and the field, prints no traceback and leaves no partial run
(no run directory, or a store that is byte-for-byte untouched).

Scenario cases are files in ``tests/badinput/scenarios/`` (line 1 says what the error must
contain; ``tests/badinput/make_scenarios.py`` writes them). Data files, images, plugins,
``--set`` values and run directories are generated here (small files, no committed blobs).
The CLI runs in-process (Typer's runner) for speed; ``test_subprocess_stderr_is_one_line``
checks a few cases against a real process's stderr.

Policies that raise during a run are plugin bugs: the run stops with exit 2 naming the
plugin file, line and policy; finished episodes are kept and the run is marked ``failed``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import SMALL, run_cli
from PIL import Image as PILImage
from typer.testing import CliRunner

from mmsim.cli import app

HERE = Path(__file__).parent / "badinput"
SCENARIOS = sorted((HERE / "scenarios").glob("*.yaml"))
RUNNER = CliRunner()

GOOD = SMALL.replace("size: 40", "size: 6")


def _expects(path: Path) -> list[str]:
    head = path.read_text().split("\n", 1)[0]
    assert head.startswith("# expect: "), path
    return [e.strip() for e in head.removeprefix("# expect: ").split("|")]


def check_error(result: object, expects: list[str], out: Path | None) -> str:
    """Exit 2, one line, every expected part in it, no traceback, no run directory."""
    code = getattr(result, "exit_code", None)
    stderr: str = getattr(result, "stderr", "")
    stdout: str = getattr(result, "stdout", "")
    exc = getattr(result, "exception", None)
    assert exc is None or isinstance(exc, SystemExit), f"raised {exc!r}\n{stderr}"
    assert code == 2, f"exit {code}: {stderr}{stdout}"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in stderr + stdout
    for e in expects:
        assert e in line, f"{e!r} not in {line!r}"
    if out is not None:
        assert not out.exists(), f"a run directory was left: {sorted(out.rglob('*'))}"
    return line


def invoke(*args: str) -> object:
    return RUNNER.invoke(app, list(args), catch_exceptions=True)


@pytest.mark.parametrize("case", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_bad_scenario_file(case: Path, tmp_path: Path) -> None:
    scn = tmp_path / case.name
    shutil.copy(case, scn)
    out = tmp_path / "run"
    check_error(invoke("run", str(scn), "--out", str(out), "--no-progress"), _expects(case),
                out)


# ---------------------------------------------------------------------------- generated


def png_bytes(size: tuple[int, int] = (16, 12), noise: bool = False) -> bytes:
    img = PILImage.new("RGB", size, "red")
    if noise:
        img = PILImage.frombytes("RGB", size, bytes((i * 7919) % 251 for i in
                                                    range(size[0] * size[1] * 3)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def mv_row(sid: str = "1", **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "sample_index": sid, "problem_index": sid, "problem_version": "Text Lite",
        "question": "Which?\nChoices:\nA:1\nB:2\nC:3\nD:4", "answer": "B",
        "question_type": "multi-choice", "image": f"img{sid}.png", "query_wo": "Which?",
        "query_cot": "Which?", "question_for_eval": "Which?"}
    row.update(kw)
    return row


def mv_scenario(d: Path, data: str = "testmini.json") -> Path:
    scn = d / "mv.yaml"
    scn.write_text(GOOD.replace("dataset: {name: synthetic, size: 6, seed: 1}",
                                f"dataset: {{name: mathverse, path: {data}}}"))
    return scn


def write_rows(d: Path, rows: list[object], images: bool = True) -> None:
    for r in rows:
        img = r.get("image") if isinstance(r, dict) else None
        if images and isinstance(img, str) and img and not (d / img).exists():
            (d / img).write_bytes(png_bytes())
    (d / "testmini.json").write_text(json.dumps(rows))


@dataclass
class Case:
    """A generated case: ``setup(dir)`` writes the files and returns the CLI arguments."""

    id: str
    setup: Callable[[Path], list[str]]
    expects: list[str]
    leaves_run: bool = False  # the run dir existed before (checked as untouched instead)
    extra: list[str] = field(default_factory=list)


def _rows_case(cid: str, rows: Callable[[Path], list[object]], expects: list[str],
               images: bool = True) -> Case:
    def setup(d: Path) -> list[str]:
        write_rows(d, rows(d), images)
        return ["run", str(mv_scenario(d))]
    return Case(cid, setup, expects)


def _json_text_case(cid: str, data: bytes, expects: list[str]) -> Case:
    def setup(d: Path) -> list[str]:
        (d / "testmini.json").write_bytes(data)
        return ["run", str(mv_scenario(d))]
    return Case(cid, setup, expects)


def _image_case(cid: str, write: Callable[[Path], None], expects: list[str]) -> Case:
    def rows(d: Path) -> list[object]:
        (d / "img1.png").write_bytes(png_bytes())
        write(d / "img2.png")
        return [mv_row("1"), mv_row("2")]
    return _rows_case(cid, rows, ["testmini.json, row 1 (id '2')", ": image:", *expects],
                      images=False)


def _mkdir(p: Path) -> None:
    p.mkdir()


def _parquet_case(cid: str, data: Callable[[Path], bytes], expects: list[str]) -> Case:
    def setup(d: Path) -> list[str]:
        (d / "testmini.parquet").write_bytes(data(d))
        return ["run", str(mv_scenario(d, "testmini.parquet"))]
    return Case(cid, setup, expects)


def _valid_parquet(d: Path) -> bytes:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    rows = [{k: v for k, v in mv_row(str(i)).items() if k != "image"} for i in range(40)]
    pq.write_table(pa.Table.from_pylist(rows), d / "full.parquet")
    return (d / "full.parquet").read_bytes()


def _mmmu_case(cid: str, row: dict[str, object], expects: list[str]) -> Case:
    def setup(d: Path) -> list[str]:
        pq = pytest.importorskip("pyarrow.parquet")
        pa = pytest.importorskip("pyarrow")
        folder = d / "mmmu" / "standard (4 options)"
        folder.mkdir(parents=True)
        base = {"id": "validation_Art_1", "question": "Which colour?",
                "options": "['red', 'blue', 'green', 'grey']", "explanation": "",
                "img_type": "['Photos']", "answer": "A", "topic_difficulty": "Easy",
                "subject": "Art"}
        good = dict(base)
        bad = {**base, "id": "validation_Art_2", **row}
        pq.write_table(pa.Table.from_pylist([good, bad]),
                       folder / "test-00000-of-00001.parquet")
        scn = d / "mmmu.yaml"
        scn.write_text(GOOD.replace("dataset: {name: synthetic, size: 6, seed: 1}",
                                    "dataset: {name: mmmu_pro, path: mmmu, "
                                    "config: 'standard (4 options)'}"))
        return ["run", str(scn)]
    return Case(cid, setup, ["test-00000-of-00001.parquet, row 1", *expects])


def _plugin_case(cid: str, code: str, expects: list[str], *, policy: str | None = None,
                 name: str = "plug.py") -> Case:
    """A plugin file; the error names it (or, with ``policy``, the ``--set`` naming it)."""
    def setup(d: Path) -> list[str]:
        (d / name).write_text(code)
        scn = d / "s.yaml"
        scn.write_text(GOOD)
        args = ["run", str(scn), "--plugin", str(d / name)]
        if policy:
            args += ["--set", f"policies=[{policy}]"]
        return args
    return Case(cid, setup, [f"--set policies=[{policy}]" if policy else name, *expects])


def _set_case(cid: str, assignment: str, expects: list[str]) -> Case:
    def setup(d: Path) -> list[str]:
        (d / "s.yaml").write_text(GOOD)
        return ["run", str(d / "s.yaml"), "--set", assignment]
    return Case(cid, setup, expects)


def _broken_backend(d: Path) -> list[str]:
    """A plugin backend that raises while it is built: a plugin bug, named like a field."""
    (d / "plug.py").write_text("from mmsim import backend\n\n\n@backend('badinput-broken')\n"
                               "def make(name, params):\n    raise KeyError('model')\n")
    (d / "s.yaml").write_text(GOOD)
    return ["run", str(d / "s.yaml"), "--plugin", str(d / "plug.py"), "--set",
            "receivers.0.backend=badinput-broken"]


def _limit_zero(d: Path) -> list[str]:
    (d / "s.yaml").write_text(GOOD)
    return ["run", str(d / "s.yaml"), "--limit", "0"]


def _json_special_case(cid: str, make: Callable[[Path], None], expects: list[str]) -> Case:
    def setup(d: Path) -> list[str]:
        make(d / "testmini.json")
        return ["run", str(mv_scenario(d))]
    return Case(cid, setup, expects)


def _big_scenario(d: Path) -> list[str]:
    (d / "s.yaml").write_text(GOOD + "# " + "x" * (4 << 20) + "\n")
    return ["run", str(d / "s.yaml")]


def _scenario_bytes_case(cid: str, data: bytes, expects: list[str]) -> Case:
    def setup(d: Path) -> list[str]:
        (d / "s.yaml").write_bytes(data)
        return ["run", str(d / "s.yaml")]
    return Case(cid, setup, expects)


CASES: list[Case] = [
    # ---- data files (MathVerse JSON / parquet, MMMU-Pro parquet)
    _json_text_case("json_syntax_error", b'[\n {"sample_index": "1",\n  "answer": }\n]',
                    ["testmini.json:3", "not valid JSON"]),
    _json_text_case("json_not_utf8", b'[\n {"question": "caf\xe9"}\n]',
                    ["testmini.json:2", "not UTF-8"]),
    _json_text_case("json_not_a_list", b'{"rows": []}', ["testmini.json", "JSON list"]),
    _json_text_case("json_empty_list", b"[]", ["testmini.json", "empty"]),
    _json_text_case("json_zero_bytes", b"", ["testmini.json:1", "not valid JSON"]),
    _json_text_case("json_truncated", json.dumps([mv_row()]).encode()[:-20],
                    ["testmini.json:1", "not valid JSON"]),
    _rows_case("row_not_an_object", lambda d: [mv_row(), ["a", "list"]],
               ["testmini.json, row 1", "expected an object"]),
    _rows_case("duplicate_sample_ids", lambda d: [mv_row("1"), mv_row("2"), mv_row("1")],
               ["testmini.json, row 2 (id '1')", ": sample_index:", "duplicate"]),
    _rows_case("answer_not_among_options", lambda d: [mv_row("1"), mv_row("2", answer="F")],
               ["testmini.json, row 1 (id '2')", ": answer:", "not among the options"]),
    _rows_case("answer_not_a_letter", lambda d: [mv_row("1", answer="blue")],
               ["testmini.json, row 0 (id '1')", ": answer:", "not an option letter"]),
    _rows_case("answer_empty", lambda d: [mv_row("1", answer="")],
               ["testmini.json, row 0 (id '1')", ": answer:", "empty"]),
    _rows_case("missing_column", lambda d: [{k: v for k, v in mv_row().items()
                                             if k != "question_type"}],
               ["testmini.json", ": question_type:", "missing column"]),
    _rows_case("bad_question_type", lambda d: [mv_row("1", question_type="essay")],
               ["testmini.json, row 0 (id '1')", ": question_type:"]),
    _rows_case("empty_sample_index", lambda d: [mv_row(""), mv_row("2")],
               ["testmini.json, row 0", ": sample_index:", "empty"]),
    _image_case("image_missing", lambda p: None, ["not readable"]),
    _image_case("image_zero_bytes", lambda p: p.write_bytes(b""), ["unreadable image"]),
    _image_case("image_corrupt", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nnot a png" * 9),
                ["unreadable image"]),
    _image_case("image_truncated", lambda p: p.write_bytes(png_bytes((64, 64), True)[:300]),
                ["unreadable image"]),
    _image_case("image_decompression_bomb",
                lambda p: p.write_bytes(png_header_only(200_000, 200_000)),
                ["unreadable image", "DecompressionBomb"]),
    _image_case("image_large_header",
                lambda p: p.write_bytes(png_header_only(12_000, 9_000)),
                ["unreadable image", "DecompressionBombWarning"]),
    _image_case("image_not_an_image", lambda p: p.write_text("hello, I am text"),
                ["unreadable image"]),
    _image_case("image_is_a_directory", _mkdir, ["not readable"]),
    # ---- non-regular files: read until memory runs out, or wait forever, if not refused
    _image_case("image_is_a_fifo", lambda p: os.mkfifo(p), ["not readable", "named pipe"]),
    _image_case("image_is_dev_zero", lambda p: p.symlink_to("/dev/zero"),
                ["not readable", "a device"]),
    _json_special_case("json_is_a_fifo", lambda p: os.mkfifo(p), ["testmini.json"]),
    _json_special_case("json_is_dev_zero", lambda p: p.symlink_to("/dev/zero"),
                       ["testmini.json"]),
    Case("scenario_over_4_mib", lambda d: _big_scenario(d), ["s.yaml", "limit of 4 MiB"]),
    _parquet_case("parquet_corrupt", lambda d: b"PAR1 this is not parquet PAR1",
                  ["testmini.parquet", "not a readable parquet file"]),
    _parquet_case("parquet_truncated", lambda d: _valid_parquet(d)[:-200],
                  ["testmini.parquet", "not a readable parquet file"]),
    _parquet_case("parquet_zero_bytes", lambda d: b"",
                  ["testmini.parquet", "not a readable parquet file"]),
    _mmmu_case("mmmu_options_not_a_list", {"options": "red, blue"},
               [": options:", "not a Python list repr"]),
    _mmmu_case("mmmu_answer_not_among_options", {"answer": "F"},
               [": answer:", "not among the options"]),
    _mmmu_case("mmmu_empty_options", {"options": "[]"}, [": options:", "empty"]),
    # ---- scenario bytes
    _scenario_bytes_case("scenario_not_utf8", GOOD.replace("seed: 3", "seed: 3 # caf\xe9")
                         .encode("latin-1"), ["s.yaml:3", "not UTF-8"]),
    _scenario_bytes_case("scenario_binary_garbage", bytes(range(256)) * 4,
                         ["s.yaml:2", "not UTF-8"]),
    _scenario_bytes_case("scenario_nul_bytes", b"name: x\nseed: \x00\n",
                         ["s.yaml:2", "invalid YAML", "#x0000"]),
    # ---- plugins
    _plugin_case("plugin_raises_on_import", "x = 1\nraise RuntimeError('boom on import')\n",
                 ["plug.py:2", "RuntimeError: boom on import"]),
    _plugin_case("plugin_syntax_error", "def f(:\n    pass\n", ["plug.py:1", "syntax error"]),
    _plugin_case("plugin_registers_taken_name",
                 "from mmsim import policy\n\n\n@policy('binary')\n"
                 "async def mine(ctx):\n    return None\n",
                 ["plug.py:4", "policy 'binary' is already registered"]),
    _plugin_case("plugin_not_python", "print('hi')\n", ["plug.txt", "not a Python file"],
                 name="plug.txt"),
    _plugin_case("plugin_import_error", "import no_such_module_here\n",
                 ["plug.py:1", "ModuleNotFoundError"]),
    _plugin_case("plugin_sys_exit", "import sys\n\nsys.exit(0)\n",
                 ["plug.py:3", "SystemExit: sys.exit(0)"]),
    _plugin_case("plugin_sys_exit_code", "import sys\n\nsys.exit('bye')\n",
                 ["plug.py:3", "SystemExit: sys.exit('bye')"]),
    _plugin_case("plugin_keyboard_interrupt", "raise KeyboardInterrupt\n",
                 ["plug.py:1", "KeyboardInterrupt"]),
    _plugin_case("plugin_base_exception", "class Odd(BaseException):\n    pass\n\n\n"
                 "raise Odd('odd')\n", ["plug.py:5", "Odd: odd"]),
    _plugin_case("policy_name_typo",
                 "from mmsim import policy\n\n\n@policy('badinput-typo')\n"
                 "async def mine(ctx):\n    return ctx.feedback('x', kind='binary')\n",
                 ["did you mean 'badinput-typo'", "policies.0"], policy="badinput-typp"),
    Case("backend_plugin_raises_in_init", _broken_backend,
         ["--set receivers.0.backend=badinput-broken", "receivers.0.backend",
          "backend 'badinput-broken' raised KeyError"]),
    # ---- --set and flags
    _set_case("set_without_equals", "protocol.max_rounds", ["--set protocol.max_rounds",
                                                            "dotted.key=value"]),
    _set_case("set_value_bad_yaml", "seed=[1, 2", ["--set seed=[1, 2", "not valid YAML"]),
    _set_case("set_wrong_type", "protocol.max_rounds=abc",
              ["--set protocol.max_rounds=abc", "protocol.max_rounds", "integer"]),
    _set_case("set_no_such_list_item", "receivers.5.name=x",
              ["--set receivers.5.name=x", "no list item '5'"]),
    _set_case("set_unknown_key", "protocl.max_rounds=2",
              ["--set protocl.max_rounds=2", "did you mean 'protocol'"]),
    _set_case("set_empty_key", "=3", ["--set =3", "empty key"]),
    _set_case("set_through_a_scalar", "seed.x=1", ["--set seed.x=1", "not a mapping"]),
    _set_case("set_secret_literal", "receivers.0.params.token=abcdef123456",
              ["--set receivers.0.params.token", "holds a credential"]),
    Case("limit_zero", _limit_zero, ["--limit", "must be >= 1"]),
    Case("scenario_missing", lambda d: ["run", str(d / "missing.yaml")],
         ["missing.yaml", "not found"]),
    Case("scenario_is_a_directory", lambda d: ["run", str(d)], ["scenario file not found"]),
    Case("report_no_store", lambda d: ["report", str(d / "nowhere")],
         ["nowhere", "no mmsim run here"]),
    Case("report_bad_format", lambda d: ["report", str(d), "--format", "xml"],
         ["--format", "must be"]),
]

@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    args = case.setup(d)
    out = tmp_path / "run"
    if args[0] == "run":
        args = [*args, "--out", str(out), "--no-progress"]
    check_error(invoke(*args), case.expects, out)


# ---------------------------------------------------------------------------- run dirs


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _store_rows(db: Path) -> tuple[object, ...]:
    c = sqlite3.connect(db)
    try:
        return (c.execute("SELECT * FROM runs").fetchall(),
                c.execute("SELECT episode_id, status FROM episodes ORDER BY 1").fetchall(),
                c.execute("SELECT COUNT(*) FROM messages").fetchone())
    finally:
        c.close()


def test_run_dir_of_another_scenario_is_left_untouched(tmp_path: Path) -> None:
    scn = tmp_path / "s.yaml"
    scn.write_text(GOOD)
    out = tmp_path / "run"
    assert invoke("run", str(scn), "--out", str(out), "--no-progress").exit_code == 0  # type: ignore[attr-defined]
    db = out / "mmsim.sqlite"
    before, rows = _digest(db), _store_rows(db)
    files = sorted(p.name for p in out.iterdir())
    line = check_error(invoke("run", str(scn), "--out", str(out), "--no-progress", "--set",
                              "seed=4"), [str(out), "different scenario"], None)
    assert "--out" in line
    assert _digest(db) == before and _store_rows(db) == rows
    assert sorted(p.name for p in out.iterdir()) == files


def test_corrupt_store_is_left_untouched(tmp_path: Path) -> None:
    scn = tmp_path / "s.yaml"
    scn.write_text(GOOD)
    out = tmp_path / "run"
    out.mkdir()
    db = out / "mmsim.sqlite"
    db.write_bytes(b"this is not an SQLite database" * 100)
    before = _digest(db)
    check_error(invoke("run", str(scn), "--out", str(out), "--no-progress"),
                ["mmsim.sqlite", "cannot open the run store"], None)
    check_error(invoke("report", str(out)), ["mmsim.sqlite", "cannot open the run store"],
                None)
    assert _digest(db) == before  # (the data's image cache, assets/, may have been filled)
    assert sorted(p.name for p in out.iterdir() if p.name != "assets") == ["mmsim.sqlite"]


def test_out_is_a_file(tmp_path: Path) -> None:
    scn = tmp_path / "s.yaml"
    scn.write_text(GOOD)
    out = tmp_path / "run"
    out.write_text("a file, not a folder")
    check_error(invoke("run", str(scn), "--out", str(out), "--no-progress"),
                [str(out), "is a file, not a directory"], None)
    assert out.read_text() == "a file, not a folder"


RAISES = """from mmsim import Feedback, FeedbackContext, policy


@policy("badinput-raises")
async def raises(ctx: FeedbackContext) -> Feedback:
    if ctx.sample.id:
        raise ValueError("policy exploded")
    return ctx.feedback("no", kind="binary")
"""
RETURNS_STR = """from mmsim import Feedback, FeedbackContext, policy


@policy("badinput-returns-str")
async def returns_str(ctx: FeedbackContext) -> Feedback:
    return "not feedback"
"""
FIXED = {"raise ValueError(\"policy exploded\")": "return ctx.feedback(\"no\", kind=\"binary\")",
         "return \"not feedback\"": "return ctx.feedback(\"no\", kind=\"binary\")"}


@pytest.mark.parametrize(("code", "policy", "expects"), [
    (RAISES, "badinput-raises",
     ["raises.py:7", "policy 'badinput-raises' raised ValueError: policy exploded"]),
    (RETURNS_STR, "badinput-returns-str",
     ["returns_str.py:4", "policy 'badinput-returns-str' raised TypeError", "not a Feedback"]),
], ids=["raises", "returns-str"])
def test_policy_that_raises_stops_the_run_and_keeps_finished_episodes(
        tmp_path: Path, code: str, policy: str, expects: list[str]) -> None:
    """A policy bug is a plugin bug: exit 2 naming the plugin file:line and the policy; the
    screening episodes already finished stay committed; the run is marked ``failed``; once
    the plugin is fixed, rerunning the same command resumes."""
    plug = tmp_path / expects[0].split(":")[0]
    plug.write_text(code)
    scn = tmp_path / "s.yaml"
    scn.write_text(GOOD)
    out = tmp_path / "run"
    check_error(invoke("run", str(scn), "--out", str(out), "--no-progress", "--plugin",
                       str(plug), "--set", f"policies=[{policy}]"), expects, None)
    c = sqlite3.connect(out / "mmsim.sqlite")
    try:
        assert c.execute("SELECT status FROM runs").fetchone()[0] == "failed"
        assert c.execute("SELECT COUNT(*) FROM episodes WHERE kind='screen' AND status='done'"
                         ).fetchone()[0] == 4 * 6
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        c.close()
    for bug, fix in FIXED.items():
        code = code.replace(bug, fix)
    plug.write_text(code)
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress", "--plugin", str(plug),
                "--set", f"policies=[{policy}]")
    assert r.returncode == 0, r.stderr
    assert "24 already done" in r.stderr and "(resumed)" in r.stderr


@pytest.mark.parametrize("which", ["scenario", "plugin", "image"])
def test_subprocess_stderr_is_one_line(tmp_path: Path, which: str) -> None:
    """The same contract from a real process: exit 2, one stderr line, no traceback."""
    d = tmp_path / "in"
    d.mkdir()
    if which == "scenario":
        args = ["run", str(HERE / "scenarios" / "unknown_agent_key.yaml")]
        expects = _expects(HERE / "scenarios" / "unknown_agent_key.yaml")
    elif which == "plugin":
        case = next(c for c in CASES if c.id == "plugin_raises_on_import")
        args, expects = case.setup(d), case.expects
    else:
        case = next(c for c in CASES if c.id == "image_decompression_bomb")
        args, expects = case.setup(d), case.expects
    out = tmp_path / "run"
    r = run_cli(*args, "--out", str(out), "--no-progress")

    class R:
        exit_code, stderr, stdout, exception = r.returncode, r.stderr, r.stdout, None
    check_error(R(), expects, out)


def test_corpus_size() -> None:
    assert len(SCENARIOS) + len(CASES) >= 50


# ------------------------------------------------------- directories mmsim did not write


def _foreign_sqlite(d: Path) -> Path:
    db = d / "mmsim.sqlite"
    c = sqlite3.connect(db)
    c.execute("CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT)")
    c.execute("INSERT INTO customers VALUES(1, 'Ada')")
    c.commit()
    c.close()
    return db


def _listing(d: Path) -> list[tuple[str, str]]:
    return sorted((str(p.relative_to(d)), _digest(p) if p.is_file() else "dir")
                  for p in d.rglob("*"))


@pytest.mark.parametrize("what", ["foreign-sqlite", "other-files", "sqlite-elsewhere"])
def test_out_holding_what_mmsim_did_not_write_is_refused(tmp_path: Path, what: str) -> None:
    """``--out`` on a folder with a foreign SQLite file (named like mmsim's store or not) or
    any file mmsim did not write: exit 2 before anything is written (no lock, no marker, no
    tables added); ``report``/``export``/``compare``/``fit`` refuse it the same way and do
    not write into it."""
    scn = tmp_path / "s.yaml"
    scn.write_text(GOOD)
    out = tmp_path / "run"
    out.mkdir()
    if what == "foreign-sqlite":
        _foreign_sqlite(out)
        expects = ["mmsim.sqlite", "not an mmsim run store", "customers"]
    elif what == "other-files":
        (out / "thesis.tex").write_text("\\documentclass{article}")
        expects = [str(out), "files mmsim did not write (thesis.tex)"]
    else:
        c = sqlite3.connect(out / "data.db")
        c.execute("CREATE TABLE t(x)")
        c.commit()
        c.close()
        expects = [str(out), "files mmsim did not write (data.db)"]
    before = _listing(out)
    check_error(invoke("run", str(scn), "--out", str(out), "--no-progress"), expects, None)
    assert _listing(out) == before
    if what == "foreign-sqlite":
        for args in (["report", str(out)], ["report", str(out), "--format", "json"],
                     ["export", str(out)], ["compare", str(out), str(out)]):
            check_error(invoke(*args), ["mmsim.sqlite", "not an mmsim run store"], None)
            assert _listing(out) == before, args


def test_readers_open_the_store_read_only(tmp_path: Path) -> None:
    """``report`` and ``export`` on a finished run change no byte of its store."""
    scn = tmp_path / "s.yaml"
    scn.write_text(GOOD)
    out = tmp_path / "run"
    assert invoke("run", str(scn), "--out", str(out), "--no-progress").exit_code == 0  # type: ignore[attr-defined]
    assert (out / ".mmsim-run").is_file()
    db = out / "mmsim.sqlite"
    before = _digest(db)
    os_mode = db.stat().st_mode
    db.chmod(0o444)  # a reader needs no write access
    try:
        for args in (["report", str(out), "--format", "json"], ["export", str(out)]):
            r = invoke(*args)
            assert r.exit_code == 0, (args, r.stderr)  # type: ignore[attr-defined]
    finally:
        db.chmod(os_mode)
    assert _digest(db) == before


def test_an_empty_out_directory_is_used(tmp_path: Path) -> None:
    scn = tmp_path / "s.yaml"
    scn.write_text(GOOD)
    out = tmp_path / "run"
    out.mkdir()
    assert invoke("run", str(scn), "--out", str(out), "--no-progress").exit_code == 0  # type: ignore[attr-defined]
    assert (out / ".mmsim-run").is_file() and (out / "mmsim.sqlite").is_file()


def test_an_image_over_the_size_limit_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Files over their documented size (mmsim.data.safeio) are refused before they are
    read; the limit is lowered here so that the test writes a small file."""
    from mmsim.data import safeio

    monkeypatch.setattr(safeio, "MAX_IMAGE_BYTES", 400)
    d = tmp_path / "in"
    d.mkdir()
    (d / "img1.png").write_bytes(png_bytes())
    (d / "img2.png").write_bytes(png_bytes((64, 64), True))
    assert (d / "img1.png").stat().st_size < 400 < (d / "img2.png").stat().st_size
    write_rows(d, [mv_row("1"), mv_row("2")], images=False)
    check_error(invoke("run", str(mv_scenario(d)), "--out", str(tmp_path / "run"),
                       "--no-progress"),
                ["testmini.json, row 1 (id '2')", ": image:", "more than the limit of 400 "
                 "bytes"], tmp_path / "run")
