"""The roles: Model (the receiver), FeedbackProvider, Judge.

A ``HumanProxy`` is a FeedbackProvider whose ``generate`` reaches a person (terminal, web
page, replay of recorded feedback): it takes the same :class:`FeedbackRequest` and returns
the same :class:`Feedback`, so it can stand in for a model provider in any scenario. It
lives in :mod:`mmsim.actors.human` and overrides :meth:`FeedbackProviderActor.provider_call`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from mmsim.actors.base import Actor
from mmsim.backends.base import Backend, GenerateRequest, Oracle, Purpose
from mmsim.data.sample import Sample
from mmsim.errors import InfrastructureError, PluginError, UserError
from mmsim.messages import (
    ChatTurn,
    Feedback,
    Grade,
    Observation,
    Part,
    Response,
    Text,
    Usage,
    Verdict,
)
from mmsim.policies.base import FeedbackContext, PolicyFn
from mmsim.registry import cancelled_for_real, code_location, describe_exception
from mmsim.tasks.answers import extract_answer


@dataclass(frozen=True, slots=True)
class AskContext:
    """Side information travelling with an observation (not shown to real models)."""

    oracle: Oracle
    seed: int
    temperature: float | None = None  # a sampling override (rollouts); None: the agent's own
    #: what tells apart requests whose bodies are identical but must not share a cached
    #: reply (the sample index of a rollout); "" for none
    variant: str = ""
    #: why the model is asked: ``answer`` (a receiver) or ``extract`` (a model-based answer
    #: extractor reading another model's reply)
    purpose: Purpose = "answer"


class ModelActor(Actor[tuple[Observation, AskContext], Response]):
    """The receiver: a backend plus deterministic answer extraction."""

    def __init__(self, name: str, backend: Backend, **kw: Any):
        super().__init__(name, **kw)
        self.backend = backend

    async def handle(self, msg: tuple[Observation, AskContext]) -> Response:
        obs, ctx = msg
        env = {"run_id": obs.run_id, "episode_id": obs.episode_id, "turn": obs.turn,
               "sender": self.name}
        try:
            c = await self.backend.generate(GenerateRequest(
                messages=obs.conversation, purpose=ctx.purpose, seed=ctx.seed,
                oracle=ctx.oracle,
                temperature=ctx.temperature, variant=ctx.variant))
        except InfrastructureError as exc:
            return Response(**env, text="", answer=None, parse="error", error=str(exc),
                            usage=Usage(retries=exc.retries), simulated=self.backend.simulated)
        answer = extract_answer(c.text, obs.answer_format, mode=obs.extractor)
        return Response(**env, text=c.text, answer=answer,
                        parse="parsed" if answer is not None else "unparsed",
                        usage=c.usage, latency_s=c.latency_s, simulated=c.simulated)

    async def shutdown(self) -> None:
        await self.backend.aclose()


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    sample: Sample
    conversation: tuple[ChatTurn, ...]
    responses: tuple[Response, ...]
    feedback: tuple[Feedback, ...]
    grade: Grade
    round: int
    policy_name: str
    policy: PolicyFn
    options: dict[str, Any]
    episode_key: str
    seed: int
    #: the scenario's prompt templates for policies (``feedback``), empty for the defaults
    prompts: Mapping[str, str] = field(default_factory=dict)


class FeedbackProviderActor(Actor[FeedbackRequest, Feedback]):
    """Turns a graded wrong response into feedback under a policy, using its backend when
    the policy asks it to (``ctx.ask_provider``)."""

    def __init__(self, name: str, backend: Backend, **kw: Any):
        super().__init__(name, **kw)
        self.backend = backend

    def provider_call(self, msg: FeedbackRequest) -> Callable[
            [tuple[ChatTurn, ...]], Coroutine[Any, Any, tuple[str, Usage, dict[str, Any]]]]:
        """What ``ctx.ask_provider(prompt)`` calls for ``msg``, with the prompt as a message
        list (a HumanProxy overrides it to reach its channel instead of a model)."""
        oracle = Oracle(sample=msg.sample, responses=msg.responses, feedback=msg.feedback,
                        episode_key=msg.episode_key)

        async def generate(messages: tuple[ChatTurn, ...]) -> tuple[str, Usage, dict[str, Any]]:
            c = await self.backend.generate(GenerateRequest(
                messages=messages, purpose="feedback", seed=msg.seed, oracle=oracle))
            return c.text, c.usage, c.meta

        return generate

    async def handle(self, msg: FeedbackRequest) -> Feedback:
        g = msg.grade
        ctx = FeedbackContext(
            sample=msg.sample, conversation=msg.conversation, responses=msg.responses,
            grade=g, round=msg.round, policy=msg.policy_name, provider=self.name,
            options=msg.options, _generate=self.provider_call(msg), prompts=msg.prompts,
            _envelope={"run_id": g.run_id, "episode_id": g.episode_id, "turn": g.turn,
                       "sender": self.name})
        try:
            fb = await msg.policy(ctx)
            if not isinstance(fb, Feedback):
                raise TypeError(f"returned {type(fb).__name__}, not a Feedback (build it with "
                                "ctx.feedback(text, kind=...))")
            return fb
        except (UserError, InfrastructureError):
            raise
        except BaseException as exc:  # a bug in a user's policy stops the run (exit 2), named
            # (CancelledError, KeyboardInterrupt, SystemExit too, unless the episode's scope
            # is really cancelled: never an episode dropped without a word)
            code = getattr(msg.policy, "__code__", None)
            module = getattr(msg.policy, "__module__", "") or ""
            if cancelled_for_real(exc) or code is None or module.startswith("mmsim."):
                raise  # a real cancellation, or mmsim's own policy: a bug, not input
            raise PluginError(f"policy {msg.policy_name!r} raised {describe_exception(exc)}",
                              where=code_location(exc, code.co_filename,
                                                  code.co_firstlineno)) from None

    async def shutdown(self) -> None:
        await self.backend.aclose()


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """Score ``output`` against ``reference`` (and/or ``rubric``) on a 0..``scale`` scale."""

    run_id: str
    episode_id: str
    turn: int
    question: str
    output: str
    reference: str = ""
    rubric: str = ""
    scale: int = 5
    oracle: Oracle | None = None
    seed: int = 0
    #: the visual input the judge sees with the prompt (images, video), in one message
    visuals: tuple[Part, ...] = ()
    #: the prompt template (fields ``{rubric}``, ``{question}``, ``{reference}``,
    #: ``{output}``, ``{scale}``); None: :data:`JUDGE_PROMPT`
    prompt: str | None = None


JUDGE_PROMPT = """Score how well the OUTPUT answers the QUESTION compared with the REFERENCE.
{rubric}
QUESTION: {question}
REFERENCE: {reference}
OUTPUT: {output}

Reply with one line "Score: N" (N an integer from 0 to {scale}), then one line "Reason: ..."."""

_SCORE = re.compile(r"score\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


class JudgeActor(Actor[JudgeRequest, Verdict]):
    """Scores open outputs; unparseable verdicts are retried, then recorded as such."""

    def __init__(self, name: str, backend: Backend, *, retries: int = 2, **kw: Any):
        super().__init__(name, **kw)
        self.backend = backend
        self.retries = retries

    async def handle(self, msg: JudgeRequest) -> Verdict:
        prompt = (msg.prompt or JUDGE_PROMPT).format(
            rubric=msg.rubric, question=msg.question, reference=msg.reference,
            output=msg.output, scale=msg.scale)
        parts: tuple[Part, ...] = (*msg.visuals, Text(text=prompt))
        env = {"run_id": msg.run_id, "episode_id": msg.episode_id, "turn": msg.turn,
               "sender": self.name}
        pt = ct = retries = 0
        text = ""
        for attempt in range(self.retries + 1):
            c = await self.backend.generate(GenerateRequest(
                messages=(ChatTurn(role="user", parts=parts),), purpose="judge",
                seed=msg.seed + attempt, oracle=msg.oracle))
            pt += c.usage.prompt_tokens
            ct += c.usage.completion_tokens
            retries += c.usage.retries
            text = c.text
            m = _SCORE.search(text)
            if m and 0 <= float(m.group(1)) <= msg.scale:
                reason = text[m.end():].strip().removeprefix("Reason:").strip()
                return Verdict(**env, score=float(m.group(1)) / msg.scale, reason=reason,
                               usage=Usage(prompt_tokens=pt, completion_tokens=ct,
                                           retries=retries))
        return Verdict(**env, score=None, reason=text[:500], parse="unparsed",
                       usage=Usage(prompt_tokens=pt, completion_tokens=ct, retries=retries))

    async def shutdown(self) -> None:
        await self.backend.aclose()
