"""Runs a ``kind: dynamic`` scenario in two phases, each episode committed when it ends:

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from mmsim.actors import ActorSystem, ModelActor
from mmsim.actors.roles import AskContext, JudgeActor, JudgeRequest
from mmsim.backends import BACKENDS, Backend
from mmsim.backends.base import Oracle
from mmsim.data.sample import Sample
from mmsim.errors import DataError, InfrastructureError, UserError
from mmsim.messages import AnswerFormat, ChatTurn, Envelope, Observation, Part, Text, Verdict
from mmsim.protocols.dynamic.data import DYN_DATASETS
from mmsim.protocols.dynamic.families import TASK_FAMILIES, TaskInstance, family_code
from mmsim.protocols.dynamic.metrics import EP_CALIB, EP_TASK, judge_calibration, load_results
from mmsim.protocols.dynamic.perturb import corrupt, corruption_kinds, paraphrase
from mmsim.protocols.dynamic.scenario import DynamicScenario, LoadedDynamic
from mmsim.protocols.dynamic.sim import DynamicSim, DynView, make_dynamic_sim
from mmsim.runtime.protocol_run import (
    base_manifest,
    check_kind_backends,
    in_scenario,
    run_id,
    run_store,
)
from mmsim.runtime.runner import (
    Progress,
    RunResult,
    dataset_fingerprint,
    default_run_dir,
    gc_tuned,
    run_pool,
)
from mmsim.runtime.sink import EpisodeSink
from mmsim.store import EpisodeRecord, RunStore, run_dir_lock

log = structlog.get_logger("mmsim.dynamic")


class JudgeRefused(UserError):
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


def load_data(loaded: LoadedDynamic, cache_dir: Path) -> list[Sample]:
    spec = loaded.scenario.dataset
    try:
        items = DYN_DATASETS.get(spec.name)(spec.options, base_dir=loaded.base_dir,
                                            cache_dir=cache_dir, limit=loaded.limit)
    except UserError as exc:
        if exc.field in spec.options:
            raise type(exc)(exc.message, where=str(loaded.path),
                            field=f"dataset.{exc.field}") from None
        raise
    seen: set[str] = set()
    for s in items:
        if s.id in seen:
            raise DataError(f"duplicate item id {s.id!r}", where=str(loaded.path),
                            field="dataset")
        seen.add(s.id)
    if not items:
        raise DataError("the dataset is empty", where=str(loaded.path), field="dataset")
    return items


def check_agents(loaded: LoadedDynamic) -> None:
    """Every model's and judge's params as its backend takes them (``mmsim validate``,
    and the run before it builds anything)."""
    scn = loaded.scenario
    check_kind_backends(loaded, {"models": scn.models, "judges": scn.judges}, DynamicSim)


def build_backends(scn: DynamicScenario) -> dict[str, Backend]:
    """``backend: sim`` agents get the dynamic-evaluation behaviour (:mod:`.sim`)."""
    out: dict[str, Backend] = {}
    for a in [*scn.models, *scn.judges]:
        factory = make_dynamic_sim if a.backend == "sim" else BACKENDS.get(a.backend)
        out[a.name] = factory(a.name, dict(a.params))
    return out


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


class DynamicRunner:
    """Plays one dynamic-evaluation scenario into one run directory."""

    def __init__(self, loaded: LoadedDynamic, run_dir: Path, *,
                 progress: Progress | None = None):
        self.loaded = loaded
        self.scn = loaded.scenario
        self.run_dir = Path(run_dir)
        self.progress = progress or Progress()
        self.run_id = run_id(loaded)
        self.played = self.skipped = self.failed = 0

    async def run(self) -> RunResult:
        t0 = time.perf_counter()
        scn = self.scn
        check_agents(self.loaded)  # names the file and the field, like mmsim validate
        with in_scenario(self.loaded):
            backends = build_backends(scn)
            items = load_data(self.loaded, self.run_dir / "assets")
        tasks = plan_tasks(scn, items)
        pairs = calibration_pairs(scn, items)
        calib = [CalibUnit(f"dyn/calib/{j.name}/r{r}/{p.pair_id}", j.name, r, p)
                 for j in scn.judges for r in range(scn.judge.calibration.runs) for p in pairs]
        manifest = base_manifest("dynamic", self.loaded, backends, {
            "name": scn.dataset.name, "n_samples": len(items),
            "fingerprint": dataset_fingerprint(items)})
        manifest.update({"task_codes": {t: family_code(t) for t in scn.tasks},
                         "calibration_pairs": len(pairs)})
        with run_store(self.run_dir, self.loaded, manifest) as (store, resumed, done):
            todo_c = [u for u in calib if u.episode_id not in done]
            todo_t = [u for u in tasks if u.episode_id not in done]
            self.skipped = len(calib) + len(tasks) - len(todo_c) - len(todo_t)
            log.info("run.start", run_id=self.run_id, calibration=len(calib), tasks=len(tasks))
            t_play = time.perf_counter()
            refusal: JudgeRefused | None = None
            with gc_tuned():
                async with ActorSystem() as system:
                    judges = {j.name: system.spawn(JudgeActor(j.name, backends[j.name],
                                                              retries=scn.judge.retries,
                                                              concurrency=j.concurrency))
                              for j in scn.judges}
                    models = {m.name: system.spawn(ModelActor(m.name, backends[m.name],
                                                              concurrency=m.concurrency))
                              for m in scn.models}
                    await self._calibrate(todo_c, judges, store)
                    refusal = self._gate(store) if pairs else None
                    if refusal is None:
                        await self._tasks(todo_t, models, judges, store)
            if refusal is not None:
                store.finish_run("refused")
                raise refusal
            play_s = time.perf_counter() - t_play
            store.finish_run()
            counts = store.counts()
        return RunResult(self.run_dir, self.run_id, resumed, self.played, self.skipped,
                         self.failed, time.perf_counter() - t0, self.played, play_s, counts)

    def _gate(self, store: RunStore) -> JudgeRefused | None:
        """The refusal of the scoring judge when its AUROC is below the bar, else None."""
        name = self.scn.scoring_judge
        results, _ = load_results(store, EP_CALIB)
        stats = judge_calibration([r for r in results if r["agent"] == name],
                                  self.scn.judge.method, self.scn.judge.min_auroc)
        st = stats.get(name, {"auroc": None, "n_pairs": 0,
                              "min_auroc": self.scn.judge.min_auroc})
        if st["auroc"] is None or st["auroc"] < self.scn.judge.min_auroc:
            return JudgeRefused(refusal_message(name, st, self.run_dir),
                                where=str(self.loaded.path), field="judge.use")
        return None

    async def _calibrate(self, todo: list[CalibUnit], judges: dict[str, JudgeActor],
                         store: RunStore) -> None:
        scn = self.scn
        async with EpisodeSink(store) as sink:
            self.progress.phase("judge calibration", len(todo))

            async def play(u: CalibUnit) -> None:
                p = u.pair
                key = u.episode_id
                rec = EpisodeRecord(episode_id=key, run_id=self.run_id, kind=EP_CALIB,
                                    receiver=u.judge, policy="calibration",
                                    sample_id=p.pair_id, category=p.perturbation,
                                    status="done", simulated=judges[u.judge].backend.simulated)
                try:
                    v: Verdict = await judges[u.judge].ask(JudgeRequest(
                        run_id=self.run_id, episode_id=key, turn=0, question=p.question,
                        output=p.candidate, reference=p.reference, scale=scn.judge.scale,
                        oracle=_judge_oracle(key, p.item_id, p.candidate, p.reference,
                                             scn.judge.scale),
                        seed=scn.seed + 1000 * u.run))
                except InfrastructureError as exc:
                    self.failed += 1
                    rec.status, rec.error = "failed", str(exc)
                    await sink.add(rec)
                    self.progress.advance()
                    return
                self.played += 1
                res = DynResult(run_id=self.run_id, episode_id=key, turn=1, sender="env",
                                phase="calibration", family=p.family, agent=u.judge,
                                item_id=p.item_id, scoring="judge", score=v.score,
                                judge=u.judge, judge_parse=v.parse,
                                judge_prompt_tokens=v.usage.prompt_tokens,
                                judge_completion_tokens=v.usage.completion_tokens,
                                label=p.label, perturbation=p.perturbation, judge_run=u.run,
                                pair_id=p.pair_id)
                rec.prompt_tokens = v.usage.prompt_tokens
                rec.completion_tokens = v.usage.completion_tokens
                rec.n_unparsed = int(v.score is None)
                rec.messages = (v, res)
                await sink.add(rec)
                self.progress.advance()

            await run_pool(todo, scn.run.concurrency, play)

    async def _tasks(self, todo: list[TaskUnit], models: dict[str, ModelActor],
                     judges: dict[str, JudgeActor], store: RunStore) -> None:
        scn = self.scn
        judge_name = scn.scoring_judge
        judge = judges[judge_name]
        async with EpisodeSink(store) as sink:
            self.progress.phase("tasks", len(todo))

            async def play(u: TaskUnit) -> None:
                inst = u.instance
                obs = observation(u, self.run_id)
                view_sample = Sample(id=u.item.id, question=inst.prompt, answer=inst.expected,
                                     answer_format=inst.answer_format,
                                     difficulty=u.item.difficulty,
                                     meta={"dyn_view": DynView(u.item, inst)})
                resp = await models[u.model].ask(
                    (obs, AskContext(oracle=Oracle(sample=view_sample, episode_key=u.episode_id),
                                     seed=scn.seed)))
                rec = EpisodeRecord(
                    episode_id=u.episode_id, run_id=self.run_id, kind=EP_TASK,
                    receiver=u.model, policy=inst.family, sample_id=u.item.id,
                    category=u.item.category, status="done", n_responses=1,
                    n_options=len(inst.answer_format.letters),
                    prompt_tokens=resp.usage.prompt_tokens,
                    completion_tokens=resp.usage.completion_tokens, latency_s=resp.latency_s,
                    retries=resp.usage.retries, simulated=resp.simulated)
                if resp.parse == "error":
                    self.failed += 1
                    rec.status, rec.error, rec.messages = "failed", resp.error, (obs, resp)
                    await sink.add(rec)
                    self.progress.advance()
                    return
                common = {"run_id": self.run_id, "episode_id": u.episode_id, "turn": 1,
                          "sender": "env", "phase": "task", "family": inst.family,
                          "agent": u.model, "item_id": u.item.id,
                          "prompt_tokens": resp.usage.prompt_tokens,
                          "completion_tokens": resp.usage.completion_tokens}
                msgs: tuple[Any, ...]
                if inst.scoring == "exact":
                    sc = TASK_FAMILIES.get(inst.family).score(resp.text, inst)
                    res = DynResult(**common, scoring="exact", score=sc.score, answer=sc.answer,
                                    unparsed=sc.answer is None)
                    rec.first_correct = rec.solved = sc.score >= 1.0
                    rec.first_unparsed = sc.answer is None
                    msgs = (obs, resp, res)
                else:
                    try:
                        v: Verdict = await judge.ask(JudgeRequest(
                            run_id=self.run_id, episode_id=u.episode_id, turn=1,
                            question=inst.prompt, output=resp.text, reference=inst.expected,
                            rubric=inst.rubric, scale=scn.judge.scale,
                            oracle=_judge_oracle(u.episode_id, u.item.id, resp.text,
                                                 inst.expected, scn.judge.scale),
                            seed=scn.seed))
                    except InfrastructureError as exc:
                        self.failed += 1
                        rec.status, rec.error = "failed", f"judge: {exc}"
                        rec.messages = (obs, resp)
                        await sink.add(rec)
                        self.progress.advance()
                        return
                    res = DynResult(**common, scoring="judge", score=v.score,
                                    judge=judge_name, judge_parse=v.parse,
                                    judge_prompt_tokens=v.usage.prompt_tokens,
                                    judge_completion_tokens=v.usage.completion_tokens)
                    rec.feedback_tokens = v.usage.prompt_tokens + v.usage.completion_tokens
                    rec.feedback_completion_tokens = v.usage.completion_tokens
                    rec.n_unparsed = int(v.score is None)
                    msgs = (obs, resp, v, res)
                self.played += 1
                rec.messages = msgs
                await sink.add(rec)
                self.progress.advance()

            await run_pool(todo, scn.run.concurrency, play)


async def run_dynamic(loaded: LoadedDynamic, run_dir: str | Path, *,
                      progress: Progress | None = None) -> RunResult:
    """Run (or resume) a dynamic-evaluation scenario into ``run_dir``."""
    with run_dir_lock(run_dir):  # one writer per run directory
        return await DynamicRunner(loaded, Path(run_dir), progress=progress).run()


__all__ = ["CalibPair", "DynResult", "DynamicRunner", "JudgeRefused", "TaskUnit",
           "calibration_pairs", "default_run_dir", "instance", "plan_tasks", "run_dynamic"]
