"""`compare_outcomes` (the `mmsim compare` of protocols without a comparison of their own:
classification, dynamic, video) checked against values computed independently from the
stores: SQL over the `runs` and `episodes` tables, and the JSON fields documented in
docs/metrics.md ("Comparing two runs") and docs/protocols.md (`compare`: "B minus A per
agent x episode kind x condition, paired bootstrap over shared items"). In-process calls
only, so mutation testing traces them (docs/mutation/compare-outcomes.md)."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest

from mmsim.metrics.compare import compare_outcomes
from mmsim.runtime import run_scenario
from mmsim.scenario import load_any_scenario
from mmsim.store import RunStore
from mmsim.store.sqlite import EpisodeRecord

Key = tuple[str, str, str]

# docs/metrics.md, "Comparing two runs": the top-level fields of the JSON object, the
# fields of `a` and `b`, and the `ci` block (method, level 0.95, resamples, seed).
TOP_KEYS = {"schema", "a", "b", "same_dataset", "ci", "metrics", "cells", "only_in_a",
            "only_in_b"}
RUN_KEYS = {"run_dir", "run_id", "name", "status", "simulated", "dataset_fingerprint"}
CI_METHOD = "paired percentile bootstrap over shared items"
# docs/protocols.md: the default comparison is per agent x episode kind x condition; these
# name the three key columns (the `mmsim compare` table's headers, mmsim/report/compare.py).
KEY_NAMES = ["agent", "episode kind", "condition"]
# docs/metrics.md: `--resamples` default 1000, `--seed` default 0.
DEFAULT_RESAMPLES, DEFAULT_SEED = 1000, 0

CLS = """kind: classification
name: NAME
seed: SEED
dataset: {name: synthetic-objects, size: 12, seed: 2}
models:
MODELS
encoders: [string]
protocols:
  multiple_choice: {k: 4, distractors: [random]}
  batch: {sizes: [1], orders: 1}
"""


def _classification_run(tmp_path: Path, name: str, seed: int, models: str) -> Path:
    scn = tmp_path / f"{name}.yaml"
    scn.write_text(CLS.replace("NAME", name).replace("SEED", str(seed))
                   .replace("MODELS", models))
    run_dir = tmp_path / name
    anyio.run(lambda: run_scenario(load_any_scenario(scn), run_dir))
    return run_dir


def _sql_run(run_dir: Path, given_dir: str) -> dict[str, Any]:
    """The documented `a`/`b` block, read from the `runs` table and its manifest."""
    db = sqlite3.connect(run_dir / "mmsim.sqlite")
    run_id, name, status, manifest = db.execute(
        "SELECT run_id, name, status, manifest FROM runs").fetchone()
    db.close()
    man = json.loads(manifest)
    return {"run_dir": given_dir, "run_id": run_id, "name": name, "status": status,
            "simulated": bool(man["simulated"]),
            "dataset_fingerprint": man["dataset"]["fingerprint"]}


def _sql_cells(run_dir: Path) -> dict[Key, dict[str, float]]:
    """Finished, scored episodes per (agent, episode kind, condition) and sample id."""
    db = sqlite3.connect(run_dir / "mmsim.sqlite")
    out: dict[Key, dict[str, float]] = defaultdict(dict)
    for model, kind, cond, sid, solved in db.execute(
            "SELECT model, kind, condition, sample_id, solved FROM episodes "
            "WHERE status = 'done' AND solved IS NOT NULL"):
        out[(model, kind, cond)][sid] = 1.0 if solved else 0.0
    db.close()
    return dict(out)


def _compare(dir_a: Path, dir_b: Path, **kw: Any) -> dict[str, Any]:
    sa = RunStore.open(dir_a, create=False)
    sb = RunStore.open(dir_b, create=False)
    try:
        return compare_outcomes(sa, sb, **kw)
    finally:
        sa.close()
        sb.close()


def _check_cell(cell: dict[str, Any], xa: dict[str, float], xb: dict[str, float]) -> None:
    got = cell["solved"]
    shared = set(xa) & set(xb)
    assert (got["n_a"], got["n_b"], got["n_shared"]) == (len(xa), len(xb), len(shared))
    assert got["a"] == pytest.approx(sum(xa.values()) / len(xa))
    assert got["b"] == pytest.approx(sum(xb.values()) / len(xb))
    diff = sum(xb[s] - xa[s] for s in shared) / len(shared)
    assert got["diff"] == pytest.approx(diff, abs=1e-12)
    assert -1 <= got["lo"] <= diff + 1e-12 <= got["hi"] + 2e-12 <= 1 + 2e-12


def test_two_classification_runs_match_the_stores(tmp_path: Path) -> None:
    """Two real runs sharing one agent: the documented object, its `a`/`b` blocks from the
    `runs` table, the cells of the shared agent recomputed from the `episodes` table, and
    the cells of one run only listed as [agent, episode kind, condition]."""
    dir_a = _classification_run(tmp_path, "ra", 1, "  - {name: m1, backend: sim, params: "
                                "{skill: 0.0}}\n  - {name: m2, backend: sim}")
    dir_b = _classification_run(tmp_path, "rb", 4, "  - {name: m1, backend: sim, params: "
                                "{skill: 2.0}}\n  - {name: m3, backend: sim}")
    res = _compare(dir_a, dir_b, resamples=400, seed=7, run_dir_a=str(dir_a),
                   run_dir_b="the B run")
    assert set(res) == TOP_KEYS | {"key_names"}
    assert res["schema"] == "mmsim.compare.v1"
    assert res["key_names"] == KEY_NAMES
    assert res["metrics"] == ["solved"]
    assert res["ci"] == {"method": CI_METHOD, "level": 0.95, "resamples": 400, "seed": 7}
    want_a, want_b = _sql_run(dir_a, str(dir_a)), _sql_run(dir_b, "the B run")
    assert set(want_a) == RUN_KEYS
    assert want_a["simulated"] is True and want_a["dataset_fingerprint"]
    assert res["a"] == want_a and res["b"] == want_b
    # the same dataset (name, size, seed) in both runs: the same fingerprint
    assert res["same_dataset"] is (want_a["dataset_fingerprint"]
                                   == want_b["dataset_fingerprint"]) is True

    ca, cb = _sql_cells(dir_a), _sql_cells(dir_b)
    # classification episodes: kind 'classification', condition the protocol played
    assert {k[1] for k in ca} == {"classification"} and len({k[2] for k in ca}) == 4
    both = set(ca) & set(cb)
    assert both and {k[0] for k in both} == {"m1"}
    got_keys = [(c["receiver"], c["provider"], c["policy"]) for c in res["cells"]]
    assert sorted(got_keys) == sorted(both) and len(got_keys) == len(both)
    for c in res["cells"]:
        key = (c["receiver"], c["provider"], c["policy"])
        assert set(c) == {"receiver", "provider", "policy", "solved"}
        _check_cell(c, ca[key], cb[key])
    assert {tuple(k) for k in res["only_in_a"]} == set(ca) - set(cb) != set()
    assert {tuple(k) for k in res["only_in_b"]} == set(cb) - set(ca) != set()
    assert all(isinstance(k, list) and len(k) == 3 for k in res["only_in_a"] + res["only_in_b"])
    assert {k[0] for k in res["only_in_a"]} == {"m2"}
    assert {k[0] for k in res["only_in_b"]} == {"m3"}


def _store(run_dir: Path, name: str, rows: list[tuple[str, str, str, str, str, bool | None]],
           fingerprint: str) -> None:
    """A run written straight to a RunStore: rows of (agent, kind, condition, sample id,
    status, solved)."""
    store = RunStore.open(run_dir)
    try:
        store.begin_run(f"{name}-id", name, f"hash-{name}", {"kind": "custom"},
                        {"simulated": False, "dataset": {"fingerprint": fingerprint}})
        store.write_episodes([
            EpisodeRecord(episode_id=f"{name}-{i:03d}", run_id=f"{name}-id", kind=kind,
                          sample_id=sid, category="c", status=status, protocol="custom",
                          condition=cond, model=agent, solved=solved,
                          error=None if status == "done" else "boom")
            for i, (agent, kind, cond, sid, status, solved) in enumerate(rows)])
        store.finish_run("interrupted")
    finally:
        store.close()


# outcomes of 16 items in A and B: 8 paired changes, so the interval has width
A_OUT = [1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0]
B_OUT = [1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0]
AGENTS = ("x1", "x2", "x3", "x4", "x5")


def _written_runs(tmp_path: Path) -> tuple[Path, Path]:
    rows_a: list[tuple[str, str, str, str, str, bool | None]] = []
    rows_b: list[tuple[str, str, str, str, str, bool | None]] = []
    for agent in AGENTS:  # the same outcomes for every agent
        for i, (oa, ob) in enumerate(zip(A_OUT, B_OUT, strict=True)):
            rows_a.append((agent, "task", "", f"s{i:02d}", "done", bool(oa)))
            rows_b.append((agent, "task", "", f"s{i:02d}", "done", bool(ob)))
    # left out: a failed episode and an unscored one (A), an item B alone has
    rows_a.append(("x1", "task", "", "s90", "failed", None))
    rows_a.append(("x1", "task", "", "s91", "done", None))
    rows_b.append(("x1", "task", "", "s92", "done", True))
    # a condition in one run only
    rows_a.append(("x1", "task", "hard", "s00", "done", True))
    rows_b.append(("x2", "probe", "", "s00", "done", False))
    dir_a, dir_b = tmp_path / "wa", tmp_path / "wb"
    _store(dir_a, "wa", rows_a, "fp-1")
    _store(dir_b, "wb", rows_b, "fp-2")
    return dir_a, dir_b


def test_written_stores_condition_left_empty_and_only_in_one_run(tmp_path: Path) -> None:
    """Episodes stored with an empty condition keep it empty in the cell's key (the stored
    condition, docs/protocols.md); unfinished and unscored episodes are left out; the
    dataset fingerprints differ."""
    dir_a, dir_b = _written_runs(tmp_path)
    res = _compare(dir_a, dir_b, resamples=300, seed=3, run_dir_a="A", run_dir_b="B")
    assert res["same_dataset"] is False
    assert res["a"] == _sql_run(dir_a, "A") and res["b"] == _sql_run(dir_b, "B")
    assert res["a"]["status"] == "interrupted" and res["a"]["simulated"] is False
    ca, cb = _sql_cells(dir_a), _sql_cells(dir_b)
    assert [(c["receiver"], c["provider"], c["policy"]) for c in res["cells"]] == sorted(
        set(ca) & set(cb)) == [(a, "task", "") for a in AGENTS]
    for c in res["cells"]:
        _check_cell(c, ca[(c["receiver"], "task", "")], cb[(c["receiver"], "task", "")])
    x1 = res["cells"][0]["solved"]
    assert (x1["n_a"], x1["n_b"], x1["n_shared"]) == (16, 17, 16)
    assert x1["diff"] == pytest.approx((sum(B_OUT) - sum(A_OUT)) / 16)
    assert res["only_in_a"] == [["x1", "task", "hard"]]
    assert res["only_in_b"] == [["x2", "probe", ""]]


def test_each_cell_draws_its_own_resamples(tmp_path: Path) -> None:
    """The bootstrap is seeded per cell (mmsim/metrics/compare.py, keyed_rng: the seed and
    the cell's key): agents with identical outcomes get their own resamples, so their
    intervals are not all the same numbers; and the same call gives the same intervals."""
    dir_a, dir_b = _written_runs(tmp_path)
    res = _compare(dir_a, dir_b, resamples=200, seed=5)
    bounds = [(c["solved"]["lo"], c["solved"]["hi"]) for c in res["cells"]]
    assert len(bounds) == len(AGENTS) and len(set(bounds)) > 1
    again = _compare(dir_a, dir_b, resamples=200, seed=5)
    assert [(c["solved"]["lo"], c["solved"]["hi"]) for c in again["cells"]] == bounds


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    """Without arguments: 1000 resamples and seed 0 (docs/metrics.md, as `mmsim compare`'s
    defaults), and no run directory named ('')."""
    dir_a, dir_b = _written_runs(tmp_path)
    plain = _compare(dir_a, dir_b)
    assert plain["ci"] == {"method": CI_METHOD, "level": 0.95,
                           "resamples": DEFAULT_RESAMPLES, "seed": DEFAULT_SEED}
    assert plain["a"]["run_dir"] == "" and plain["b"]["run_dir"] == ""
    explicit = _compare(dir_a, dir_b, resamples=DEFAULT_RESAMPLES, seed=DEFAULT_SEED,
                        run_dir_a="", run_dir_b="")
    assert plain == explicit
    assert plain["a"] == _sql_run(dir_a, "") and plain["b"] == _sql_run(dir_b, "")
