"""Feedback policies: async functions ``(FeedbackContext) -> Feedback`` registered by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mmsim.data.sample import Sample
from mmsim.messages import ChatTurn, Feedback, Grade, Response, Usage
from mmsim.policies.leak import detect_leak
from mmsim.registry import Registry


class _Generator(Protocol):
    async def __call__(self, prompt: str, /) -> tuple[str, Usage, dict[str, Any]]: ...


@dataclass(slots=True)
class FeedbackContext:
    """What a policy sees when the receiver's answer was graded wrong.

    Attributes:
        sample: the item (ground truth included).
        conversation: the dialogue so far, as the receiver saw it.
        responses: the receiver's responses so far (the last one was just graded).
        grade: the grade of the last response.
        round: the feedback round, 1 for the first feedback.
        policy: the name the scenario gave this policy.
        provider: the provider's name.
        options: the policy's ``options:`` from the scenario.
    """

    sample: Sample
    conversation: tuple[ChatTurn, ...]
    responses: tuple[Response, ...]
    grade: Grade
    round: int
    policy: str
    provider: str
    options: dict[str, Any]
    _generate: _Generator
    _envelope: dict[str, Any]
    usage: Usage = Usage()
    meta: dict[str, Any] | None = None

    @property
    def response(self) -> Response:
        return self.responses[-1]

    async def ask_provider(self, prompt: str) -> str:
        """Ask the provider's backend (model, human or sim) and return its text."""
        text, usage, meta = await self._generate(prompt)
        self.usage = Usage(prompt_tokens=self.usage.prompt_tokens + usage.prompt_tokens,
                           completion_tokens=self.usage.completion_tokens
                           + usage.completion_tokens,
                           retries=self.usage.retries + usage.retries)
        self.meta = {**(self.meta or {}), **meta}
        return text

    def feedback(self, text: str, *, kind: str, reveals_answer: bool = False) -> Feedback:
        """Build the Feedback message. Feedback that does not mean to reveal the answer is
        checked by the leak detector and flagged ``leaked`` when it names the answer."""
        leaked = (not reveals_answer) and detect_leak(text, self.sample)
        return Feedback(**self._envelope, feedback_kind=kind, text=text, policy=self.policy,
                        reveals_answer=reveals_answer, leaked=leaked, usage=self.usage,
                        meta=self.meta or {})


PolicyFn = Callable[[FeedbackContext], Awaitable[Feedback]]
POLICIES: Registry[PolicyFn] = Registry("policy")


def policy(name: str, *, options: tuple[str, ...] | None = None
           ) -> Callable[[PolicyFn], PolicyFn]:
    """Register a feedback policy under ``name``. ``options``: the keys its ``options:``
    may have (``mmsim validate`` refuses others, with a did-you-mean); None: any.

    Example:
        >>> @policy("terse", options=("text",))
        ... async def terse(ctx: FeedbackContext) -> Feedback:
        ...     return ctx.feedback(ctx.options.get("text", "No."), kind="binary")
    """
    register = POLICIES.decorator(name)

    def deco(fn: PolicyFn) -> PolicyFn:
        if options is not None:
            setattr(fn, "policy_options", tuple(options))  # noqa: B010
        return register(fn)

    return deco


def policy_options(fn: PolicyFn) -> tuple[str, ...] | None:
    """The option keys a policy declared (None: it did not say)."""
    opts = getattr(fn, "policy_options", None)
    return tuple(opts) if opts is not None else None
