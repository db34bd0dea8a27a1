"""Annotator-assist mode (``protocol.mode: annotate``; docs/human.md).

After screening, every receiver's answer to every item is a *label proposal*. Each provider
(normally a ``kind: human`` agent) reviews each proposal once: it **confirms** it, **edits**
it (gives another label: the proposal was integrated into a corrected label) or
**rejects** it. One ``annotate`` episode per receiver x provider x item records the
proposal, its grade and the decision (a ``Feedback`` of kind ``annotation`` whose meta holds
``verdict``, ``label``, ``person`` and ``source``); the final label is graded too.
"""

from __future__ import annotations

from typing import Any

import structlog

from mmsim.actors.human import MODE_OPTION
from mmsim.actors.roles import FeedbackProviderActor, FeedbackRequest
from mmsim.data import Sample
from mmsim.errors import InfrastructureError
from mmsim.human import ANNOTATE_VERDICTS
from mmsim.human.persona import parse_annotation
from mmsim.messages import ChatTurn, Feedback, Response
from mmsim.policies.base import FeedbackContext
from mmsim.protocols.interfeedback.env import InterFeedbackEnv, payload
from mmsim.store import EpisodeRecord
from mmsim.tasks.answers import check_answer

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
    text = await ctx.ask_provider(ctx.with_visuals(ANNOTATE_PROMPT.format(
        question=ctx.sample.question, answer=ctx.sample.answer_text,
        proposal=proposal if proposal is not None else "(none)")))
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


async def annotation_episode(run_id: str, seed: int, receiver: str,
                             provider: FeedbackProviderActor, sample: Sample, first: Response,
                             first_turn: ChatTurn) -> EpisodeRecord:
    """One annotate episode: the receiver's screening answer, reviewed by ``provider``."""
    eid = annotate_id(receiver, provider.name, sample.id)
    env = InterFeedbackEnv(sample=sample, run_id=run_id, episode_id=eid,
                           episode_key=f"{provider.name}/annotate", receiver=receiver,
                           seed=seed, max_rounds=0, first=first_turn)
    obs = env.reset()
    resp = first.model_copy(update={"episode_id": eid, "run_id": run_id})
    grade = env.grade(resp)
    rec = EpisodeRecord(episode_id=eid, run_id=run_id, kind="annotate",
                        model=receiver, provider=provider.name, condition="annotate",
                        sample_id=sample.id, category=sample.category, status="done",
                        payload=payload(sample), simulated=first.simulated,
                        first_correct=grade.correct,
                        first_unparsed=grade.unparsed, n_responses=1,
                        n_unparsed=int(grade.unparsed))
    messages: list[Any] = [obs, resp, grade]
    try:
        fb = await provider.ask(FeedbackRequest(
            sample=sample, conversation=env.state.conversation, responses=(resp,),
            feedback=(), grade=grade, round=1, policy_name="annotate", policy=annotate_policy,
            options={MODE_OPTION: "annotate"}, episode_key=f"{provider.name}/annotate",
            seed=seed))
    except InfrastructureError as exc:
        rec.status, rec.error, rec.messages = "failed", f"annotator: {exc}", tuple(messages)
        log.warning("episode.failed", episode=eid, reason=rec.error)
        return rec
    label = fb.meta.get("label")
    rec.solved = label is not None and check_answer(str(label), sample.answer,
                                                    sample.answer_format)
    rec.payload = {**rec.payload, "n_feedback": 1}
    rec.provider_prompt_tokens = fb.usage.prompt_tokens
    rec.provider_completion_tokens = fb.usage.completion_tokens
    rec.messages = (*messages, fb)
    return rec
