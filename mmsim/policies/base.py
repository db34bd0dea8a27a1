"""Feedback policies: async functions ``(FeedbackContext) -> Feedback`` registered by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mmsim.data.sample import Sample
from mmsim.messages import ChatTurn, Feedback, Grade, Image, Part, Response, Text, Usage, Video
from mmsim.policies.leak import detect_leak
from mmsim.registry import Registry

#: What a policy may send its provider: a text prompt (one user turn), content parts (one
#: multimodal user turn: images, video, text, in order), or a whole message list.
ProviderInput = str | Sequence[Part] | Sequence[ChatTurn]


class _Generator(Protocol):
    async def __call__(self, messages: tuple[ChatTurn, ...], /
                       ) -> tuple[str, Usage, dict[str, Any]]: ...


def provider_messages(prompt: ProviderInput) -> tuple[ChatTurn, ...]:
    """The message list a :data:`ProviderInput` stands for.

    Raises:
        TypeError: for anything else (a policy's bug, named by the caller).
    """
    if isinstance(prompt, str):
        return (ChatTurn(role="user", parts=(Text(text=prompt),)),)
    items: tuple[Any, ...] = tuple(prompt)
    if items and all(isinstance(x, ChatTurn) for x in items):
        return items
    if items and all(isinstance(x, (Text, Image, Video)) for x in items):
        return (ChatTurn(role="user", parts=items),)
    raise TypeError("ask_provider takes a str, a sequence of content parts (Text, Image, "
                    "Video) or a sequence of ChatTurn, got "
                    f"{type(prompt).__name__} of {sorted({type(x).__name__ for x in items})}")


def messages_text(messages: Sequence[ChatTurn]) -> str:
    """The text parts of a message list, one turn per paragraph (for channels that show
    people text: a person sees the item's images on their own page)."""
    return "\n\n".join("\n".join(p.text for p in turn.parts if isinstance(p, Text))
                        for turn in messages).strip()


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
        prompts: the scenario's prompt templates for policies (``feedback``: the detailed
            feedback prompt; empty: the built-in defaults).
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
    prompts: Mapping[str, str] = field(default_factory=dict)

    @property
    def response(self) -> Response:
        return self.responses[-1]

    @property
    def visuals(self) -> tuple[Part, ...]:
        """The item's images, then its videos (by reference: backends send the frames)."""
        return (*self.sample.images, *self.sample.videos)

    def with_visuals(self, text: str) -> tuple[Part, ...]:
        """One multimodal message's parts: the item's images/videos, then ``text``."""
        return (*self.visuals, Text(text=text))

    def transcript(self) -> str:
        """The conversation so far as text, one ``Student:``/``Teacher:`` line per turn
        (images left out: send them with :meth:`with_visuals`)."""
        lines = []
        for turn in self.conversation:
            text = " ".join(p.text for p in turn.parts if isinstance(p, Text)).strip()
            lines.append(f"{'Student' if turn.role == 'assistant' else 'Teacher'}: {text}")
        lines.append(f"Student: {self.response.text.strip()}")
        return "\n".join(lines)

    async def ask_provider(self, prompt: ProviderInput) -> str:
        """Ask the provider's backend (model, human or sim) and return its text.

        ``prompt`` is a text (one user turn), content parts (one multimodal user turn, e.g.
        ``ctx.with_visuals(text)``: the provider sees the image) or a list of ChatTurn
        (the policy writes the whole conversation the provider sees).
        """
        text, usage, meta = await self._generate(provider_messages(prompt))
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
__all__ = ["POLICIES", "FeedbackContext", "PolicyFn", "ProviderInput", "messages_text",
           "policy", "provider_messages"]
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
