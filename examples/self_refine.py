"""A protocol that is none of mmsim's four, written as a user would: **self-refine**.

The model answers; a judge scores the answer and writes a critique; the model revises,
up to ``max_revisions`` times, until the judge is satisfied (score >= ``accept``). The
reward is the *verified* answer (the dataset's ground truth), never the judge's opinion.
Metrics: accuracy by revision, and how well the judge's score tells right from wrong
answers (judge-score calibration: mean score when right vs wrong, AUROC).

Run it with::

    mmsim run examples/self_refine.yaml --plugin examples/self_refine.py

Everything else (resume, concurrency, ``--executor ray``, ``servers:``, the response cache,
the HTML transcript viewer, export) comes from mmsim's kernel. docs/protocols.md builds this
file step by step.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator
from rich.console import Console
from rich.table import Table

from mmsim import ChatTurn, Feedback, Observation, Response, Sample, Text
from mmsim.actors import JudgeActor, ModelActor
from mmsim.actors.roles import AskContext, JudgeRequest
from mmsim.backends.base import Oracle
from mmsim.messages import Envelope, Part, Verdict
from mmsim.report import RunContext, section
from mmsim.report.sections import table
from mmsim.runtime import Actors, EvalProtocol, Played, ProtocolRun, protocol
from mmsim.runtime.pool import Jobs
from mmsim.runtime.protocol import Role
from mmsim.spec import (
    STRICT,
    AgentSpec,
    DatasetSpec,
    RunSpec,
    ScenarioModel,
    ServerSpec,
    check_servers,
    unique_names,
)
from mmsim.store import EpisodeRecord, RunStore
from mmsim.tasks.answers import check_answer

KIND = "self-refine"


# -- 1. the scenario schema ----------------------------------------------------------
class SelfRefineScenario(ScenarioModel):
    """A ``kind: self-refine`` scenario."""

    model_config = STRICT
    kind: Literal["self-refine"] = "self-refine"
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    dataset: DatasetSpec
    models: list[AgentSpec] = Field(min_length=1)
    judge: AgentSpec
    max_revisions: int = Field(2, ge=0, le=10)
    accept: float = Field(0.8, ge=0.0, le=1.0)  # the judge's score that ends the episode
    run: RunSpec = RunSpec()
    servers: list[ServerSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SelfRefineScenario:
        unique_names({"models": [*self.models, self.judge]})
        check_servers([*self.models, self.judge], self.servers)
        return self


# -- 2. the episode as an environment --------------------------------------------------
INSTRUCTION = {"choice": "End your reply with 'Answer: <letter>'.",
               "numeric": "End your reply with 'Answer: <number>'.",
               "exact": "End your reply with 'Answer: <your answer>'."}
CRITIQUE_RUBRIC = ("Judge whether the OUTPUT answers the QUESTION correctly; the REFERENCE is "
                   "empty. After the score, give a one-sentence critique as the Reason.")


class RefineStep(Envelope):
    """One revision of an episode: the answer, whether it is right, the judge's score."""

    kind: Literal["refine_step"] = "refine_step"
    revision: int
    answer: str | None
    correct: bool
    score: float | None
    critique: str = ""


@dataclass
class SelfRefineEnv:
    """state: the conversation and the steps so far; observation: the conversation;
    action: the model's response; transition: grade it, ask the judge, append the critique;
    reward: 1 for a verifiably correct answer; done: the judge accepts or the budget ends."""

    sample: Sample
    run_id: str
    episode_id: str
    judge: JudgeActor
    max_revisions: int
    accept: float
    seed: int
    conversation: tuple[ChatTurn, ...] = ()
    steps: list[RefineStep] = field(default_factory=list)
    responses: tuple[Response, ...] = ()
    critiques: tuple[Feedback, ...] = ()

    def reset(self) -> Observation:
        s = self.sample
        parts: list[Part] = [*s.images, *s.videos,
                             Text(text=f"{s.question}\n\n{INSTRUCTION[s.answer_format.kind]}")]
        self.conversation = (ChatTurn(role="user", parts=tuple(parts)),)
        return self.observation()

    def observation(self) -> Observation:
        return Observation(run_id=self.run_id, episode_id=self.episode_id,
                           turn=len(self.steps), sender="env", conversation=self.conversation,
                           answer_format=self.sample.answer_format)

    def context(self) -> AskContext:
        return AskContext(oracle=Oracle(sample=self.sample, responses=self.responses,
                                        feedback=self.critiques, episode_key=KIND),
                          seed=self.seed)

    async def step(self, resp: Response) -> tuple[Observation | None, float, bool, Verdict]:
        s = self.sample
        correct = check_answer(resp.answer, s.answer, s.answer_format)
        verdict = await self.judge.ask(JudgeRequest(
            run_id=self.run_id, episode_id=self.episode_id, turn=len(self.steps),
            question=s.question, output=resp.text, rubric=CRITIQUE_RUBRIC,
            oracle=Oracle(sample=s, responses=(resp,), episode_key=KIND), seed=self.seed))
        self.responses += (resp,)
        self.steps.append(RefineStep(
            run_id=self.run_id, episode_id=self.episode_id, turn=len(self.steps),
            sender="env", revision=len(self.steps), answer=resp.answer, correct=correct,
            score=verdict.score, critique=verdict.reason))
        reward = 1.0 if correct else 0.0
        accepted = verdict.score is not None and verdict.score >= self.accept
        if accepted or len(self.steps) > self.max_revisions:
            return None, reward, True, verdict
        critique = verdict.reason or "The judge is not convinced."
        self.critiques += (Feedback(run_id=self.run_id, episode_id=self.episode_id,
                                    turn=len(self.steps), sender=self.judge.name,
                                    feedback_kind="critique", text=critique, policy=KIND),)
        self.conversation += (
            ChatTurn(role="assistant", parts=(Text(text=resp.text),)),
            ChatTurn(role="user", parts=(Text(text=f"A reviewer says: {critique}\n"
                                                 "Revise your answer if needed."),)))
        return self.observation(), reward, False, verdict


# -- 3. the run: phases, jobs, the episode function ------------------------------------
class SelfRefineRun(ProtocolRun[SelfRefineScenario, list[Sample]]):
    phases = ("refine",)

    def jobs(self, phase: str, done: Container[str], store: RunStore | None
             ) -> tuple[Jobs[tuple[str, str]], int]:
        todo = [(m.name, s.id) for m in self.scn.models for s in self.data
                if f"{KIND}/{m.name}/{s.id}" not in done]
        return Jobs.of(todo), len(self.scn.models) * len(self.data)

    async def play(self, phase: str, job: tuple[str, str], actors: Actors) -> Played:
        model_name, sid = job
        sample = next(s for s in self.data if s.id == sid)
        model: ModelActor = actors.models[model_name]
        eid = f"{KIND}/{model_name}/{sid}"
        env = SelfRefineEnv(sample, self.run_id, eid, actors.judges[self.scn.judge.name],
                            self.scn.max_revisions, self.scn.accept, self.scn.seed)
        obs: Observation | None = env.reset()
        rec = EpisodeRecord(episode_id=eid, run_id=self.run_id, kind=KIND, model=model_name,
                            judge=self.scn.judge.name, sample_id=sid,
                            category=sample.category, status="done")
        messages: list[Any] = []
        turns = 0
        while obs is not None:
            resp = await model.ask((obs, env.context()))
            turns += 1
            messages += [obs, resp]
            rec.simulated = resp.simulated
            if resp.parse == "error":
                rec.status, rec.error, rec.messages = "failed", resp.error, tuple(messages)
                return Played(rec, turns=turns)
            obs, reward, done, verdict = await env.step(resp)
            messages += [verdict, env.steps[-1]]
            rec.n_responses += 1
            rec.n_unparsed += int(resp.answer is None)
            rec.model_prompt_tokens += resp.usage.prompt_tokens
            rec.model_completion_tokens += resp.usage.completion_tokens
            rec.judge_prompt_tokens += verdict.usage.prompt_tokens
            rec.judge_completion_tokens += verdict.usage.completion_tokens
            if done:  # the reward of the last answer is the episode's outcome
                rec.solved, rec.reward = reward >= 1.0, reward
        first = env.steps[0]
        rec.first_correct = first.correct
        rec.first_unparsed = first.answer is None
        rec.payload = {"revisions": len(env.steps) - 1}
        rec.messages = tuple(messages)
        return Played(rec, turns=turns)


# -- 4. metrics, from the store -------------------------------------------------------
def auroc(pos: list[float], neg: list[float]) -> float | None:
    """P(a right answer's score > a wrong one's), ties counting half."""
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def compute(store: RunStore) -> dict[str, Any]:
    run = store.run() or {}
    scenario = run.get("scenario") or {}
    max_rev = int(scenario.get("max_revisions", 0))
    by_model: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    failed: dict[str, int] = defaultdict(int)
    for ep in store.episodes(KIND):
        if ep["status"] != "done":
            failed[ep["model"]] += 1
            continue
        steps = [m for m in store.messages(ep["episode_id"]) if m["kind"] == "refine_step"]
        by_model[ep["model"]].append(steps)
    models = []
    for name in sorted(by_model):
        eps = by_model[name]
        # accuracy by revision: an episode the judge accepted early keeps its last answer
        acc = [sum(steps[min(r, len(steps) - 1)]["correct"] for steps in eps) / len(eps)
               for r in range(max_rev + 1)]
        scored = [s for steps in eps for s in steps if s["score"] is not None]
        right = [s["score"] for s in scored if s["correct"]]
        wrong = [s["score"] for s in scored if not s["correct"]]
        models.append({
            "name": name, "episodes": len(eps), "failed": failed.get(name, 0),
            "accuracy_by_revision": acc,
            "mean_revisions": sum(len(s) - 1 for s in eps) / len(eps),
            "judge": {"n_scored": len(scored),
                      "mean_score_right": sum(right) / len(right) if right else None,
                      "mean_score_wrong": sum(wrong) / len(wrong) if wrong else None,
                      "auroc": auroc(right, wrong)}})
    return {"schema": "self-refine.v1", "kind": KIND, "run_id": run.get("run_id"),
            "name": run.get("name"), "status": run.get("status"),
            "max_revisions": max_rev, "models": models}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


# -- 5. the protocol, registered --------------------------------------------------------
@protocol
class SelfRefine(EvalProtocol[SelfRefineScenario, list[Sample]]):
    """Self-refine: answer, judge critique, revise (an example user protocol)."""

    name = KIND
    title = "self-refine: the model answers, a judge critiques, the model revises"
    scenario = SelfRefineScenario
    agents: ClassVar[dict[str, tuple[Role, ...]]] = {"models": ("model",),
                                                     "judge": ("judge",)}
    run = SelfRefineRun

    def metrics(self, store: RunStore) -> dict[str, Any]:
        return compute(store)

    def print_table(self, metrics: dict[str, Any], console: Console) -> None:
        t = Table(title=f"self-refine: {metrics['name']}", title_justify="left")
        t.add_column("model")
        t.add_column("N", justify="right")
        for r in range(metrics["max_revisions"] + 1):
            t.add_column(f"acc@{r}", justify="right")
        t.add_column("judge AUROC", justify="right")
        for m in metrics["models"]:
            auc = m["judge"]["auroc"]
            t.add_row(m["name"], str(m["episodes"]),
                      *(_pct(a) for a in m["accuracy_by_revision"]),
                      "—" if auc is None else f"{auc:.2f}")
        console.print(t)


@section("self-refine", title="Self-refine: accuracy by revision", order=160)
def self_refine_section(ctx: RunContext) -> str | None:
    """Accuracy by revision and judge-score calibration, per model."""
    if ctx.manifest.get("kind") != KIND:
        return None
    m = ctx.cached(KIND, lambda: compute(ctx.store))
    heads = ["model", "N", *(f"acc@{r}" for r in range(m["max_revisions"] + 1)),
             "judge score right", "judge score wrong", "judge AUROC"]
    rows = [[x["name"], x["episodes"], *(_pct(a) for a in x["accuracy_by_revision"]),
             _pct(x["judge"]["mean_score_right"]), _pct(x["judge"]["mean_score_wrong"]),
             "—" if x["judge"]["auroc"] is None else f"{x['judge']['auroc']:.2f}"]
            for x in m["models"]]
    return table(heads, rows)


__all__ = ["RefineStep", "SelfRefine", "SelfRefineEnv", "SelfRefineScenario", "compute"]
