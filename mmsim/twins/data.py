"""What a twin is fitted to: a recorded run's transcripts, read from its store.

Only the parts of the transcript the sim agent's generative model depends on are kept:
per item its answer format (letters), ground truth and difficulty; per agent its screening
answer; per receiver and feedback round the feedback kind it got (``misleading`` for a sim
provider's unhelpful detailed feedback, as :class:`~mmsim.backends.sim.SimBackend` sees
it), the answers it gave before, and the answer it gave.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsim.data.sample import Sample
from mmsim.errors import UserError
from mmsim.store import RunStore

#: The feedback kind of the built-in policies (``retry`` feeds back kind ``none``).
POLICY_KINDS = {"binary": "binary", "detailed": "detailed", "reveal": "reveal", "retry": "none"}
#: Feedback kinds the sim agent has an uptake for (others fall back to ``binary``).
KINDS = ("binary", "detailed", "reveal", "none", "misleading")


@dataclass(frozen=True, slots=True)
class Item:
    """One item as the twin sees it. ``letters`` is empty for free-form items."""

    id: str
    kind: str  # choice | numeric | exact
    letters: tuple[str, ...]
    answer: str
    category: str = ""
    difficulty: float | None = None

    @property
    def n_letters(self) -> int:
        return len(self.letters) if self.kind == "choice" else 0


@dataclass(frozen=True, slots=True)
class Answer:
    """A receiver reply: its extracted answer (None: unparsed) and whether it was right."""

    answer: str | None
    correct: bool


@dataclass(frozen=True, slots=True)
class Step:
    """A receiver's reply after ``round`` feedback messages (round >= 1)."""

    agent: str
    provider: str
    policy: str
    item: str
    round: int
    kind: str  # the effective kind the sim would use (misleading, unknown -> binary)
    previous: tuple[str, ...]  # parsed answers given before, in order
    reply: Answer


@dataclass(slots=True)
class RunData:
    """A run's transcripts, reduced to what the twin likelihood needs."""

    run_dir: Path
    run_id: str
    scenario: dict[str, Any]
    manifest: dict[str, Any]
    items: dict[str, Item]
    screen: dict[str, dict[str, Answer]]  # agent -> item -> first answer
    steps: list[Step]
    # provider -> list of (raw feedback kind, sim_helpful or None, leaked)
    feedback: dict[str, list[tuple[str, bool | None, bool]]] = field(default_factory=dict)
    # policy -> raw feedback kind by round (as recorded)
    policy_kinds: dict[str, dict[int, str]] = field(default_factory=dict)

    @property
    def receivers(self) -> list[str]:
        return [a["name"] for a in self.scenario.get("receivers", [])]

    @property
    def providers(self) -> list[str]:
        return [a["name"] for a in self.scenario.get("providers", [])]

    @property
    def agents(self) -> list[str]:
        out: list[str] = []
        for n in [*self.receivers, *self.providers]:
            if n not in out:
                out.append(n)
        return out

    def responses(self, agent: str) -> tuple[int, int]:
        """(unparsed, total) replies of ``agent``: screening and feedback rounds."""
        scr = self.screen.get(agent, {}).values()
        n = len(scr) + sum(1 for s in self.steps if s.agent == agent)
        k = sum(a.answer is None for a in scr) + sum(
            s.reply.answer is None for s in self.steps if s.agent == agent)
        return k, n


def effective_kind(kind: str, helpful: bool | None) -> str:
    """The uptake key :class:`SimBackend` uses for feedback of ``kind``."""
    if kind == "detailed" and helpful is False:
        return "misleading"
    return kind if kind in KINDS else "binary"


def read_run(run_dir: str | Path) -> RunData:
    """Read a run's store (raises :class:`UserError` when there is none or it is empty)."""
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir, create=False)
    try:
        return _read(store, run_dir)
    finally:
        store.close()


def _read(store: RunStore, run_dir: Path) -> RunData:
    run = store.run()
    if run is None:
        raise UserError("the run store holds no run", where=str(run_dir))
    if run["scenario"].get("kind", "interfeedback") != "interfeedback":
        raise UserError("twins are fitted to InterFeedback runs", where=str(run_dir))
    episodes = {e["episode_id"]: e for e in store.episodes() if e["status"] == "done"}
    if not any(e["kind"] == "screen" for e in episodes.values()):
        raise UserError("the run has no finished screening episodes", where=str(run_dir))
    # one query for the small messages (no observations), one for the answer formats
    msgs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for eid, kind, payload in store.conn.execute(
            "SELECT episode_id, kind, payload FROM messages WHERE kind != 'observation' "
            "ORDER BY episode_id, seq"):
        if eid in episodes:
            msgs[eid].append({"kind": kind, **json.loads(payload)})
    letters: dict[str, tuple[str, tuple[str, ...]]] = {}
    first_agent: dict[str, str] = {}
    for e in episodes.values():
        if e["kind"] == "screen":
            first_agent.setdefault(e["sample_id"], e["episode_id"])
    wanted = list(first_agent.values())
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        q = ("SELECT episode_id, payload FROM messages WHERE seq = 0 AND kind = 'observation' "
             f"AND episode_id IN ({','.join('?' * len(chunk))})")
        for eid, payload in store.conn.execute(q, chunk):
            fmt = json.loads(payload).get("answer_format") or {}
            letters[episodes[eid]["sample_id"]] = (str(fmt.get("kind", "exact")),
                                                   tuple(fmt.get("letters") or ()))

    items: dict[str, Item] = {}
    screen: dict[str, dict[str, Answer]] = defaultdict(dict)
    steps: list[Step] = []
    feedback: dict[str, list[tuple[str, bool | None, bool]]] = defaultdict(list)
    policy_kinds: dict[str, dict[int, str]] = defaultdict(dict)
    for eid, e in sorted(episodes.items()):
        ms = msgs.get(eid, [])
        grades = [m for m in ms if m["kind"] == "grade"]
        responses = [m for m in ms if m["kind"] == "response"]
        if not grades or len(grades) != len(responses):
            continue
        sid = e["sample_id"]
        if sid not in items:
            kind, lets = letters.get(sid, (str(grades[0].get("method", "exact")), ()))
            items[sid] = Item(id=sid, kind=kind, letters=lets, answer=str(grades[0]["expected"]),
                              category=e["category"])
        replies = [Answer(g.get("answer") if not g.get("unparsed") else None,
                          bool(g["correct"])) for g in grades]
        if e["kind"] == "screen":
            screen[e["model"]][sid] = replies[0]
            continue
        fbs = [m for m in ms if m["kind"] == "feedback"]
        for r, fb in enumerate(fbs, start=1):
            helpful = fb.get("meta", {}).get("sim_helpful")
            helpful = helpful if isinstance(helpful, bool) else None
            # a leak: the detector's flag, or the sim provider's own phrase
            leaked = bool(fb.get("leaked")) or (
                fb["feedback_kind"] == "detailed" and not fb.get("reveals_answer")
                and "the correct answer is" in str(fb.get("text", "")).lower())
            feedback[e["provider"]].append((str(fb["feedback_kind"]), helpful, leaked))
            policy_kinds[e["condition"]].setdefault(r, str(fb["feedback_kind"]))
            if r >= len(replies):
                break
            previous = tuple(a.answer for a in replies[:r] if a.answer is not None)
            steps.append(Step(agent=e["model"], provider=e["provider"], policy=e["condition"],
                              item=sid, round=r,
                              kind=effective_kind(str(fb["feedback_kind"]), helpful),
                              previous=previous, reply=replies[r]))
    return RunData(run_dir=run_dir, run_id=str(run["run_id"]), scenario=run["scenario"],
                   manifest=run["manifest"], items=items, screen=dict(screen), steps=steps,
                   feedback=dict(feedback), policy_kinds=dict(policy_kinds))


def attach_difficulty(data: RunData, difficulty: dict[str, float | None]) -> None:
    """Set the items' data difficulty (from the dataset's samples)."""
    data.items = {k: Item(id=v.id, kind=v.kind, letters=v.letters, answer=v.answer,
                          category=v.category, difficulty=difficulty.get(k))
                  for k, v in data.items.items()}


def load_dataset_difficulty(data: RunData) -> dict[str, float | None]:
    """The dataset's ``difficulty`` per item, loading the dataset the run was made with
    (its images are cached under the run's ``assets/``)."""
    from mmsim.protocols.interfeedback import InterFeedback, Scenario
    from mmsim.runtime.loading import load_data
    from mmsim.spec import LoadedScenario

    scn = Scenario.model_validate(data.scenario)
    src = data.manifest.get("scenario_file")
    path = Path(src) if src else data.run_dir / "scenario.yaml"
    loaded = LoadedScenario(scenario=scn, path=path, limit=data.manifest.get("limit"))
    samples: list[Sample] = load_data(InterFeedback(), loaded, data.run_dir / "assets")
    return {s.id: s.difficulty for s in samples}
