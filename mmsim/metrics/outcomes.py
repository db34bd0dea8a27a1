"""Per-episode outcomes, for transcript viewers and stratified samples.

* ``first_correct``: a screening episode answered correctly at the first try (such items
  never enter a feedback test set);
* ``corrected``: a feedback episode whose receiver became correct within the budget;
* ``never_corrected``: a feedback episode still wrong when the budget was spent;
* ``regressed``: an episode whose answer was graded correct at some round and wrong at a
  later one. The InterFeedback loop stops at the first correct answer, so its episodes
  cannot regress; the outcome exists for protocols that keep asking after a success (it
  is computed from the stored grades, whatever the protocol);
* ``failed``: ended by an infrastructure error (never scored);
* ``correct`` / ``wrong``: a single-shot episode of another protocol (e.g. classification),
  by its ``solved`` flag;
* ``scored``: an episode that is scored but not right or wrong (``solved`` unset): a
  judged open answer (its score is the judge's) or a judge calibration pair.

Screening episodes answered wrongly are not listed: each reappears as round 0 of its
feedback episodes (or was left out of every test set).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mmsim.store import RunStore

OUTCOMES = ("corrected", "never_corrected", "regressed", "first_correct", "failed", "correct",
            "wrong", "scored")


@dataclass(frozen=True, slots=True)
class EpisodeOutcome:
    episode_id: str
    outcome: str
    round: int  # rounds played (0 for screening); for a corrected episode, its round
    episode: dict[str, Any]


def _grade_sequences(store: RunStore) -> dict[str, list[bool]]:
    """Correctness of every grade of every episode, in order (one cheap SQL pass)."""
    seqs: dict[str, list[bool]] = {}
    try:
        rows = store.conn.execute(
            "SELECT episode_id, json_extract(payload, '$.correct') FROM messages "
            "WHERE kind='grade' ORDER BY episode_id, seq").fetchall()
    except Exception:  # SQLite without JSON1
        rows = [(e, json.loads(p).get("correct")) for e, p in store.conn.execute(
            "SELECT episode_id, payload FROM messages WHERE kind='grade' "
            "ORDER BY episode_id, seq")]
    for eid, correct in rows:
        seqs.setdefault(eid, []).append(bool(correct))
    return seqs


def regressed(grades: list[bool]) -> bool:
    """Correct at some round, wrong at a later one."""
    seen_correct = False
    for g in grades:
        if g:
            seen_correct = True
        elif seen_correct:
            return True
    return False


def classify(store: RunStore) -> list[EpisodeOutcome]:
    """The outcome of every listed episode of a run (see the module docstring)."""
    grades = _grade_sequences(store)
    out: list[EpisodeOutcome] = []
    for ep in store.episodes():
        eid = ep["episode_id"]
        rounds = int(ep.get("rounds") or 0)  # a protocol's own field (payload)
        if ep["status"] != "done":
            outcome = "failed"
        elif regressed(grades.get(eid, [])):
            outcome = "regressed"
        elif ep["kind"] == "screen":
            if not ep["first_correct"]:
                continue
            outcome = "first_correct"
        elif ep["kind"] != "feedback":
            outcome = ("scored" if ep["solved"] is None else
                       "correct" if ep["solved"] else "wrong")
        elif ep["solved"]:
            outcome = "corrected"
            rounds = int(ep.get("corrected_round") or rounds)
        else:
            outcome = "never_corrected"
        out.append(EpisodeOutcome(eid, outcome, rounds, ep))
    return out


__all__ = ["OUTCOMES", "EpisodeOutcome", "classify", "regressed"]
