"""``mmsim.metrics.human`` (docs/human.md, the module docstring) and
``mmsim.metrics.outcomes`` (its module docstring) checked on small stores written here with
:class:`RunStore`, every figure recomputed independently from what was written (or from the
raw SQLite rows): provider personas by channel, rounds labelled by a policy's ``policy:`` or
name, cells whose every episode failed, replay misses, annotate runs (no feedback cells),
the scenario defaults, and the per-episode outcome classes of every kind (the grade
sequences read through the JSON1 fast path and through the fallback for SQLite without
JSON1). Triage of the mutants these kill: docs/mutation/human-outcomes.md."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import read_store

from mmsim.messages import Feedback, Grade
from mmsim.metrics.human import human_metrics
from mmsim.metrics.outcomes import _grade_sequences, classify
from mmsim.scenario import load_scenario
from mmsim.store import EpisodeRecord, RunStore

RUN = "run-h"

# the scenario of the feedback store: a persona, a web person (whose stray `persona:` the web
# channel ignores) and a model provider; a schedule, a policy named differently from the
# policy it plays, and a policy given by its name alone; two rounds
SCN = """
name: hm
dataset: {name: synthetic, size: 4, seed: 1}
receivers:
  - {name: r1, backend: sim}
  - {name: r2, backend: sim}
providers:
  - {name: alice, kind: human, channel: persona, human: {persona: novice-terse}}
  - {name: wendy, kind: human, channel: web, human: {persona: expert}}
  - {name: m, backend: sim}
policies:
  - {name: study, schedule: [human, human, reveal]}
  - {name: nudge, policy: binary}
  - detailed
protocol: {max_rounds: 2}
"""


def _scenario(tmp: Path) -> dict[str, Any]:
    p = tmp / "s.yaml"
    p.write_text(SCN)
    scn: dict[str, Any] = load_scenario(p).scenario.canonical()
    return scn  # the dict a run stores (runs.scenario)


def _grade(eid: str, turn: int, correct: bool) -> Grade:
    return Grade(run_id=RUN, episode_id=eid, turn=turn, sender="env", correct=correct,
                 answer="A", expected="B", method="choice")


def _fb(eid: str, turn: int, text: str, meta: dict[str, Any], leaked: bool = False
        ) -> Feedback:
    return Feedback(run_id=RUN, episode_id=eid, turn=turn, sender="p", feedback_kind="detailed",
                    text=text, policy="human", leaked=leaked, meta=meta)


def _ep(eid: str, kind: str, status: str = "done", **kw: Any) -> EpisodeRecord:
    return EpisodeRecord(episode_id=eid, run_id=RUN, kind=kind, sample_id=eid.split("/")[-1],
                         category="c", status=status,
                         error=None if status == "done" else "planted", **kw)


def _write(tmp: Path, records: list[EpisodeRecord]) -> Path:
    run = tmp / "run"
    store = RunStore.open(run)
    try:
        store.write_episodes(records)
    finally:
        store.close()
    return run


def _human(run: Path, scenario: dict[str, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] | None = read_store(run, human_metrics, scenario)
    return out


def _feedback_store(tmp: Path) -> Path:
    fb = "feedback"
    recs = [
        # (r1, alice, study): corrected in round 1, in round 2, never; one failed
        _ep("fb/a1", fb, model="r1", provider="alice", condition="study", solved=True,
            payload={"rounds": 1, "corrected_round": 1},
            messages=(_fb("fb/a1", 1, "look at the axis", {"source": "persona",
                                                           "person": "alice"}),)),
        _ep("fb/a2", fb, model="r1", provider="alice", condition="study", solved=True,
            payload={"rounds": 2, "corrected_round": 2},
            messages=(_fb("fb/a2", 1, "no", {"source": "persona", "person": "alice"}),
                      _fb("fb/a2", 2, "it is B", {"source": "persona", "person": "alice"},
                          leaked=True))),
        _ep("fb/a3", fb, model="r1", provider="alice", condition="study", solved=False,
            payload={"rounds": 2, "corrected_round": None},
            messages=(_fb("fb/a3", 1, "wrong", {"source": "persona", "person": "alice"}),
                      _fb("fb/a3", 2, "still wrong", {"source": "persona",
                                                      "person": "alice"}),)),
        _ep("fb/a4", fb, "failed", model="r1", provider="alice", condition="study"),
        # (r1, wendy, nudge): two replay misses answered by a policy, then a person who
        # disputes the grade, then a replayed answer; a rule message (no human source)
        _ep("fb/w1", fb, model="r1", provider="wendy", condition="nudge", solved=False,
            payload={"rounds": 2, "corrected_round": None},
            messages=(
                _fb("fb/w1", 1, "Your answer is incorrect.",
                    {"source": "fallback", "fallback": "binary", "replay_miss": "no match"}),
                _fb("fb/w1", 2, "Your answer is incorrect.",
                    {"source": "fallback", "fallback": "binary", "replay_miss": "no match"}),
                _fb("fb/w1", 2, "Your answer is correct.",
                    {"source": "human", "person": "ann", "verdict": "correct"}),
                _fb("fb/w1", 2, "check B", {"source": "replay", "person": "bo",
                                            "verdict": "feedback"}),
                _fb("fb/w1", 2, "The answer is B.", {}))),
        # (r2, alice, detailed): every episode failed
        _ep("fb/f1", fb, "failed", model="r2", provider="alice", condition="detailed"),
        _ep("fb/f2", fb, "failed", model="r2", provider="alice", condition="detailed"),
        # a model provider's episode and a screening episode: not human feedback
        _ep("fb/m1", fb, model="r1", provider="m", condition="study", solved=True,
            payload={"rounds": 1, "corrected_round": 1},
            messages=(_fb("fb/m1", 1, "hint", {"source": "persona"}),)),
        _ep("screen/r1/s1", "screen", model="r1", first_correct=False,
            messages=(_grade("screen/r1/s1", 0, False),)),
    ]
    return _write(tmp, recs)


def test_feedback_cells_providers_and_round_policies(tmp_path: Path) -> None:
    scn = _scenario(tmp_path)
    got = _human(_feedback_store(tmp_path), scn)
    assert got is not None
    # docs/human.md: `persona` is the persona channel's option; other channels have none
    assert got["providers"] == [
        {"name": "alice", "channel": "persona", "persona": "novice-terse"},
        {"name": "wendy", "channel": "web", "persona": None}]
    cells = {(c["receiver"], c["provider"], c["policy"]): c for c in got["feedback"]}
    assert sorted(cells) == [("r1", "alice", "study"), ("r1", "wendy", "nudge"),
                             ("r2", "alice", "detailed")]

    study = cells[("r1", "alice", "study")]
    assert (study["n_test"], study["n_corrected"], study["not_corrected"], study["failed"]) \
        == (3, 2, 1, 1)
    assert study["correction_rate"] == pytest.approx(2 / 3)
    # rounds 1-2 of [human, human, reveal]: one corrected of 3 open, then one of 2 open
    assert study["by_round"] == [
        {"round": 1, "policy": "human", "corrected": 1, "rate": pytest.approx(1 / 3),
         "open": 3, "conditional_rate": pytest.approx(1 / 3)},
        {"round": 2, "policy": "human", "corrected": 1, "rate": pytest.approx(1 / 3),
         "open": 2, "conditional_rate": pytest.approx(1 / 2)}]
    texts = ["look at the axis", "no", "it is B", "wrong", "still wrong"]
    assert (study["n_feedback"], study["sources"], study["persons"], study["verdicts"]) == \
        (5, {"persona": 5}, {"alice": 5}, {})
    assert study["mean_feedback_chars"] == pytest.approx(sum(map(len, texts)) / 5)
    assert (study["n_leaked"], study["leak_rate"]) == (1, pytest.approx(1 / 5))
    assert (study["disputed"], study["replay_misses"]) == (0, 0)

    nudge = cells[("r1", "wendy", "nudge")]
    # a policy spec `{name: nudge, policy: binary}` plays `binary` in every round
    assert [r["policy"] for r in nudge["by_round"]] == ["binary", "binary"]
    assert [r["corrected"] for r in nudge["by_round"]] == [0, 0]
    # four human-channel messages (the rule message has no source): two replay misses
    # answered by the fallback policy, one dispute ("correct"), one replayed feedback
    assert nudge["n_feedback"] == 4
    assert nudge["sources"] == {"fallback": 2, "human": 1, "replay": 1}
    assert nudge["replay_misses"] == 2
    assert nudge["verdicts"] == {"correct": 1, "feedback": 1}
    assert nudge["disputed"] == 1
    assert nudge["persons"] == {"ann": 1, "bo": 1}

    gone = cells[("r2", "alice", "detailed")]
    # a policy given by its name alone plays itself; a cell whose every episode failed is
    # listed with its failures and no shares
    assert [r["policy"] for r in gone["by_round"]] == ["detailed", "detailed"]
    assert (gone["n_test"], gone["failed"], gone["n_corrected"], gone["n_feedback"]) == \
        (0, 2, 0, 0)
    assert gone["correction_rate"] is None and gone["mean_feedback_chars"] is None
    assert gone["leak_rate"] is None
    assert all(r["rate"] is None and r["conditional_rate"] is None and r["open"] == 0
               for r in gone["by_round"])


def test_scenario_defaults(tmp_path: Path) -> None:
    """A scenario dict without `protocol` or `policies` gets the spec's defaults
    (ProtocolSpec.max_rounds = 3; a policy not listed plays itself)."""
    run = _feedback_store(tmp_path)
    providers = _scenario(tmp_path)["providers"]
    got = _human(run, {"providers": providers})
    assert got is not None
    for c in got["feedback"]:
        assert [r["round"] for r in c["by_round"]] == [1, 2, 3]
        assert {r["policy"] for r in c["by_round"]} == {c["policy"]}
    # no human provider and no annotate episode: no human section
    assert _human(run, {"providers": [p for p in providers if p["name"] == "m"]}) is None
    assert _human(run, {}) is None


def _annotate_store(tmp: Path) -> Path:
    a = "annotate"
    recs = []
    for i, verdict in enumerate(("confirm", "confirm", "edit", "reject")):
        eid = f"annotate/r1/alice/s{i}"
        recs.append(_ep(eid, a, model="r1", provider="alice", condition="annotate",
                        first_correct=verdict == "confirm", solved=verdict != "reject",
                        payload={"n_feedback": 1},
                        messages=(_grade(eid, 0, verdict == "confirm"),
                                  _fb(eid, 1, "B" if verdict == "edit" else "",
                                      {"source": "persona", "person": "alice",
                                       "verdict": verdict}))))
    # every annotate episode of (r2, alice) failed
    recs += [_ep(f"annotate/r2/alice/s{i}", a, "failed", model="r2", provider="alice",
                 condition="annotate") for i in range(2)]
    return _write(tmp, recs)


def test_annotate_cells(tmp_path: Path) -> None:
    run = _annotate_store(tmp_path)
    scn = _scenario(tmp_path)
    got = _human(run, scn)
    assert got is not None
    # an annotate run has no feedback episodes: its reviews are not feedback cells
    assert got["feedback"] == []
    ann = {(a["receiver"], a["provider"]): a for a in got["annotate"]}
    assert sorted(ann) == [("r1", "alice"), ("r2", "alice")]
    a1 = ann[("r1", "alice")]
    assert (a1["n"], a1["n_confirmed"], a1["n_edited"], a1["n_rejected"], a1["failed"]) == \
        (4, 2, 1, 1, 0)
    assert a1["confirmed"] == pytest.approx(0.5)
    assert a1["confirmed_or_integrated"] == pytest.approx(0.75)
    assert a1["proposal_accuracy"] == pytest.approx(0.5)
    assert a1["final_accuracy"] == pytest.approx(0.75)
    assert a1["sources"] == {"persona": 4} and a1["persons"] == {"alice": 4}
    a2 = ann[("r2", "alice")]
    assert (a2["n"], a2["failed"], a2["n_confirmed"]) == (0, 2, 0)
    assert a2["confirmed"] is None and a2["final_accuracy"] is None
    # annotate episodes alone make a human section, whatever the providers are (a model
    # provider can review proposals too), and a scenario that names no providers
    for scenario in ({"providers": [{"name": "alice", "backend": "sim"}]}, {}):
        alone = _human(run, scenario)
        assert alone is not None and alone["providers"] == [] and alone["feedback"] == []
        assert [(a["receiver"], a["provider"], a["n"]) for a in alone["annotate"]] == \
            [("r1", "alice", 4), ("r2", "alice", 0)]


# -- outcomes ----------------------------------------------------------------------------

def _outcome_store(tmp: Path) -> Path:
    fb, g = "feedback", _grade
    recs = [
        _ep("s/1", "screen", first_correct=True, messages=(g("s/1", 0, True),)),
        _ep("s/2", "screen", first_correct=False, messages=(g("s/2", 0, False),)),
        # corrected in round 2 of a protocol that asked once more after the success
        _ep("f/1", fb, solved=True, payload={"rounds": 3, "corrected_round": 2},
            messages=(g("f/1", 0, False), g("f/1", 1, False), g("f/1", 2, True),
                      g("f/1", 3, True))),
        _ep("f/2", fb, solved=False, payload={"rounds": 3, "corrected_round": None},
            messages=tuple(g("f/2", t, False) for t in range(4))),
        # right in round 1, wrong again in round 2
        _ep("f/3", fb, solved=True, payload={"rounds": 2, "corrected_round": 1},
            messages=(g("f/3", 0, False), g("f/3", 1, True), g("f/3", 2, False))),
        _ep("f/4", fb, "failed", payload={"rounds": 1}),
        # single-shot episodes of other protocols: by `solved`; one with no grade stored
        _ep("c/1", "item", solved=True),
        _ep("c/2", "item", solved=False, messages=(g("c/2", 0, False),)),
        _ep("c/3", "judged", solved=None, reward=0.5),
    ]
    return _write(tmp, recs)


WANT = {"s/1": ("first_correct", 0), "f/1": ("corrected", 2), "f/2": ("never_corrected", 3),
        "f/3": ("regressed", 2), "f/4": ("failed", 1), "c/1": ("correct", 0),
        "c/2": ("wrong", 0), "c/3": ("scored", 0)}


def _raw_grades(run: Path) -> dict[str, list[bool]]:
    db = sqlite3.connect(run / "mmsim.sqlite")
    out: dict[str, list[bool]] = {}
    for eid, payload in db.execute("SELECT episode_id, payload FROM messages "
                                   "WHERE kind='grade' ORDER BY episode_id, seq"):
        out.setdefault(eid, []).append(bool(json.loads(payload)["correct"]))
    db.close()
    return out


def _no_json1(*args: Any) -> Any:
    raise sqlite3.OperationalError("no such function: json_extract")


@pytest.mark.parametrize("json1", [True, False], ids=["json1", "no-json1"])
def test_outcome_classes(tmp_path: Path, json1: bool) -> None:
    run = _outcome_store(tmp_path)
    raw = _raw_grades(run)
    assert raw["f/1"] == [False, False, True, True] and "c/1" not in raw
    store = RunStore.open(run, create=False)
    try:
        if not json1:  # SQLite built without JSON1: the fallback reads the payloads
            store.conn.create_function("json_extract", 2, _no_json1)
            with pytest.raises(sqlite3.OperationalError):
                store.conn.execute("SELECT json_extract('{}', '$.a')").fetchall()
        assert _grade_sequences(store) == raw
        got = classify(store)
        episodes = {e["episode_id"]: e for e in store.episodes()}
    finally:
        store.close()
    assert {o.episode_id: (o.outcome, o.round) for o in got} == WANT
    for o in got:  # each outcome carries its stored episode (for transcript viewers)
        assert o.episode == episodes[o.episode_id]
