"""The rest of ``mmsim.metrics.compute``'s JSON object, field by field, against the store:
the documented key set (docs/metrics.md "The JSON object"), every agent row, the cell fields
the figure test in test_metrics_independent.py does not cover (failed episodes, mean
rounds, tokens, per-category figures, rates by round, defaults of cells with no episodes),
the top-level block and the scenario settings read from the stored scenario. Failures and
an unreachable receiver are planted in the store (seeded) so each count differs from its
neighbours. Mutation testing (docs/mutation/interfeedback-compute.md) found these unchecked.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SMALL, play, read_store
from test_metrics_independent import wilson

from mmsim.metrics import compute
from mmsim.store import RunStore

PLANTED = SMALL.replace("size: 40", "size: 24").replace(
    "protocol: {max_rounds: 3}",
    "protocol: {max_rounds: 2, extractor: lenient, test_set: all_wrong}\n"
    "extractors: [{name: x1, backend: sim}]")


def _compute(run_dir: Path, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = read_store(run_dir, compute, **kw)
    return out


def _rows(run_dir: Path, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    db = sqlite3.connect(run_dir / "mmsim.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, args)]
    finally:
        db.close()


def _messages(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in _rows(run_dir, "SELECT episode_id, kind, payload FROM messages "
                            "ORDER BY episode_id, seq"):
        out[r["episode_id"]].append({"kind": r["kind"], **json.loads(r["payload"])})
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with 2 rounds, the lenient extractor, a model-based extractor and the all_wrong
    test set; then, in the store: receiver r2 unreachable (every screening failed, no
    feedback episode), two of provider p1's screenings and three of r1's feedback episodes
    failed."""
    d = tmp_path_factory.mktemp("fields")
    scn = d / "s.yaml"
    scn.write_text(PLANTED)
    play(scn, d / "run")
    db = sqlite3.connect(d / "run" / "mmsim.sqlite")
    rng = random.Random(11)
    gone = [r[0] for r in db.execute(
        "SELECT episode_id FROM episodes WHERE kind='feedback' AND model='r2'")]
    db.executemany("DELETE FROM messages WHERE episode_id=?", [(g,) for g in gone])
    db.execute("DELETE FROM episodes WHERE kind='feedback' AND model='r2'")
    db.execute("UPDATE episodes SET status='failed', error='planted' "
               "WHERE kind='screen' AND model='r2'")
    p1 = [r[0] for r in db.execute("SELECT episode_id FROM episodes WHERE kind='screen' "
                                    "AND model='p1' ORDER BY episode_id")]
    fb = [r[0] for r in db.execute("SELECT episode_id FROM episodes WHERE kind='feedback' "
                                    "AND model='r1' ORDER BY episode_id")]
    for eid in [*rng.sample(p1, 2), *rng.sample(fb, 3)]:
        db.execute("UPDATE episodes SET status='failed', error='planted' WHERE episode_id=?",
                   (eid,))
    db.commit()
    db.close()
    return d / "run"


# -- the documented key set -----------------------------------------------------------
# Written out from docs/metrics.md "The JSON object"; test_keys_are_the_documented_ones
# also checks each name is in that block, so the doc and this list cannot drift apart.
TOP = {"schema", "run_id", "name", "status", "simulated", "test_set", "max_rounds", "ci",
       "extractor", "counts", "retries", "cost", "agents", "cells", "manifest"}
AGENT = {"name", "roles", "n", "n_correct", "accuracy", "parse_failure_rate",
         "parse_failure", "n_unparsed", "failed", "simulated", "tokens", "retries", "cost"}
CELL = {"receiver", "provider", "policy", "simulated", "n", "n_wrong", "accuracy", "n_test",
        "n_corrected", "correction_rate", "correction_by_round", "chance_correction",
        "chance_adjusted_correction", "parse_failure_rate", "parse_failure", "n_unparsed",
        "n_feedback", "n_leaked", "leak_rate", "leak", "extractor", "model_extractors",
        "failed", "mean_rounds", "tokens", "by_category", "retries", "cost"}
INTERVAL = {"value", "lo", "hi", "k", "n"}
NESTED = {"agent.tokens": {"prompt", "completion"},
          "cell.tokens": {"receiver_prompt", "receiver_completion", "feedback"},
          "round": {"round", "corrected", "rate", "cumulative"},
          "category": {"n_test", "n_corrected", "correction_rate", "correction"},
          "cell.retries": {"receiver", "provider"},
          "ci": {"method", "level", "proportions", "differences", "resamples", "seed"}}


def _doc_block() -> str:
    text = (ROOT / "docs" / "metrics.md").read_text()
    start = text.index("## The JSON object")
    return text[start:text.index("## Comparing two runs")]


def test_keys_are_the_documented_ones(planted: Path) -> None:
    doc = _doc_block()
    for name in set().union(TOP, AGENT, CELL, INTERVAL, *NESTED.values()):
        assert re.search(rf"\b{name}\b", doc), f"{name} is not in docs/metrics.md"
    m = _compute(planted, resamples=0)
    assert set(m) == TOP
    assert set(m["ci"]) == NESTED["ci"]
    assert m["agents"] and m["cells"]
    for a in m["agents"]:
        assert set(a) == AGENT, a["name"]
        assert set(a["tokens"]) == NESTED["agent.tokens"]
        assert set(a["accuracy"]) == INTERVAL and set(a["parse_failure"]) == INTERVAL
    for c in m["cells"]:
        assert set(c) == CELL
        assert set(c["tokens"]) == NESTED["cell.tokens"]
        assert set(c["retries"]) == NESTED["cell.retries"]
        for k in ("accuracy", "correction_rate", "parse_failure", "leak"):
            assert set(c[k]) == INTERVAL, k
        for row in c["correction_by_round"]:
            assert set(row) == NESTED["round"] and set(row["cumulative"]) == INTERVAL
        for v in c["by_category"].values():
            assert set(v) == NESTED["category"] and set(v["correction"]) == INTERVAL
    assert any(c["by_category"] for c in m["cells"])


def _interval_ok(got: dict[str, Any], k: int, n: int) -> None:
    assert (got["k"], got["n"]) == (k, n)
    if n == 0:
        assert got["value"] is None
        return
    assert got["value"] == pytest.approx(k / n, abs=1e-12)
    lo, hi = wilson(k, n)
    assert (got["lo"], got["hi"]) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))


def test_top_level_block(planted: Path) -> None:
    m = _compute(planted, resamples=123, seed=9)
    run = _rows(planted, "SELECT * FROM runs")[0]
    assert m["schema"] == "mmsim.interfeedback.v1"
    assert (m["run_id"], m["name"], m["status"]) == (run["run_id"], run["name"], run["status"])
    assert m["name"] == "small" and m["status"] == "finished"
    assert m["manifest"] == json.loads(run["manifest"])
    assert m["simulated"] is True  # every agent is a sim agent
    # the scenario's protocol settings, not the defaults
    assert (m["max_rounds"], m["extractor"], m["test_set"]) == (2, "lenient", "all_wrong")
    assert m["ci"]["resamples"] == 123 and m["ci"]["seed"] == 9
    counts = {f"{r['kind']}.{r['status']}": r["n"] for r in _rows(
        planted, "SELECT kind, status, COUNT(*) AS n FROM episodes GROUP BY kind, status")}
    assert m["counts"] == counts
    assert counts["screen.failed"] == 24 + 2 and counts["feedback.failed"] == 3
    # the library's defaults are the CLI's documented ones (--resamples 1000, --seed 0)
    d = _compute(planted)["ci"]
    assert (d["resamples"], d["seed"]) == (1000, 0)


def test_every_agent_row(planted: Path) -> None:
    m = _compute(planted, resamples=0)
    eps = _rows(planted, "SELECT * FROM episodes WHERE kind='screen'")
    msgs = _messages(planted)
    roles = {"r1": ["receiver"], "r2": ["receiver"], "p1": ["provider"], "p2": ["provider"]}
    agents = {a["name"]: a for a in m["agents"]}
    assert set(agents) == set(roles)
    for name, a in agents.items():
        assert a["roles"] == roles[name]
        done = [e for e in eps if e["model"] == name and e["status"] == "done"]
        assert a["failed"] == sum(e["model"] == name and e["status"] != "done" for e in eps)
        n = len(done)
        grades = [next(x for x in msgs[e["episode_id"]] if x["kind"] == "grade") for e in done]
        replies = [next(x for x in msgs[e["episode_id"]] if x["kind"] == "response")
                   for e in done]
        k = sum(bool(g["correct"]) for g in grades)
        unparsed = sum(r["parse"] == "unparsed" for r in replies)
        assert (a["n"], a["n_correct"], a["n_unparsed"]) == (n, k, unparsed), name
        _interval_ok(a["accuracy"], k, n)
        _interval_ok(a["parse_failure"], unparsed, n)
        assert a["parse_failure_rate"] == (pytest.approx(unparsed / n) if n else None)
        assert a["tokens"] == {"prompt": sum(r["usage"]["prompt_tokens"] for r in replies),
                               "completion": sum(r["usage"]["completion_tokens"]
                                                 for r in replies)}
        assert a["simulated"] is bool(done)  # sim agents; nothing screened: no evidence
        assert a["retries"] == 0 and a["cost"] is None
    assert agents["r2"]["n"] == 0 and agents["r2"]["failed"] == 24
    assert agents["p1"]["failed"] == 2 and agents["r1"]["failed"] == 0
    assert agents["r1"]["tokens"]["prompt"] > 0 and agents["r1"]["tokens"]["completion"] > 0


def test_cell_fields_beyond_the_figures(planted: Path) -> None:
    m = _compute(planted, resamples=0)
    eps = _rows(planted, "SELECT * FROM episodes WHERE kind='feedback'")
    msgs = _messages(planted)
    screen = {e["sample_id"]: e for e in _rows(
        planted, "SELECT * FROM episodes WHERE kind='screen' AND model='r1' "
                 "AND status='done'")}
    assert len(m["cells"]) == 2 * 2 * 3
    seen_failed = seen_category = 0
    for c in m["cells"]:
        key = (c["receiver"], c["provider"], c["policy"])
        mine = [e for e in eps if (e["model"], e["provider"], e["condition"]) == key]
        done = [e for e in mine if e["status"] == "done"]
        assert c["failed"] == len(mine) - len(done), key
        seen_failed += c["failed"]
        n_test = len(done)
        assert c["n_test"] == n_test
        if c["receiver"] == "r2":  # unreachable: nothing screened, nothing tested
            assert (c["n"], c["n_wrong"], c["n_test"], c["failed"]) == (0, 0, 0, 0)
            for k in ("correction_rate", "accuracy", "parse_failure", "leak"):
                assert c[k]["value"] is None and c[k]["n"] == 0, k
            for k in ("chance_correction", "chance_adjusted_correction",
                      "parse_failure_rate", "leak_rate", "mean_rounds"):
                assert c[k] is None, k
            assert c["simulated"] is False
            assert c["retries"] == {"receiver": 0, "provider": 0} and c["cost"] is None
            assert c["tokens"] == {"receiver_prompt": 0, "receiver_completion": 0,
                                   "feedback": 0}
            assert c["by_category"] == {}
            assert c["model_extractors"]["x1"]["accuracy"]["n"] == 0
            assert [r["rate"] for r in c["correction_by_round"]] == [None, None]
            continue
        assert c["simulated"] is True
        # rounds played: feedback messages of each episode
        rounds = [sum(x["kind"] == "feedback" for x in msgs[e["episode_id"]]) for e in done]
        assert c["mean_rounds"] == pytest.approx(sum(rounds) / n_test)
        # tokens: every receiver reply of the episode (round 0 included), every feedback
        replies = [x for e in done for x in msgs[e["episode_id"]] if x["kind"] == "response"]
        fbs = [x for e in done for x in msgs[e["episode_id"]] if x["kind"] == "feedback"]
        assert c["tokens"] == {
            "receiver_prompt": sum(x["usage"]["prompt_tokens"] for x in replies),
            "receiver_completion": sum(x["usage"]["completion_tokens"] for x in replies),
            "feedback": sum(x["usage"]["prompt_tokens"] + x["usage"]["completion_tokens"]
                            for x in fbs)}
        # the round of each episode's first correct grade (0 = the screening reply)
        first = [next((i for i, x in enumerate(g for g in msgs[e["episode_id"]]
                                               if g["kind"] == "grade") if x["correct"]),
                      None) for e in done]
        assert [r["round"] for r in c["correction_by_round"]] == [1, 2]
        for row in c["correction_by_round"]:
            at = sum(f == row["round"] for f in first)
            assert row["corrected"] == at
            assert row["rate"] == pytest.approx(at / n_test)
        # per category: the sample's category, corrected within the budget
        cats: dict[str, list[int]] = defaultdict(list)
        for e, f in zip(done, first, strict=True):
            assert e["sample_id"] in screen  # all_wrong: every tested item was screened
            cats[e["category"]].append(int(f is not None))
        assert set(c["by_category"]) == set(cats)
        for cat, got in c["by_category"].items():
            k, n = sum(cats[cat]), len(cats[cat])
            assert (got["n_test"], got["n_corrected"]) == (n, k), (key, cat)
            assert got["correction_rate"] == pytest.approx(k / n)
            _interval_ok(got["correction"], k, n)
            seen_category += k > 0 and k < n
        assert set(c["model_extractors"]) == {"x1"}  # the scenario's extractors
        assert c["model_extractors"]["x1"]["accuracy"]["n"] == c["n"]
        assert c["extractor"]["primary"] == "lenient"
        assert c["extractor"]["alternative"] == "strict"
    assert seen_failed == 3
    assert seen_category  # a category with corrected and uncorrected items was checked


def test_an_empty_store_has_no_figures(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "empty", create=True)
    try:
        assert compute(store) == {"run_id": None, "cells": [], "agents": []}
    finally:
        store.close()


def test_the_internal_check_names_the_cell(planted: Path, tmp_path: Path) -> None:
    """A test set larger than the items answered wrongly cannot come from a run; a store
    edited into that state is refused with the cell named."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(planted, bad)
    db = sqlite3.connect(bad / "mmsim.sqlite")
    db.execute("UPDATE episodes SET first_correct=1 WHERE kind='screen' AND model='r1'")
    db.commit()
    db.close()
    with pytest.raises(AssertionError, match=r"N_test \d+ > N_wrong 0 in \('r1'"):
        _compute(bad, resamples=0)


# -- a cell whose option-elimination baseline is certain --------------------------------
TWO_OPTIONS = """
name: two
seed: 5
dataset: {name: jsonl, path: items.jsonl}
receivers:
  - {name: r1, backend: sim, params: {skill: -1.0}}
providers:
  - {name: p1, backend: sim, params: {skill: 3.0}}
policies: [binary]
protocol: {max_rounds: 1}
"""


def test_a_certain_baseline_has_no_adjusted_rate(tmp_path: Path) -> None:
    """Two options and one round: a receiver that eliminates the option marked wrong
    always finds the answer, so the chance baseline is 1 and the chance-adjusted
    correction (CR - chance) / (1 - chance) is undefined (null), not a division by 0."""
    rows = [{"id": f"q{i}", "question": f"Is {i} even?", "choices": ["yes", "no"],
             "answer": "A" if i % 2 == 0 else "B"} for i in range(16)]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    scn = tmp_path / "s.yaml"
    scn.write_text(TWO_OPTIONS)
    play(scn, tmp_path / "run")
    m = _compute(tmp_path / "run", resamples=0)
    (c,) = m["cells"]
    assert c["n_test"] > 0
    assert c["chance_correction"] == pytest.approx(1.0)
    assert c["chance_adjusted_correction"] is None


def test_parse_failure_rate_when_feedback_replies_equal_items(tmp_path: Path) -> None:
    """A cell whose re-answers after feedback number exactly the items screened (12 and 12
    here) still has a parse-failure rate: unparsed replies over all 24 replies."""
    scn = tmp_path / "s.yaml"
    scn.write_text(SMALL.replace("size: 40", "size: 12").replace(
        "protocol: {max_rounds: 3}", "protocol: {max_rounds: 3, test_set: all_wrong}"))
    play(scn, tmp_path / "run")
    m = _compute(tmp_path / "run", resamples=0)
    msgs = _messages(tmp_path / "run")
    eps = _rows(tmp_path / "run", "SELECT * FROM episodes")
    hits = 0
    for c in m["cells"]:
        key = (c["receiver"], c["provider"], c["policy"])
        screen = [e for e in eps if e["kind"] == "screen" and e["model"] == key[0]]
        fb = [e for e in eps if e["kind"] == "feedback"
              and (e["model"], e["provider"], e["condition"]) == key]
        replies = [x for e in screen for x in msgs[e["episode_id"]] if x["kind"] == "response"]
        for e in fb:  # a feedback episode's round-0 reply is the screening reply: skipped
            replies += [x for x in msgs[e["episode_id"]] if x["kind"] == "response"][1:]
        n_fb = len(replies) - len(screen)
        hits += n_fb == len(screen)
        bad = sum(x["parse"] == "unparsed" for x in replies)
        assert c["parse_failure_rate"] == pytest.approx(bad / len(replies)), key
    assert hits  # the case this test is for occurred
