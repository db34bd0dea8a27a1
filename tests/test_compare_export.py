"""``mmsim compare`` (paired bootstrap over shared items) and ``mmsim export``."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import ROOT, SMALL
from typer.testing import CliRunner

from mmsim.cli import app
from mmsim.errors import UserError
from mmsim.metrics.compare import compare
from mmsim.runtime import run_scenario
from mmsim.scenario import load_scenario
from mmsim.store import RunStore
from mmsim.store.export import EPISODE_COLUMNS, MESSAGE_COLUMNS, write_rows


def _run(tmp: Path, text: str, name: str) -> Path:
    scn = tmp / f"{name}.yaml"
    scn.write_text(text)
    loaded = load_scenario(scn)
    out = tmp / name
    anyio.run(lambda: run_scenario(loaded, out))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cmp")
    b = SMALL.replace("seed: 3", "seed: 4").replace("skill: -0.5", "skill: 4.0")
    return _run(tmp, SMALL, "a"), _run(tmp, b, "b")


def _compare_json(a: Path, b: Path, *extra: str) -> dict:
    r = CliRunner().invoke(app, ["compare", str(a), str(b), "--format", "json", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_compare_json_schema(runs: tuple[Path, Path]) -> None:
    res = _compare_json(*runs, "--resamples", "300")
    assert res["schema"] == "mmsim.compare.v1"
    assert res["a"]["run_dir"] == str(runs[0]) and res["b"]["simulated"] is True
    assert res["same_dataset"] is True
    assert res["ci"]["resamples"] == 300 and res["ci"]["level"] == 0.95
    assert len(res["cells"]) == 12 and res["only_in_a"] == [] and res["only_in_b"] == []
    for c in res["cells"]:
        for m in ("accuracy", "correction_rate", "parse_failure_rate"):
            x = c[m]
            assert set(x) == {"a", "b", "diff", "lo", "hi", "n_a", "n_b", "n_shared"}
            assert x["n_shared"] <= min(x["n_a"], x["n_b"])
            if x["n_shared"]:
                assert x["lo"] <= x["diff"] + 1e-12 and x["diff"] <= x["hi"] + 1e-12
        assert c["accuracy"]["n_shared"] == 40
    # r2 skill went from -0.5 to 4.0: its accuracy rises, and the interval says so
    r2 = next(c for c in res["cells"] if c["receiver"] == "r2")["accuracy"]
    assert r2["b"] > r2["a"] and r2["lo"] > 0
    r1 = next(c for c in res["cells"] if c["receiver"] == "r1")["accuracy"]
    assert r1["lo"] < 0 < r1["hi"] or r1["diff"] == 0


def test_compare_a_run_with_itself_is_zero(runs: tuple[Path, Path]) -> None:
    res = _compare_json(runs[0], runs[0])
    for c in res["cells"]:
        for m in ("accuracy", "correction_rate", "parse_failure_rate"):
            x = c[m]
            assert x["a"] == x["b"]
            if x["n_shared"]:
                assert x["diff"] == 0 and x["lo"] == 0 and x["hi"] == 0


def test_compare_pairs_on_sample_id(runs: tuple[Path, Path]) -> None:
    """Seeded (reproducible), and the diff is over the items both runs share."""
    sa, sb = RunStore.open(runs[0], create=False), RunStore.open(runs[1], create=False)
    try:
        res = compare(sa, sb, resamples=500, seed=1)
        again = compare(sa, sb, resamples=500, seed=1)
    finally:
        sa.close()
        sb.close()
    assert res == again  # seeded: reproducible
    c = next(c for c in res["cells"] if c["correction_rate"]["n_shared"] >= 5)
    cr = c["correction_rate"]
    assert cr["n_shared"] <= min(cr["n_a"], cr["n_b"])


def test_compare_table_and_errors(runs: tuple[Path, Path], tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["compare", str(runs[0]), str(runs[1])])
    assert r.exit_code == 0, r.output
    assert "Δ correction" in r.stdout and "SIMULATED" in r.stdout and "r2" in r.stdout
    r = CliRunner().invoke(app, ["compare", str(runs[0]), str(tmp_path)])
    assert r.exit_code == 2 and "no mmsim run here" in r.output


def test_export_jsonl_csv_parquet(runs: tuple[Path, Path], tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    cli = CliRunner()
    store = RunStore.open(runs[0], create=False)
    try:
        n_eps = sum(store.counts().values())
        n_msgs = store.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        store.close()
    out = tmp_path / "x" / "eps.jsonl"
    r = cli.invoke(app, ["export", str(runs[0]), "--format", "jsonl", "-o", str(out),
                         "--messages"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == n_eps and set(rows[0]) == set(EPISODE_COLUMNS)
    assert {r["kind"] for r in rows} == {"screen", "feedback"}
    assert all(isinstance(r["simulated"], bool) for r in rows)
    msgs = [json.loads(x) for x in (tmp_path / "x" / "eps.messages.jsonl").read_text()
            .splitlines()]
    assert len(msgs) == n_msgs and set(msgs[0]) == set(MESSAGE_COLUMNS)
    obs = [m for m in msgs if m["kind"] == "observation"]
    assert any(m["conversation_from"] == 0 and json.loads(m["images"]) for m in obs)
    assert any(m["conversation_from"] > 0 for m in obs)  # deltas, as stored
    grades = [m for m in msgs if m["kind"] == "grade"]
    assert grades and all(isinstance(g["correct"], bool) for g in grades)

    r = cli.invoke(app, ["export", str(runs[0]), "--format", "csv", "-o", "-"])
    assert r.exit_code == 0
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(table) == n_eps and table[0]["episode_id"]

    out = tmp_path / "eps.parquet"
    r = cli.invoke(app, ["export", str(runs[0]), "--format", "parquet", "-o", str(out),
                         "--messages"])
    assert r.exit_code == 0, r.output
    t = pq.read_table(out)
    assert t.num_rows == n_eps and str(t.schema.field("solved").type) == "bool"
    assert str(t.schema.field("model_prompt_tokens").type) == "int64"
    # the protocol's own fields travel as one JSON column
    assert all("rounds" in json.loads(p) for p in t.column("payload").to_pylist())
    assert pq.read_table(tmp_path / "eps.messages.parquet").num_rows == n_msgs

    r = cli.invoke(app, ["export", str(runs[0])])  # default: RUN_DIR/episodes.jsonl
    assert r.exit_code == 0 and (runs[0] / "episodes.jsonl").is_file()
    (runs[0] / "episodes.jsonl").unlink()


def test_export_errors(runs: tuple[Path, Path], tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CliRunner()
    r = cli.invoke(app, ["export", str(runs[0]), "--format", "xlsx"])
    assert r.exit_code == 2 and "jsonl, csv, parquet" in r.output
    r = cli.invoke(app, ["export", str(runs[0]), "--format", "parquet", "-o", "-"])
    assert r.exit_code == 2 and "stdout" in r.output
    r = cli.invoke(app, ["export", str(runs[0]), "-o", "-", "--messages"])
    assert r.exit_code == 2 and "--messages" in r.output
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(UserError, match=r"pip install 'mmsim\[parquet\]'"):
        write_rows(iter([{"episode_id": "x"}]), ("episode_id",), "parquet", tmp_path / "p.pq")
    r = cli.invoke(app, ["export", str(runs[0]), "--format", "parquet", "-o",
                         str(tmp_path / "p.parquet")])
    assert r.exit_code == 2 and "needs pyarrow" in r.output


Raw = dict[tuple[str, ...], dict[str, Any]]


def _raw_items(run_dir: Path) -> tuple[dict[str, dict[str, Any]], Raw]:
    """Screening and feedback episodes straight from SQLite, by (receiver, sample) and
    (receiver, provider, policy, sample); payload keys flattened."""
    db = sqlite3.connect(run_dir / "mmsim.sqlite")
    db.row_factory = sqlite3.Row
    screen: dict[str, dict[str, Any]] = {}
    cells: dict[tuple[str, ...], dict[str, Any]] = {}
    for r in db.execute("SELECT * FROM episodes WHERE status='done'"):
        e = {**dict(r), **json.loads(r["payload"] or "{}")}
        if e["kind"] == "screen":
            screen[f"{e['model']}\x00{e['sample_id']}"] = e
        elif e["kind"] == "feedback":
            cells[(e["model"], e["provider"], e["condition"], e["sample_id"])] = e
    db.close()
    return screen, cells


def test_compare_figures_match_an_independent_recomputation(runs: tuple[Path, Path]) -> None:
    """a, b, n_shared and the paired difference of every cell and metric, recomputed from
    the raw stores; intervals contain the difference, are seeded per cell (the same with any
    seed order of cells) and vanish with 0 resamples."""
    sa, sb = RunStore.open(runs[0], create=False), RunStore.open(runs[1], create=False)
    try:
        res = compare(sa, sb, resamples=400, seed=5)
        none = compare(sa, sb, resamples=0, seed=5)
    finally:
        sa.close()
        sb.close()
    (scr_a, fb_a), (scr_b, fb_b) = _raw_items(runs[0]), _raw_items(runs[1])

    def acc(screen: dict[str, dict[str, Any]], r: str) -> dict[str, float]:
        return {k.split("\x00")[1]: float(bool(e["first_correct"])) for k, e in screen.items()
                if k.startswith(r + "\x00")}

    def solved(cells: dict[tuple[str, ...], dict[str, Any]], key: tuple[str, str, str]
               ) -> dict[str, float]:
        return {k[3]: float(bool(e["solved"])) for k, e in cells.items() if k[:3] == key}

    def parse(screen: dict[str, dict[str, Any]], cells: dict[tuple[str, ...], dict[str, Any]],
              key: tuple[str, str, str]) -> dict[str, tuple[float, float]]:
        out = {}
        for s in acc(screen, key[0]):
            se = screen[f"{key[0]}\x00{s}"]
            num, den = float(bool(se["first_unparsed"])), 1.0
            f = cells.get((*key, s))
            if f is not None:
                num += f["n_unparsed"] - int(bool(f["first_unparsed"]))
                den += f["n_responses"] - 1
            out[s] = (num, den)
        return out

    assert res["cells"]
    for c, c0 in zip(res["cells"], none["cells"], strict=True):
        key = (c["receiver"], c["provider"], c["policy"])
        for metric, xa, xb in (
                ("accuracy", acc(scr_a, key[0]), acc(scr_b, key[0])),
                ("correction_rate", solved(fb_a, key), solved(fb_b, key))):
            got = c[metric]
            shared = sorted(set(xa) & set(xb))
            assert got["n_a"] == len(xa) and got["n_b"] == len(xb)
            assert got["n_shared"] == len(shared)
            if xa:
                assert got["a"] == pytest.approx(sum(xa.values()) / len(xa))
            if xb:
                assert got["b"] == pytest.approx(sum(xb.values()) / len(xb))
            if shared:
                diff = (sum(xb[s] for s in shared) - sum(xa[s] for s in shared)) / len(shared)
                assert got["diff"] == pytest.approx(diff, abs=1e-12)
                assert got["lo"] <= got["diff"] + 1e-12 and got["diff"] - 1e-12 <= got["hi"]
                assert c0[metric]["lo"] is None and c0[metric]["diff"] == got["diff"]
        pa, pb = parse(scr_a, fb_a, key), parse(scr_b, fb_b, key)
        got = c["parse_failure_rate"]
        shared = sorted(set(pa) & set(pb))
        assert got["a"] == pytest.approx(sum(v[0] for v in pa.values())
                                         / sum(v[1] for v in pa.values()))
        assert got["b"] == pytest.approx(sum(v[0] for v in pb.values())
                                         / sum(v[1] for v in pb.values()))
        diff = (sum(pb[s][0] for s in shared) / sum(pb[s][1] for s in shared)
                - sum(pa[s][0] for s in shared) / sum(pa[s][1] for s in shared))
        assert got["diff"] == pytest.approx(diff, abs=1e-12) and got["n_shared"] == len(shared)
        assert got["lo"] <= got["hi"]
    assert res["ci"] == {"method": "paired percentile bootstrap over shared items",
                         "level": 0.95, "resamples": 400, "seed": 5}


def test_compare_outcomes_matches_an_independent_recomputation(tmp_path: Path) -> None:
    """Another protocol's comparison (video here): the solved share per agent x episode kind x
    condition, recomputed from the raw episodes tables, paired on shared sample ids;
    unfinished and unscored episodes are left out; cells only in one run are listed."""
    from mmsim.metrics.compare import compare_outcomes
    from mmsim.scenario import load_any_scenario

    base = (ROOT / "scenarios" / "video_levels.yaml").read_text()
    base = (base.replace("items_per_level: 60", "items_per_level: 6")
            .replace("training_items: 60", "training_items: 2")
            .replace("bootstrap: 1000", "bootstrap: 50"))
    texts = {"a": base, "b": base.replace("seed: 0", "seed: 1")
             .replace("skill: 0.3,", "skill: 2.0,")}
    dirs = {}
    for name, text in texts.items():
        scn = tmp_path / f"{name}.yaml"
        scn.write_text(text)
        dirs[name] = tmp_path / name
        anyio.run(lambda s=scn, d=dirs[name]: run_scenario(load_any_scenario(s), d))
    # an unfinished episode in A: left out of A's cell
    db = sqlite3.connect(dirs["a"] / "mmsim.sqlite")
    dropped = db.execute("SELECT episode_id, model, kind, condition, sample_id FROM episodes "
                         "WHERE kind='video_eval' ORDER BY episode_id LIMIT 1").fetchone()
    db.execute("UPDATE episodes SET status='failed' WHERE episode_id=?", (dropped[0],))
    db.commit()
    db.close()

    def raw(d: Path) -> dict[tuple[str, str, str], dict[str, float]]:
        db = sqlite3.connect(d / "mmsim.sqlite")
        out: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
        for m, k, c, s, solved in db.execute(
                "SELECT model, kind, condition, sample_id, solved FROM episodes "
                "WHERE status='done' AND solved IS NOT NULL"):
            out[(m, k, c or "")][s] = float(solved)
        db.close()
        return out

    ra, rb = raw(dirs["a"]), raw(dirs["b"])
    sa, sb = RunStore.open(dirs["a"], create=False), RunStore.open(dirs["b"], create=False)
    try:
        res = compare_outcomes(sa, sb, resamples=300, seed=2)
    finally:
        sa.close()
        sb.close()
    assert res["metrics"] == ["solved"] and res["same_dataset"] is False
    assert res["ci"]["seed"] == 2 and res["ci"]["resamples"] == 300
    keys = sorted(set(ra) & set(rb))
    assert [(c["receiver"], c["provider"], c["policy"]) for c in res["cells"]] == keys
    assert dropped[4] not in ra[(dropped[1], dropped[2], dropped[3] or "")]
    moved = 0
    for c in res["cells"]:
        key = (c["receiver"], c["provider"], c["policy"])
        xa, xb, got = ra[key], rb[key], c["solved"]
        shared = sorted(set(xa) & set(xb))
        assert (got["n_a"], got["n_b"], got["n_shared"]) == (len(xa), len(xb), len(shared))
        assert got["a"] == pytest.approx(sum(xa.values()) / len(xa))
        assert got["b"] == pytest.approx(sum(xb.values()) / len(xb))
        diff = (sum(xb[s] for s in shared) - sum(xa[s] for s in shared)) / len(shared)
        assert got["diff"] == pytest.approx(diff, abs=1e-12)
        assert got["lo"] <= got["diff"] + 1e-12 <= got["hi"] + 2e-12
        moved += diff != 0
    assert moved, "the two runs should differ somewhere"
    assert res["only_in_a"] == [list(k) for k in sorted(set(ra) - set(rb))]
    assert res["only_in_b"] == [list(k) for k in sorted(set(rb) - set(ra))]
