"""Run directories written by mmsim 0.1 (store schema 1) open through a migration.

The fixtures in tests/fixtures/store_v1/ are small runs written by the code of commit
a1f0772 (schema 1), with the JSON reports that code printed for them: an InterFeedback, a
dynamic and a classification run. Opened by a reader, each is migrated in memory (the file
left as it is); resumed by `mmsim run`, in place. Each reports
the same figures, maps each protocol's old use of the columns to the protocol-neutral ones,
and resumes (nothing left to play)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from mmsim.store import RunStore

FIXTURES = ROOT / "tests" / "fixtures" / "store_v1"


def _copy(name: str, tmp_path: Path) -> tuple[Path, Path]:
    run_dir = tmp_path / name
    run_dir.mkdir()
    shutil.copy(FIXTURES / f"{name}.sqlite", run_dir / "mmsim.sqlite")
    scn = tmp_path / f"{name}.yaml"
    shutil.copy(FIXTURES / f"{name}.yaml", scn)
    return run_dir, scn


@pytest.mark.parametrize("name", ["if", "dyn", "cls"])
def test_a_schema_1_run_reports_the_same_figures_and_resumes(name: str,
                                                             tmp_path: Path) -> None:
    run_dir, scn = _copy(name, tmp_path)
    db = sqlite3.connect(run_dir / "mmsim.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    n_before = db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
    db.close()
    r = run_cli("report", str(run_dir), "--format", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    got.pop("manifest", None)
    want = json.loads((FIXTURES / f"{name}.report.json").read_text())
    assert got == want
    # a reader opens the store read-only: migrated in memory, the file left as it was
    db = sqlite3.connect(run_dir / "mmsim.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    db.close()
    r = run_cli("run", str(scn), "--out", str(run_dir), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"0 episodes played, {n_before} already done" in r.stderr
    db = sqlite3.connect(run_dir / "mmsim.sqlite")  # the writer migrated it in place
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
    assert db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == n_before
    db.close()
    r = run_cli("report", str(run_dir), "--format", "json")
    got = json.loads(r.stdout)
    got.pop("manifest", None)
    assert got == want


def test_columns_carry_one_meaning_after_migration(tmp_path: Path) -> None:
    # InterFeedback: the receiver is the model, the provider's tokens are the provider's
    run_dir, _ = _copy("if", tmp_path)
    old = sqlite3.connect(FIXTURES / "if.sqlite")
    old.row_factory = sqlite3.Row
    v1 = {r["episode_id"]: dict(r) for r in old.execute("SELECT * FROM episodes")}
    old.close()
    store = RunStore.open(run_dir, create=False)
    try:
        eps = {e["episode_id"]: e for e in store.episodes()}
    finally:
        store.close()
    assert eps.keys() == v1.keys()
    for eid, e in eps.items():
        o = v1[eid]
        assert e["protocol"] == "interfeedback" and e["judge"] == ""
        assert (e["model"], e["provider"], e["condition"]) == (o["receiver"], o["provider"],
                                                               o["policy"])
        assert e["model_prompt_tokens"] == o["prompt_tokens"]
        assert (e["provider_prompt_tokens"] + e["provider_completion_tokens"]
                == o["feedback_tokens"])
        assert e["provider_completion_tokens"] == o["feedback_completion_tokens"]
        assert (e["payload"]["rounds"], e["payload"]["n_leaked"]) == (o["rounds"],
                                                                      o["n_leaked"])
    # dynamic: a calibration episode is the judge's; a judged task's judge tokens are the
    # judge's, no longer "feedback" tokens
    run_dir, _ = _copy("dyn", tmp_path)
    store = RunStore.open(run_dir, create=False)
    try:
        eps = list(store.episodes())
    finally:
        store.close()
    calib = [e for e in eps if e["kind"] == "dyn_calibration"]
    judged = [e for e in eps if e["kind"] == "dyn_task" and e["judge"]]
    assert calib and all(e["judge"] == "judge" and e["model"] == "" for e in calib)
    assert all(e["judge_prompt_tokens"] > 0 and e["model_prompt_tokens"] == 0 for e in calib)
    assert judged and all(e["model"] == "base" and e["judge_prompt_tokens"] > 0
                          and e["provider_prompt_tokens"] == 0 for e in judged)


def test_a_store_from_a_newer_mmsim_is_refused_with_one_line(tmp_path: Path) -> None:
    run_dir, _ = _copy("if", tmp_path)
    db = sqlite3.connect(run_dir / "mmsim.sqlite")
    db.execute("UPDATE meta SET value='9' WHERE key='schema_version'")
    db.commit()
    db.close()
    r = run_cli("report", str(run_dir), "--format", "json")
    assert r.returncode == 2
    assert "newer mmsim (store schema 9)" in r.stderr and len(r.stderr.splitlines()) == 1
