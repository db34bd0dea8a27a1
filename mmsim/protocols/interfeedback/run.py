"""An InterFeedback run's phases and episodes (played by the kernel):

1. **screening**: every agent (receivers and providers) answers every item once.
2. **Test sets**: per receiver x provider, the items the provider answered correctly and the
   receiver wrongly (``protocol.test_set`` picks the variant); ``N_test <= N_wrong`` is
   checked.
3. **feedback**: receiver x provider x policy x test item, up to ``protocol.max_rounds``
   feedback rounds; round 0 is the receiver's screening answer. (``protocol.mode:
   annotate`` plays **annotate** episodes instead: :mod:`.annotate`.)

A job is a tuple of names (and, for feedback, the receiver's screening response), so an
executor may play it in another process.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping
from typing import Any

import structlog

from mmsim.actors import FeedbackProviderActor, ModelActor
from mmsim.data import Sample
from mmsim.errors import InfrastructureError
from mmsim.messages import ChatTurn, Grade, Response
from mmsim.policies import POLICIES
from mmsim.protocols.interfeedback.annotate import annotate_id, annotation_episode
from mmsim.protocols.interfeedback.env import (
    REASK,
    EpisodeFailed,
    InterFeedbackEnv,
    PolicyPlan,
    RoundPolicy,
    first_turn,
    payload,
)
from mmsim.protocols.interfeedback.extract import read_unparsed
from mmsim.protocols.interfeedback.extract import summary as mx_summary
from mmsim.protocols.interfeedback.scenario import Scenario
from mmsim.protocols.interfeedback.screening import ScreenAnswers
from mmsim.runtime.pool import Jobs
from mmsim.runtime.protocol import Actors, Played, ProtocolRun, RunSetup
from mmsim.store import EpisodeRecord, RunStore
from mmsim.tasks.answers import check_answer

log = structlog.get_logger("mmsim.run")

SCREENING, FEEDBACK, ANNOTATE = "screening", "feedback", "annotate"
#: A screening job: (agent, sample id).
ScreenJob = tuple[str, str]
#: A feedback job: (receiver, provider, policy, sample id, the receiver's screening answer).
FeedbackJob = tuple[str, str, str, str, Response]


def screen_id(agent: str, sample_id: str) -> str:
    return f"screen/{agent}/{sample_id}"


def feedback_id(receiver: str, provider: str, policy: str, sample_id: str) -> str:
    return f"feedback/{receiver}/{provider}/{policy}/{sample_id}"


def build_plans(scn: Scenario) -> list[PolicyPlan]:
    return [PolicyPlan(name=p.name, rounds=tuple(
        RoundPolicy(name=r, fn=POLICIES.get(r), options=dict(p.options)) for r in p.rounds))
        for p in scn.policies]


class InterFeedbackRun(ProtocolRun[Scenario, list[Sample]]):
    """One InterFeedback run in one process (see the module docstring)."""

    def __init__(self, setup: RunSetup[list[Sample]]):
        super().__init__(setup)
        self.by_id = {s.id: s for s in self.data}
        self.plans = {p.name: p for p in build_plans(self.scn)}
        self.phases = (SCREENING, ANNOTATE if self.scn.protocol.mode == "annotate"
                       else FEEDBACK)
        self.screen = ScreenAnswers(screen_id)  # compact: a run may screen 100,000s of items
        self._firsts: dict[str, ChatTurn] = {}  # sample id -> first user turn (built once)
        self.extractor_names = [a.name for a in self.scn.extractors]

    def local_only(self) -> str | None:
        if any(p.kind == "human" for p in self.scn.providers):
            return "human providers answer in this process"
        if self.scn.protocol.mode == "annotate":
            return "annotate mode reaches its annotators from this process"
        return None

    def manifest(self) -> dict[str, Any]:
        from mmsim.protocols.interfeedback.prompts import prompt_template_hashes

        return {"prompt_templates": prompt_template_hashes(
            [r for p in self.scn.policies for r in p.rounds], self.scn.prompts)}

    def first(self, sample: Sample) -> ChatTurn:
        turn = self._firsts.get(sample.id)
        if turn is None:
            instruction = self.scn.prompts.instructions.get(sample.answer_format.kind)
            turn = self._firsts[sample.id] = first_turn(sample, instruction)
        return turn

    # -- the driver's plan -------------------------------------------------------------
    def jobs(self, phase: str, done: Container[str], store: RunStore | None
             ) -> tuple[Jobs[Any], int]:
        if phase == SCREENING:
            return self._screening_jobs(done, store)
        if phase == FEEDBACK:
            return self._feedback_jobs(done)
        return self._annotate_jobs(done)

    def collect(self, phase: str, job: Any, output: Any) -> None:
        if phase == SCREENING:
            self.screen[job] = output

    def _screened(self) -> list[str]:
        return [n for n, a in self.scn.agents().items() if a.kind != "human"]

    def _screening_jobs(self, done: Container[str], store: RunStore | None
                        ) -> tuple[Jobs[ScreenJob], int]:
        agents = self._screened()
        if store is not None:
            self.screen.update(self._load_screening(store, set(agents)))
        screen, samples = self.screen, self.data

        # item-major, so that the episodes in flight are spread over the agents (endpoints);
        # made as they are taken (a job is screened once: adding its answer to ``screen``
        # while the phase plays changes none of the jobs still to come)
        def make() -> Iterator[ScreenJob]:
            for s in samples:
                for a in agents:
                    if (a, s.id) not in screen and screen_id(a, s.id) not in done:
                        yield a, s.id

        return Jobs(make), len(agents) * len(samples)

    def _load_screening(self, store: RunStore, agents: set[str]
                        ) -> dict[tuple[str, str], Response]:
        out: dict[tuple[str, str], Response] = {}
        for ep in store.done_with_prefix("screen/"):
            _, agent, sample_id = ep.split("/", 2)
            if agent not in agents or sample_id not in self.by_id:
                continue
            for m in store.messages(ep):
                if m["kind"] == "response":
                    payload = {k: v for k, v in m.items() if k not in ("seq", "kind")}
                    out[(agent, sample_id)] = Response(run_id=self.run_id, episode_id=ep,
                                                       **payload)
        return out

    def _correct(self, agent: str, s: Sample, humans: set[str]) -> bool | None:
        if agent in humans:
            return True  # a person is not screened: taken as competent on every item
        key = (agent, s.id)
        if key not in self.screen:
            return None  # screening failed: the item is left out of every cell
        return check_answer(self.screen.answer(key), s.answer, s.answer_format)

    def _feedback_jobs(self, done: Container[str]) -> tuple[Jobs[FeedbackJob], int]:
        """The feedback episodes still to play, cell by cell; the test sets are built here,
        the jobs made as they are taken."""
        scn, samples, screen = self.scn, self.data, self.screen
        mode = scn.protocol.test_set
        humans = {p.name for p in scn.providers if p.kind == "human"}
        cells: list[tuple[str, str, list[Sample]]] = []  # receiver, provider, test set
        for rec in scn.receivers:
            wrong = [s for s in samples if self._correct(rec.name, s, humans) is False]
            for prov in scn.providers:
                if mode == "all_wrong":
                    test = wrong
                elif mode == "shared":
                    test = [s for s in wrong
                            if all(self._correct(p.name, s, humans) for p in scn.providers)]
                else:
                    test = [s for s in wrong if self._correct(prov.name, s, humans)]
                if len(test) > len(wrong):  # the published study's flaw, made impossible
                    raise AssertionError(f"N_test {len(test)} > N_wrong {len(wrong)} for "
                                         f"{rec.name} x {prov.name}")
                cells.append((rec.name, prov.name, test))
        plans = list(self.plans)

        def make() -> Iterator[FeedbackJob]:
            for rec, prov, test in cells:
                for plan in plans:
                    for s in test:
                        if feedback_id(rec, prov, plan, s.id) not in done:
                            yield rec, prov, plan, s.id, screen[(rec, s.id)]

        return Jobs(make), sum(len(test) for _, _, test in cells) * len(plans)

    def _annotate_jobs(self, done: Container[str]
                       ) -> tuple[Jobs[tuple[str, str, str, Response]], int]:
        scn, samples, screen = self.scn, self.data, self.screen

        def make() -> Iterator[tuple[str, str, str, Response]]:
            for rec in scn.receivers:
                for prov in scn.providers:
                    for s in samples:
                        if ((rec.name, s.id) in screen  # else screening failed: no proposal
                                and annotate_id(rec.name, prov.name, s.id) not in done):
                            yield rec.name, prov.name, s.id, screen[(rec.name, s.id)]

        screened = sum(1 for r in scn.receivers for s in samples if (r.name, s.id) in screen)
        return Jobs(make), screened * len(scn.providers)

    # -- the episodes (any process) ----------------------------------------------------
    async def play(self, phase: str, job: Any, actors: Actors) -> Played:
        extractors = {n: actors.models[n] for n in self.extractor_names}
        if phase == SCREENING:
            agent, sid = job
            return await self.screen_episode(actors.models[agent], self.by_id[sid],
                                             extractors)
        if phase == FEEDBACK:
            receiver, provider, policy, sid, first = job
            return await self.feedback_episode(actors.models[receiver],
                                               actors.providers[provider],
                                               self.plans[policy], self.by_id[sid], first,
                                               extractors)
        receiver, provider, sid, first = job
        sample = self.by_id[sid]
        rec = await annotation_episode(self.run_id, self.scn.seed, receiver,
                                       actors.providers[provider], sample, first,
                                       self.first(sample))
        return Played(rec, turns=0)

    async def _model_readings(self, extractors: Mapping[str, ModelActor], sample: Sample,
                              eid: str, responses: tuple[Response, ...],
                              grades: tuple[Grade, ...], rec: EpisodeRecord) -> list[Any]:
        """The model-based extractors' readings of the unparsed replies (messages to
        store); their summary goes into the episode's payload (``mx``)."""
        if not extractors:
            return []
        readings = await read_unparsed(
            extractors, sample, [(r, resp, g) for r, (resp, g)
                                 in enumerate(zip(responses, grades, strict=True))],
            run_id=self.run_id, episode_id=eid, seed=self.scn.seed)
        rec.payload = {**(rec.payload or {}), "mx": mx_summary(list(extractors), grades,
                                                               readings)}
        return readings

    async def screen_episode(self, model: ModelActor, sample: Sample,
                             extractors: Mapping[str, ModelActor] | None = None) -> Played:
        eid = screen_id(model.name, sample.id)
        env = InterFeedbackEnv(sample=sample, run_id=self.run_id, episode_id=eid,
                               episode_key="screen", receiver=model.name, seed=self.scn.seed,
                               max_rounds=0, first=self.first(sample),
                               extractor=self.scn.protocol.extractor)
        obs = env.reset()
        resp = await model.ask((obs, env.ask_context()))
        rec = EpisodeRecord(episode_id=eid, run_id=self.run_id, kind="screen",
                            model=model.name, sample_id=sample.id, category=sample.category,
                            status="done", payload=payload(sample),
                            simulated=resp.simulated, model_retries=resp.usage.retries)
        try:
            step = await env.step(resp)
        except EpisodeFailed as exc:
            rec.status, rec.error, rec.messages = "failed", exc.reason, (obs, resp)
            log.warning("episode.failed", episode=eid, reason=exc.reason)
            return Played(rec)
        rec.first_correct = rec.solved = step.grade.correct
        rec.first_unparsed = step.grade.unparsed
        rec.payload = payload(sample, grades=(step.grade,))
        rec.n_responses, rec.n_unparsed = 1, int(step.grade.unparsed)
        rec.model_prompt_tokens = resp.usage.prompt_tokens
        rec.model_completion_tokens = resp.usage.completion_tokens
        rec.latency_s = resp.latency_s
        readings = await self._model_readings(extractors or {}, sample, eid, (resp,),
                                              (step.grade,), rec)
        rec.messages = (obs, resp, step.grade, *readings)
        return Played(rec, resp)

    async def feedback_episode(self, receiver: ModelActor, provider: FeedbackProviderActor,
                               plan: PolicyPlan, sample: Sample, first: Response,
                               extractors: Mapping[str, ModelActor] | None = None) -> Played:
        eid = feedback_id(receiver.name, provider.name, plan.name, sample.id)
        env = InterFeedbackEnv(sample=sample, run_id=self.run_id, episode_id=eid,
                               episode_key=f"{provider.name}/{plan.name}",
                               receiver=receiver.name, seed=self.scn.seed,
                               max_rounds=self.scn.protocol.max_rounds, provider=provider,
                               plan=plan, first=self.first(sample),
                               extractor=self.scn.protocol.extractor,
                               reask=(REASK if self.scn.prompts.reask is None
                                      else self.scn.prompts.reask),
                               prompts=({"feedback": self.scn.prompts.feedback}
                                        if self.scn.prompts.feedback else {}))
        obs = env.reset()
        resp = first.model_copy(update={"episode_id": eid, "run_id": self.run_id})
        messages: list[Any] = [obs, resp]
        turns = 0
        rec = EpisodeRecord(episode_id=eid, run_id=self.run_id, kind="feedback",
                            model=receiver.name, provider=provider.name, condition=plan.name,
                            sample_id=sample.id, category=sample.category, status="done",
                            simulated=first.simulated)
        n_feedback = n_leaked = 0
        try:
            while True:
                step = await env.step(resp)
                messages.append(step.grade)
                rec.n_responses += 1
                rec.n_unparsed += int(step.grade.unparsed)
                rec.model_prompt_tokens += resp.usage.prompt_tokens
                rec.model_completion_tokens += resp.usage.completion_tokens
                rec.latency_s += resp.latency_s
                if step.done:
                    break
                fb = step.feedback
                assert fb is not None and step.observation is not None
                messages += [fb, step.observation]
                n_feedback += 1
                n_leaked += int(fb.leaked)
                rec.provider_prompt_tokens += fb.usage.prompt_tokens
                rec.provider_completion_tokens += fb.usage.completion_tokens
                rec.provider_retries += fb.usage.retries
                resp = await receiver.ask((step.observation, env.ask_context()))
                turns += 1
                rec.model_retries += resp.usage.retries
                messages.append(resp)
        except EpisodeFailed as exc:
            if isinstance(exc.__cause__, InfrastructureError):  # the provider gave up
                rec.provider_retries += exc.__cause__.retries
            rec.status, rec.error = "failed", exc.reason
            rec.payload = payload(sample, n_feedback=n_feedback, n_leaked=n_leaked)
            rec.messages = tuple(messages)
            log.warning("episode.failed", episode=eid, reason=exc.reason)
            return Played(rec, turns=turns)
        st = env.state
        rec.first_correct = False
        rec.first_unparsed = first.parse == "unparsed"
        rec.solved = st.solved
        rec.payload = payload(sample, rounds=st.turn,
                              corrected_round=st.turn if st.solved else None,
                              n_feedback=n_feedback, n_leaked=n_leaked, grades=st.grades)
        messages += await self._model_readings(extractors or {}, sample, eid, st.responses,
                                               st.grades, rec)
        rec.messages = tuple(messages)
        return Played(rec, turns=turns)


__all__ = ["ANNOTATE", "FEEDBACK", "SCREENING", "InterFeedbackRun", "build_plans",
           "feedback_id", "screen_id"]
