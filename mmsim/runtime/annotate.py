"""Annotator-assist mode (``protocol.mode: annotate``; docs/human.md).

After screening, every receiver's answer to every item is a *label proposal*. Each provider
(normally a ``kind: human`` agent) reviews each proposal once: it **confirms** it, **edits**
it (gives another label: the proposal was integrated into a corrected label) or
**rejects** it. One ``annotate`` episode per receiver x provider x item records the
proposal, its grade and the decision (a ``Feedback`` of kind ``annotation`` whose meta holds
``verdict``, ``label``, ``person`` and ``source``); the final label is graded too.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

from mmsim.actors.human import MODE_OPTION
from mmsim.actors.roles import FeedbackProviderActor, FeedbackRequest
from mmsim.data import Sample
from mmsim.env import InterFeedbackEnv
from mmsim.errors import InfrastructureError
from mmsim.human import ANNOTATE_VERDICTS
from mmsim.human.persona import parse_annotation
from mmsim.messages import Feedback, Response
from mmsim.policies.base import FeedbackContext
from mmsim.runtime.executors import Jobs
from mmsim.store import EpisodeRecord
from mmsim.tasks.answers import check_answer

if TYPE_CHECKING:
    import anyio

    from mmsim.runtime.runner import Runner
    from mmsim.runtime.sink import EpisodeSink

log = structlog.get_logger("mmsim.run")

ANNOTATE_PROMPT = """A model proposed a label for an item you are annotating.
Question:
{question}

Proposed label: {proposal}
Correct label: {answer}

Reply with one line: CONFIRM if the proposal is right, EDIT: <label> to correct it, or
REJECT to discard it."""


def annotate_id(receiver: str, provider: str, sample_id: str) -> str:
    return f"annotate/{receiver}/{provider}/{sample_id}"


async def annotate_policy(ctx: FeedbackContext) -> Feedback:
    """Ask the provider to confirm, edit or reject the receiver's proposal."""
    proposal = ctx.response.answer
    text = await ctx.ask_provider(ANNOTATE_PROMPT.format(
        question=ctx.sample.question, answer=ctx.sample.answer_text,
        proposal=proposal if proposal is not None else "(none)"))
    meta = dict(ctx.meta or {})
    verdict = meta.get("verdict")
    label = meta.get("label")
    if verdict not in ANNOTATE_VERDICTS:  # a model provider: parse its reply
        verdict, label = parse_annotation(text, proposal, ctx.sample.answer_format)
        meta.update({"source": meta.get("source", "model"), "verdict": verdict})
        if label is not None:
            meta["label"] = label
    ctx.meta = meta
    return ctx.feedback(label or "", kind="annotation", reveals_answer=True)


async def play_annotation(runner: Runner, samples: list[Sample],
                          screen: MutableMapping[tuple[str, str], Response], done: Container[str],
                          providers: dict[str, FeedbackProviderActor], sink: EpisodeSink,
                          stop: anyio.Event | None) -> None:
    """Play the annotate episodes of a run (after its screening)."""
    from mmsim.runtime.runner import run_pool

    scn = runner.scn

    def make() -> Iterator[tuple[str, str, Sample]]:  # made as they are taken
        for rec in scn.receivers:
            for prov in scn.providers:
                for s in samples:
                    if ((rec.name, s.id) in screen  # else screening failed: nothing to propose
                            and annotate_id(rec.name, prov.name, s.id) not in done):
                        yield rec.name, prov.name, s

    jobs = Jobs(make)
    screened = sum(1 for r in scn.receivers for s in samples if (r.name, s.id) in screen)
    runner.skipped += screened * len(scn.providers) - len(jobs)
    runner.progress.phase("annotate", len(jobs))

    async def play(job: tuple[str, str, Sample]) -> None:
        receiver, provider, sample = job
        rec = await annotation_episode(runner, receiver, providers[provider], sample,
                                       screen[(receiver, sample.id)])
        await sink.add(rec)
        runner.progress.advance()

    await run_pool(jobs, scn.run.concurrency, play, stop)


async def annotation_episode(runner: Runner, receiver: str, provider: FeedbackProviderActor,
                             sample: Sample, first: Response) -> EpisodeRecord:
    scn = runner.scn
    eid = annotate_id(receiver, provider.name, sample.id)
    env = InterFeedbackEnv(sample=sample, run_id=runner.run_id, episode_id=eid,
                           episode_key=f"{provider.name}/annotate", receiver=receiver,
                           seed=scn.seed, max_rounds=0, first=runner._first(sample))
    obs = env.reset()
    resp = first.model_copy(update={"episode_id": eid, "run_id": runner.run_id})
    grade = env.grade(resp)
    rec = EpisodeRecord(episode_id=eid, run_id=runner.run_id, kind="annotate",
                        receiver=receiver, provider=provider.name, policy="annotate",
                        sample_id=sample.id, category=sample.category, status="done",
                        n_options=len(sample.answer_format.letters),
                        simulated=first.simulated, first_correct=grade.correct,
                        first_unparsed=grade.unparsed, n_responses=1,
                        n_unparsed=int(grade.unparsed))
    messages: list[Any] = [obs, resp, grade]
    try:
        fb = await provider.ask(FeedbackRequest(
            sample=sample, conversation=env.state.conversation, responses=(resp,),
            feedback=(), grade=grade, round=1, policy_name="annotate", policy=annotate_policy,
            options={MODE_OPTION: "annotate"}, episode_key=f"{provider.name}/annotate",
            seed=scn.seed))
    except InfrastructureError as exc:
        runner.failed += 1
        rec.status, rec.error, rec.messages = "failed", f"annotator: {exc}", tuple(messages)
        log.warning("episode.failed", episode=eid, reason=rec.error)
        return rec
    runner.played += 1
    label = fb.meta.get("label")
    rec.solved = label is not None and check_answer(str(label), sample.answer,
                                                    sample.answer_format)
    rec.n_feedback = 1
    rec.feedback_tokens = fb.usage.prompt_tokens + fb.usage.completion_tokens
    rec.messages = (*messages, fb)
    return rec
