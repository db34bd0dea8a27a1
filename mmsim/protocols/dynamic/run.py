"""A ``kind: dynamic`` run (played by the kernel) in two phases, each episode committed when
it ends:

1. **calibration** — every judge scores paraphrases and corruptions of the references of the
   judged families (``runs`` times); the scoring judge is then gated on its AUROC and a
   judge below ``judge.min_auroc`` is refused (exit 2, the calibration kept in the store);
2. **tasks** — every model x item x task family; open outputs are scored by the scoring
   judge (raw verdicts are stored; the calibration map is applied by the metrics).

Episode lists, task instances (candidate answers, options) and perturbations are pure
functions of the scenario and the data, so a rerun plays only what is missing and the
metrics of a resumed run equal those of an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from mmsim.actors.roles import AskContext, JudgeRequest
from mmsim.backends.base import Oracle
from mmsim.data.sample import Sample
from mmsim.errors import InfrastructureError
from mmsim.messages import AnswerFormat, ChatTurn, Envelope, Observation, Part, Text, Verdict
from mmsim.protocols.dynamic.families import TASK_FAMILIES, TaskInstance, family_code
from mmsim.protocols.dynamic.metrics import EP_CALIB, EP_TASK, judge_calibration, load_results
from mmsim.protocols.dynamic.perturb import corrupt, corruption_kinds, paraphrase
from mmsim.protocols.dynamic.scenario import DynamicScenario
from mmsim.protocols.dynamic.sim import DynView
from mmsim.runtime.pool import Jobs
from mmsim.runtime.protocol import Actors, Played, ProtocolRun, RunRefused, RunSetup
from mmsim.store import EpisodeRecord, RunStore

log = structlog.get_logger("mmsim.dynamic")


class JudgeRefused(RunRefused):
    """The scoring judge failed the calibration gate (exit 2)."""


class DynResult(Envelope):
    """The outcome of a dynamic-evaluation episode (stored with its messages).

    ``score``: a verifiable score (0/1) for exact families; for judged ones and calibration
    pairs the judge's *raw* score in [0, 1] (None: the verdict stayed unparsed).
    """

    kind: Literal["dyn_result"] = "dyn_result"
    phase: Literal["task", "calibration"]
    family: str
    agent: str
    item_id: str
    scoring: Literal["exact", "judge"]
    score: float | None
    answer: str | None = None
    unparsed: bool = False
    judge: str | None = None
    judge_parse: str | None = None
    judge_prompt_tokens: int = 0
    judge_completion_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    label: int | None = None
    perturbation: str | None = None
    judge_run: int = 0
    pair_id: str = ""
    #: what the answer is scored against: the expected answer (exact families) or the
    #: reference output (judged ones and calibration pairs)
    reference: str | None = None
    #: calibration pairs only (they have no model turn): the question and the candidate
    #: output the judge scored, so the transcript shows what the judge saw
    question: str | None = None
    output: str | None = None


@dataclass(frozen=True, slots=True)
class TaskUnit:
    episode_id: str
    model: str
    item: Sample
    instance: TaskInstance


@dataclass(frozen=True, slots=True)
class CalibPair:
    pair_id: str
    family: str
    item_id: str
    question: str
    reference: str
    candidate: str
    label: int
    perturbation: str


@dataclass(frozen=True, slots=True)
class CalibUnit:
    episode_id: str
    judge: str
    run: int
    pair: CalibPair


def instance(scn: DynamicScenario, family: str, item: Sample) -> TaskInstance:
    """The task of ``family`` on ``item`` (seeded: the same for every model and rerun)."""
    rng = random.Random(f"mmsim-dyn:{scn.seed}:{family}:{item.id}")
    return TASK_FAMILIES.get(family).build(item, rng)


def plan_tasks(scn: DynamicScenario, items: list[Sample]) -> list[TaskUnit]:
    units = []
    for fam in scn.tasks:
        family = TASK_FAMILIES.get(fam)
        insts = [(it, instance(scn, fam, it)) for it in items if family.applies(it)]
        for m in scn.models:
            units += [TaskUnit(f"dyn/task/{fam}/{m.name}/{it.id}", m.name, it, inst)
                      for it, inst in insts]
    return units


def calibration_pairs(scn: DynamicScenario, items: list[Sample]) -> list[CalibPair]:
    """Paraphrases (label 1) and corruptions (label 0, the kinds taken in turn) of the
    references of the judged families on the first ``calibration.items`` items."""
    cal = scn.judge.calibration
    pairs: list[CalibPair] = []
    for item in items[:cal.items]:
        for fam in scn.tasks:
            if not TASK_FAMILIES.get(fam).applies(item):
                continue
            inst = instance(scn, fam, item)
            if inst.scoring != "judge":
                continue
            ref = inst.expected
            base = f"{fam}/{item.id}"
            for k in range(cal.paraphrases):
                rng = random.Random(f"mmsim-dyn:{scn.seed}:para:{base}:{k}")
                pairs.append(CalibPair(f"{base}/p{k}", fam, item.id, inst.prompt, ref,
                                       paraphrase(ref, rng), 1, "paraphrase"))
            kinds = corruption_kinds(ref)
            for k in range(cal.corruptions if kinds else 0):
                rng = random.Random(f"mmsim-dyn:{scn.seed}:corrupt:{base}:{k}")
                start = random.Random(f"mmsim-dyn:{scn.seed}:kind:{base}").randrange(len(kinds))
                text, kind = corrupt(ref, rng, kinds[(start + k) % len(kinds)])
                pairs.append(CalibPair(f"{base}/c{k}", fam, item.id, inst.prompt, ref, text, 0,
                                       kind or "corruption"))
    return pairs


def observation(unit: TaskUnit, run_id: str) -> Observation:
    parts: list[Part] = [*unit.item.images, *unit.item.videos, Text(text=unit.instance.prompt)]
    return Observation(run_id=run_id, episode_id=unit.episode_id, turn=0, sender="env",
                       conversation=(ChatTurn(role="user", parts=tuple(parts)),),
                       answer_format=unit.instance.answer_format)


def _judge_oracle(key: str, item_id: str, output: str, reference: str, scale: int) -> Oracle:
    sample = Sample(id=item_id, question="", answer="", answer_format=AnswerFormat(kind="exact"),
                    meta={"dyn_judge": {"output": output, "reference": reference,
                                        "scale": scale}})
    return Oracle(sample=sample, episode_key=key)


def refusal_message(judge: str, stats: dict[str, Any], run_dir: Path) -> str:
    a = stats.get("auroc")
    shown = "undefined (no paraphrase/corruption pairs were scored)" if a is None \
        else f"{a:.3f}"
    return (f"judge {judge!r} is refused for scoring open outputs: its paraphrase-vs-"
            f"corruption AUROC is {shown} on {stats.get('n_pairs', 0)} calibration pairs, "
            f"below judge.min_auroc {stats.get('min_auroc', 0):.2f} — it cannot tell a "
            "paraphrase of a reference from a corrupted one. Choose another judge "
            "(judge.use) or, knowingly, lower judge.min_auroc; the calibration table is in "
            f"'mmsim report {run_dir}'")


CALIBRATION, TASKS = "judge calibration", "tasks"


class DynamicRun(ProtocolRun[DynamicScenario, list[Sample]]):
    """One dynamic-evaluation run in one process. A job is an episode id (every process
    plans the same calibration pairs and task instances from the scenario and the data)."""

    phases = (CALIBRATION, TASKS)

    def __init__(self, setup: RunSetup[list[Sample]]):
        super().__init__(setup)
        scn, items = self.scn, self.data
        self.tasks = plan_tasks(scn, items)
        self.pairs = calibration_pairs(scn, items)
        self.calib = [CalibUnit(f"dyn/calib/{j.name}/r{r}/{p.pair_id}", j.name, r, p)
                      for j in scn.judges for r in range(scn.judge.calibration.runs)
                      for p in self.pairs]
        self.task_by_id = {u.episode_id: u for u in self.tasks}
        self.calib_by_id = {u.episode_id: u for u in self.calib}
        self.item_by_id = {s.id: s for s in items}

    def manifest(self) -> dict[str, Any]:
        from mmsim.actors.roles import JUDGE_PROMPT
        from mmsim.runtime.manifest import sha256_text

        return {"task_codes": {t: family_code(t) for t in self.scn.tasks},
                "calibration_pairs": len(self.pairs),
                "prompt_templates": {"judge": sha256_text(self.scn.judge.prompt or JUDGE_PROMPT),
                                     "judge.overridden": self.scn.judge.prompt is not None,
                                     "judge.sees_image": self.scn.judge.sees_image}}

    def jobs(self, phase: str, done: Container[str], store: RunStore | None
             ) -> tuple[Jobs[str], int]:
        units: list[CalibUnit] | list[TaskUnit] = (self.calib if phase == CALIBRATION
                                                   else self.tasks)
        return Jobs.of(u.episode_id for u in units if u.episode_id not in done), len(units)

    def after_phase(self, phase: str, store: RunStore | None) -> None:
        """The scoring judge's calibration gate: refused below ``judge.min_auroc``."""
        if phase != CALIBRATION or not self.pairs or store is None:
            return
        scn = self.scn
        name = scn.scoring_judge
        results, _ = load_results(store, EP_CALIB)
        stats = judge_calibration([r for r in results if r["agent"] == name],
                                  scn.judge.method, scn.judge.min_auroc)
        st = stats.get(name, {"auroc": None, "n_pairs": 0, "min_auroc": scn.judge.min_auroc})
        if st["auroc"] is None or st["auroc"] < scn.judge.min_auroc:
            raise JudgeRefused(refusal_message(name, st, self.setup.run_dir),
                               where=self.loaded.where("judge", "use"), field="judge.use")

    async def play(self, phase: str, job: str, actors: Actors) -> Played:
        if phase == CALIBRATION:
            return await self.calibration_episode(self.calib_by_id[job], actors)
        return await self.task_episode(self.task_by_id[job], actors)

    async def calibration_episode(self, u: CalibUnit, actors: Actors) -> Played:
        scn = self.scn
        p = u.pair
        key = u.episode_id
        judge = actors.judges[u.judge]
        rec = EpisodeRecord(episode_id=key, run_id=self.run_id, kind=EP_CALIB,
                            judge=u.judge, condition="calibration", sample_id=p.pair_id,
                            category=p.perturbation, status="done",
                            simulated=judge.backend.simulated)
        try:
            v: Verdict = await judge.ask(JudgeRequest(
                run_id=self.run_id, episode_id=key, turn=0, question=p.question,
                output=p.candidate, reference=p.reference, scale=scn.judge.scale,
                visuals=scn.judge_visuals(p.family, self.item_by_id[p.item_id]),
                prompt=scn.judge.prompt,
                oracle=_judge_oracle(key, p.item_id, p.candidate, p.reference,
                                     scn.judge.scale),
                seed=scn.seed + 1000 * u.run))
        except InfrastructureError as exc:
            rec.status, rec.error = "failed", str(exc)
            return Played(rec)
        res = DynResult(run_id=self.run_id, episode_id=key, turn=1, sender="env",
                        phase="calibration", family=p.family, agent=u.judge,
                        item_id=p.item_id, scoring="judge", score=v.score, judge=u.judge,
                        judge_parse=v.parse, judge_prompt_tokens=v.usage.prompt_tokens,
                        judge_completion_tokens=v.usage.completion_tokens, label=p.label,
                        perturbation=p.perturbation, judge_run=u.run, pair_id=p.pair_id,
                        reference=p.reference, question=p.question, output=p.candidate)
        rec.judge_prompt_tokens = v.usage.prompt_tokens
        rec.judge_completion_tokens = v.usage.completion_tokens
        rec.judge_retries = v.usage.retries
        rec.payload = {"label": p.label, "judge_unparsed": v.score is None}
        rec.messages = (v, res)
        return Played(rec)

    async def task_episode(self, u: TaskUnit, actors: Actors) -> Played:
        scn = self.scn
        inst = u.instance
        obs = observation(u, self.run_id)
        view_sample = Sample(id=u.item.id, question=inst.prompt, answer=inst.expected,
                             answer_format=inst.answer_format, difficulty=u.item.difficulty,
                             meta={"dyn_view": DynView(u.item, inst)})
        resp = await actors.models[u.model].ask(
            (obs, AskContext(oracle=Oracle(sample=view_sample, episode_key=u.episode_id),
                             seed=scn.seed)))
        rec = EpisodeRecord(
            episode_id=u.episode_id, run_id=self.run_id, kind=EP_TASK, model=u.model,
            condition=inst.family, sample_id=u.item.id, category=u.item.category,
            status="done", n_responses=1,
            payload={"n_options": len(inst.answer_format.letters), "scoring": inst.scoring},
            model_prompt_tokens=resp.usage.prompt_tokens,
            model_completion_tokens=resp.usage.completion_tokens, latency_s=resp.latency_s,
            model_retries=resp.usage.retries, simulated=resp.simulated)
        if resp.parse == "error":
            rec.status, rec.error, rec.messages = "failed", resp.error, (obs, resp)
            return Played(rec)
        common = {"run_id": self.run_id, "episode_id": u.episode_id, "turn": 1,
                  "sender": "env", "phase": "task", "family": inst.family,
                  "agent": u.model, "item_id": u.item.id, "reference": inst.expected,
                  "prompt_tokens": resp.usage.prompt_tokens,
                  "completion_tokens": resp.usage.completion_tokens}
        msgs: tuple[Any, ...]
        if inst.scoring == "exact":
            sc = TASK_FAMILIES.get(inst.family).score(resp.text, inst)
            res = DynResult(**common, scoring="exact", score=sc.score, answer=sc.answer,
                            unparsed=sc.answer is None)
            rec.first_correct = rec.solved = sc.score >= 1.0
            rec.first_unparsed = sc.answer is None
            rec.n_unparsed = int(sc.answer is None)
            rec.reward = sc.score
            msgs = (obs, resp, res)
        else:
            judge_name = scn.scoring_judge
            try:
                v: Verdict = await actors.judges[judge_name].ask(JudgeRequest(
                    run_id=self.run_id, episode_id=u.episode_id, turn=1,
                    question=inst.prompt, output=resp.text, reference=inst.expected,
                    rubric=inst.rubric, scale=scn.judge.scale,
                    visuals=scn.judge_visuals(inst.family, u.item), prompt=scn.judge.prompt,
                    oracle=_judge_oracle(u.episode_id, u.item.id, resp.text,
                                         inst.expected, scn.judge.scale),
                    seed=scn.seed))
            except InfrastructureError as exc:
                rec.status, rec.error = "failed", f"judge: {exc}"
                rec.messages = (obs, resp)
                return Played(rec)
            res = DynResult(**common, scoring="judge", score=v.score, judge=judge_name,
                            judge_parse=v.parse, judge_prompt_tokens=v.usage.prompt_tokens,
                            judge_completion_tokens=v.usage.completion_tokens)
            rec.judge = judge_name
            rec.judge_prompt_tokens = v.usage.prompt_tokens
            rec.judge_completion_tokens = v.usage.completion_tokens
            rec.judge_retries = v.usage.retries
            rec.reward = v.score  # the judge's raw score (calibrated by the metrics)
            rec.payload = {**rec.payload, "judge_unparsed": v.score is None}
            msgs = (obs, resp, v, res)
        rec.messages = msgs
        return Played(rec)


__all__ = ["CALIBRATION", "TASKS", "CalibPair", "DynResult", "DynamicRun", "JudgeRefused",
           "TaskUnit", "calibration_pairs", "instance", "plan_tasks"]
