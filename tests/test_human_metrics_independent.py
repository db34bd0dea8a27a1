"""The ``human`` section of the metrics (docs/human.md) recomputed independently from the raw
SQLite tables of persona runs (feedback cells by round, sources, verdicts, persons, length,
leaks, disputes, failures) and of an annotator-assist run (confirm/edit/reject shares,
proposal and final accuracy): a planted bug in ``mmsim.metrics.human`` fails here."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest

from mmsim.metrics import compute
from mmsim.runtime import run_scenario
from mmsim.scenario import load_scenario
from mmsim.store import RunStore

SCN = """
name: human-indep
seed: 5
dataset: {name: synthetic, size: 36, seed: 6}
receivers:
  - {name: r1, backend: sim, params: {skill: -0.6, uptake: {detailed: 0.4}}}
  - {name: r2, backend: sim, params: {skill: 0.3}}
providers:
  - name: alice
    kind: human
    channel: persona
    human: {persona: novice-verbose, leak_rate: 0.3, error_rate: 0.3}
  - name: bob
    kind: human
    channel: persona
    human: {persona: expert-terse}
  - {name: machine, backend: sim, params: {skill: 2.0}}
policies:
  - {name: study, schedule: [human, human, reveal]}
  - {name: late, schedule: [binary, human, human, human]}
protocol: {max_rounds: 4, test_set: all_wrong}
run: {concurrency: 8, bootstrap: 0}
"""


def _play(tmp: Path, name: str, *sets: str) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(SCN)
    out = tmp / name
    loaded = load_scenario(p, overrides=list(sets))
    anyio.run(lambda: run_scenario(loaded, out))
    return out


def _raw(run: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    db = sqlite3.connect(run / "mmsim.sqlite")
    db.row_factory = sqlite3.Row
    eps = []
    for r in db.execute("SELECT * FROM episodes"):
        e = dict(r)
        e.update(json.loads(e.pop("payload") or "{}"))
        eps.append(e)
    msgs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in db.execute("SELECT episode_id, kind, payload FROM messages ORDER BY episode_id, seq"):
        msgs[r["episode_id"]].append({"kind": r["kind"], **json.loads(r["payload"])})
    db.close()
    return eps, msgs


def _metrics(run: Path) -> dict[str, Any]:
    store = RunStore.open(run, create=False)
    try:
        return compute(store, resamples=0)["human"]
    finally:
        store.close()


def _fail_some(run: Path, kind: str, n: int) -> None:
    db = sqlite3.connect(run / "mmsim.sqlite")
    db.execute("UPDATE episodes SET status='failed', error='planted' WHERE episode_id IN "
               "(SELECT episode_id FROM episodes WHERE kind=? AND provider IN ('alice', 'bob') "
               "ORDER BY episode_id DESC LIMIT ?)", (kind, n))
    db.commit()
    db.close()


def test_feedback_cells_match_an_independent_recomputation(tmp_path: Path) -> None:
    run = _play(tmp_path, "fb")
    _fail_some(run, "feedback", 4)
    # personas give no verdicts: plant the one a person types in the web or terminal
    # channels ("correct" disputes the automatic check) on six stored feedback messages
    db = sqlite3.connect(run / "mmsim.sqlite")
    db.execute("UPDATE messages SET payload=json_set(payload, '$.meta.verdict', "
               "'correct') WHERE (episode_id, seq) IN "
               "(SELECT m.episode_id, m.seq FROM messages m JOIN episodes e USING (episode_id) "
               "WHERE m.kind='feedback' AND e.status='done' AND e.provider='alice' "
               "AND json_extract(m.payload, '$.meta.source')='persona' "
               "ORDER BY m.episode_id LIMIT 6)")
    db.commit()
    db.close()
    got = _metrics(run)
    eps, msgs = _raw(run)
    schedules = {"study": ["human", "human", "reveal"],
                 "late": ["binary", "human", "human", "human"]}
    assert {p["name"] for p in got["providers"]} == {"alice", "bob"}
    assert all(p["channel"] == "persona" for p in got["providers"])
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    failed: Counter[tuple[str, str, str]] = Counter()
    for e in eps:
        if e["kind"] != "feedback" or e["provider"] not in ("alice", "bob"):
            continue
        key = (e["model"], e["provider"], e["condition"])
        if e["status"] == "done":
            cells[key].append(e)
        else:
            failed[key] += 1
    assert sum(failed.values()) == 4
    keys = sorted(set(cells) | set(failed))
    assert [(c["receiver"], c["provider"], c["policy"]) for c in got["feedback"]] == keys
    seen_dispute = seen_leak = False
    for c in got["feedback"]:
        key = (c["receiver"], c["provider"], c["policy"])
        es = cells[key]
        n = len(es)
        solved = sum(bool(e["solved"]) for e in es)
        assert (c["n_test"], c["n_corrected"], c["not_corrected"], c["failed"]) == \
            (n, solved, n - solved, failed[key]), key
        assert c["correction_rate"] == (pytest.approx(solved / n) if n else None)
        still = n
        for k, row in enumerate(c["by_round"], start=1):
            at = sum(1 for e in es if e.get("corrected_round") == k)
            sched = schedules[key[2]]
            assert row == {"round": k, "policy": sched[min(k, len(sched)) - 1],
                           "corrected": at, "rate": at / n if n else None, "open": still,
                           "conditional_rate": at / still if still else None}, (key, k)
            still -= at
        assert len(c["by_round"]) == 4
        src: Counter[str] = Counter()
        verd: Counter[str] = Counter()
        pers: Counter[str] = Counter()
        chars = leaks = 0
        for e in es:
            for m in msgs[e["episode_id"]]:
                meta = m.get("meta") or {}
                if m["kind"] != "feedback" or meta.get("source") not in (
                        "human", "persona", "replay", "fallback"):
                    continue
                src[meta["source"]] += 1
                if meta.get("verdict"):
                    verd[meta["verdict"]] += 1
                if meta.get("person"):
                    pers[meta["person"]] += 1
                chars += len(m["text"])
                leaks += bool(m.get("leaked"))
        nf = sum(src.values())
        assert c["n_feedback"] == nf and c["sources"] == dict(src), key
        assert c["verdicts"] == dict(verd) and c["persons"] == dict(pers), key
        assert c["mean_feedback_chars"] == (pytest.approx(chars / nf) if nf else None)
        assert c["n_leaked"] == leaks and c["leak_rate"] == (leaks / nf if nf else None)
        assert c["disputed"] == verd.get("correct", 0) and c["replay_misses"] == 0
        seen_dispute |= c["disputed"] > 0
        seen_leak |= leaks > 0
    # the figures are not all zero: the planted persona errors and leaks show
    assert seen_leak
    assert any(c["n_feedback"] for c in got["feedback"])
    # a rule round inside a human schedule (reveal, binary) is not counted as human feedback
    rule = sum(1 for e in eps if e["kind"] == "feedback" for m in msgs[e["episode_id"]]
               if m["kind"] == "feedback" and e["provider"] in ("alice", "bob")
               and (m.get("meta") or {}).get("source") not in ("human", "persona"))
    assert rule > 0
    assert seen_dispute


def test_annotate_cells_match_an_independent_recomputation(tmp_path: Path) -> None:
    run = _play(tmp_path, "ann", "protocol.mode=annotate", "providers.0.human.edit_rate=0.4")
    _fail_some(run, "annotate", 3)
    got = _metrics(run)
    eps, msgs = _raw(run)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    failed: Counter[tuple[str, str]] = Counter()
    for e in eps:
        if e["kind"] != "annotate":
            continue
        if e["status"] == "done":
            groups[(e["model"], e["provider"])].append(e)
        else:
            failed[(e["model"], e["provider"])] += 1
    pairs = sorted(set(groups) | set(failed))
    assert [(a["receiver"], a["provider"]) for a in got["annotate"]] == pairs
    assert sum(failed.values()) == 3
    kinds_seen: set[str] = set()
    for a in got["annotate"]:
        pair = (a["receiver"], a["provider"])
        es = groups[pair]
        n = len(es)
        counts: Counter[str] = Counter()
        pers: Counter[str] = Counter()
        src: Counter[str] = Counter()
        for e in es:
            for m in msgs[e["episode_id"]]:
                if m["kind"] == "feedback":
                    meta = m.get("meta") or {}
                    counts[meta.get("verdict", "reject")] += 1
                    if meta.get("person"):
                        pers[meta["person"]] += 1
                    src[meta.get("source", "")] += 1
        c, ed, rj = counts["confirm"], counts["edit"], counts["reject"]
        kinds_seen |= {k for k in ("confirm", "edit", "reject") if counts[k]}
        assert (a["n"], a["n_confirmed"], a["n_edited"], a["n_rejected"], a["failed"]) == \
            (n, c, ed, rj, failed[pair]), pair
        assert a["confirmed"] == pytest.approx(c / n)
        assert a["edited"] == pytest.approx(ed / n)
        assert a["rejected"] == pytest.approx(rj / n)
        assert a["confirmed_or_integrated"] == pytest.approx((c + ed) / n)
        assert a["proposal_accuracy"] == pytest.approx(
            sum(bool(e["first_correct"]) for e in es) / n)
        assert a["final_accuracy"] == pytest.approx(sum(bool(e["solved"]) for e in es) / n)
        assert a["persons"] == dict(pers) and a["sources"] == dict(src)
    assert kinds_seen == {"confirm", "edit", "reject"}


def test_outcomes_match_an_independent_classification(tmp_path: Path) -> None:
    """Every listed episode's outcome (mmsim.metrics.outcomes) recomputed from the raw tables:
    screening right -> first_correct (wrong: not listed), feedback solved -> corrected at its
    round, else never_corrected, failed -> failed, a correct-then-wrong grade sequence ->
    regressed (planted), other kinds by ``solved`` (unset: scored)."""
    from mmsim.metrics.outcomes import classify

    run = _play(tmp_path, "out")
    _fail_some(run, "feedback", 2)
    db = sqlite3.connect(run / "mmsim.sqlite")
    # a regression: the first grade of one never-corrected episode flipped to correct
    eid = db.execute("SELECT episode_id FROM episodes WHERE kind='feedback' AND solved=0 "
                     "AND status='done' ORDER BY episode_id LIMIT 1").fetchone()[0]
    first = db.execute("SELECT MIN(seq) FROM messages WHERE episode_id=? AND kind='grade'",
                       (eid,)).fetchone()[0]
    db.execute("UPDATE messages SET payload=json_set(payload, '$.correct', json('true')) "
               "WHERE episode_id=? AND seq=?", (eid, first))
    db.commit()
    db.close()
    eps, msgs = _raw(run)
    want: dict[str, tuple[str, int]] = {}
    for e in eps:
        grades = [bool(m["correct"]) for m in msgs[e["episode_id"]] if m["kind"] == "grade"]
        regressed = any(grades[i] and not grades[j] for i in range(len(grades))
                        for j in range(i + 1, len(grades)))
        rounds = int(e.get("rounds") or 0)
        if e["status"] != "done":
            out = "failed"
        elif regressed:
            out = "regressed"
        elif e["kind"] == "screen":
            if not e["first_correct"]:
                continue
            out = "first_correct"
        elif e["solved"]:
            out, rounds = "corrected", int(e.get("corrected_round") or rounds)
        else:
            out = "never_corrected"
        want[e["episode_id"]] = (out, rounds)
    store = RunStore.open(run, create=False)
    try:
        got = {o.episode_id: (o.outcome, o.round) for o in classify(store)}
    finally:
        store.close()
    assert got == want
    kinds = Counter(v[0] for v in got.values())
    assert kinds["regressed"] == 1 and kinds["failed"] == 2
    assert kinds["corrected"] and kinds["never_corrected"] and kinds["first_correct"]
