"""The interactive-feedback protocol as a POMDP.

* state: (sample, history, turn, solved) — :class:`EpisodeState`;
* observation: the conversation the receiver sees (the image(s) once, in the first user
  turn, then text turns);
* action: the receiver's :class:`Response`;
* transition: grade the response; if wrong and rounds remain, ask the provider for
  feedback under the policy of this round, append the answer and the feedback;
* reward: 1.0 for a verifiably correct answer, else 0.0.

An episode ends on success, when the round budget is spent, or on an infrastructure error
(raised as :class:`EpisodeFailed`, recorded as a failure — never as a wrong answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmsim.actors.roles import AskContext, FeedbackProviderActor, FeedbackRequest
from mmsim.backends.base import Oracle
from mmsim.data.sample import Sample
from mmsim.errors import InfrastructureError
from mmsim.messages import ChatTurn, Feedback, Grade, Observation, Part, Response, Text
from mmsim.policies.base import PolicyFn
from mmsim.tasks.answers import Mode, check_answer, extract_answer

INSTRUCTIONS = {
    "choice": "Answer with the letter of the correct option. End your reply with "
              "'Answer: <letter>'.",
    "numeric": "End your reply with 'Answer: <number>'.",
    "exact": "End your reply with 'Answer: <your answer>'.",
}
REASK = "Please answer again."


class EpisodeFailed(Exception):
    """An infrastructure failure ended the episode; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RoundPolicy:
    """The policy used in one feedback round."""

    name: str
    fn: PolicyFn
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PolicyPlan:
    """A named policy, or a schedule of policies by round (the last repeats)."""

    name: str
    rounds: tuple[RoundPolicy, ...]

    def for_round(self, r: int) -> RoundPolicy:
        return self.rounds[min(r, len(self.rounds)) - 1]


def payload(sample: Sample, *, rounds: int = 0, corrected_round: int | None = None,
            n_feedback: int = 0, n_leaked: int = 0, grades: tuple[Grade, ...] = ()
            ) -> dict[str, Any]:
    """An InterFeedback episode's own fields: feedback rounds played, the round of the
    correction (None: not corrected), options of the item, feedback given, and leaked; and,
    from the grades, how the other extractor reads the same replies: ``alt_correct_round``
    (the first round whose reply it grades correct; None: none), ``n_disagree`` (replies
    the two extractors read differently)."""
    out: dict[str, Any] = {"rounds": rounds, "corrected_round": corrected_round,
                           "n_options": len(sample.answer_format.letters),
                           "n_feedback": n_feedback, "n_leaked": n_leaked}
    if grades:
        out["alt_correct_round"] = next((r for r, g in enumerate(grades) if g.alt_correct),
                                        None)
        out["n_disagree"] = sum(g.alt_answer != g.answer for g in grades)
    return out


def first_turn(sample: Sample, instruction: str | None = None) -> ChatTurn:
    parts: list[Part] = list(sample.images)
    parts.extend(sample.videos)
    text = sample.question.rstrip()
    instr = INSTRUCTIONS[sample.answer_format.kind] if instruction is None else instruction
    if instr:
        text += "\n\n" + instr
    parts.append(Text(text=text))
    return ChatTurn(role="user", parts=tuple(parts))


@dataclass(slots=True)
class EpisodeState:
    sample: Sample
    conversation: tuple[ChatTurn, ...]
    responses: tuple[Response, ...] = ()
    grades: tuple[Grade, ...] = ()
    feedback: tuple[Feedback, ...] = ()
    turn: int = 0
    solved: bool = False
    done: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    observation: Observation | None
    reward: float
    done: bool
    grade: Grade
    feedback: Feedback | None = None


@dataclass(slots=True)
class InterFeedbackEnv:
    """One episode of the protocol. ``max_rounds`` counts feedback rounds (0 = no feedback:
    the screening episodes that build the benchmark)."""

    sample: Sample
    run_id: str
    episode_id: str
    episode_key: str
    receiver: str
    seed: int
    max_rounds: int = 0
    provider: FeedbackProviderActor | None = None
    plan: PolicyPlan | None = None
    first: ChatTurn | None = None  # the first user turn, when the caller has it built
    extractor: Mode = "strict"
    reask: str = REASK
    prompts: dict[str, str] = field(default_factory=dict)  # the scenario's, for policies
    state: EpisodeState = field(init=False)

    def reset(self) -> Observation:
        first = self.first if self.first is not None else first_turn(self.sample)
        self.state = EpisodeState(sample=self.sample, conversation=(first,))
        return self.observation()

    def observation(self) -> Observation:
        return Observation(run_id=self.run_id, episode_id=self.episode_id, turn=self.state.turn,
                           sender="env", conversation=self.state.conversation,
                           answer_format=self.sample.answer_format, extractor=self.extractor)

    def ask_context(self) -> AskContext:
        s = self.state
        return AskContext(oracle=Oracle(sample=self.sample, responses=s.responses,
                                        feedback=s.feedback, episode_key=self.episode_key),
                          seed=self.seed)

    def grade(self, response: Response) -> Grade:
        """Check the response; the same reply is also read by the other extractor
        (``alt_answer``/``alt_correct``: the report's extractor sensitivity)."""
        fmt = self.sample.answer_format
        other: Mode = "lenient" if self.extractor == "strict" else "strict"
        alt = extract_answer(response.text, fmt, mode=other)
        return Grade(run_id=self.run_id, episode_id=self.episode_id, turn=response.turn,
                     sender="env", correct=check_answer(response.answer, self.sample.answer, fmt),
                     answer=response.answer, expected=self.sample.answer, method=fmt.kind,
                     unparsed=response.parse == "unparsed", alt_answer=alt,
                     alt_correct=check_answer(alt, self.sample.answer, fmt))

    async def step(self, response: Response) -> Step:
        s = self.state
        if s.done:
            raise RuntimeError("step() after the episode ended; call reset()")
        if response.parse == "error":
            raise EpisodeFailed(response.error or "backend error")
        grade = self.grade(response)
        s.responses += (response,)
        s.grades += (grade,)
        reward = 1.0 if grade.correct else 0.0
        if grade.correct or s.turn >= self.max_rounds:
            s.solved, s.done = grade.correct, True
            return Step(None, reward, True, grade)
        assert self.provider is not None and self.plan is not None
        r = s.turn + 1
        rp = self.plan.for_round(r)
        try:
            fb = await self.provider.ask(FeedbackRequest(
                sample=self.sample, conversation=s.conversation, responses=s.responses,
                feedback=s.feedback, grade=grade, round=r, policy_name=rp.name, policy=rp.fn,
                options=rp.options, episode_key=self.episode_key, seed=self.seed,
                prompts=self.prompts))
        except InfrastructureError as exc:
            raise EpisodeFailed(f"feedback provider: {exc}") from exc
        s.feedback += (fb,)
        s.conversation += (
            ChatTurn(role="assistant", parts=(Text(text=response.text),)),
            ChatTurn(role="user", parts=(Text(text=f"{fb.text}\n{self.reask}"
                                                  if self.reask else fb.text),)),
        )
        s.turn = r
        return Step(self.observation(), reward, False, grade, fb)


__all__ = ["EpisodeFailed", "EpisodeState", "InterFeedbackEnv", "PolicyPlan",
           "RoundPolicy", "Step", "first_turn", "payload"]
