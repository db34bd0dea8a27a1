"""Persona-simulated humans: a model (any backend) playing a person with a preset.

A persona is ``<expertise>[-<style>]`` (``novice``, ``expert-terse``, ``novice-verbose``)
plus optional overrides (``error_rate``, ``leak_rate``, ``edit_rate``):

* expertise sets the defaults: a **novice** gives misleading feedback 35% of the time and
  names the answer 15% of the time; an **expert** 5% and 2%;
* style sets the length: **terse** (the hint only), **normal**, **verbose** (the hint
  plus encouragement and method advice).

On the ``sim`` backend the persona shapes the simulation: ``feedback_quality = 1 -
error_rate`` and ``leak_rate`` (unless the agent's ``params`` set them), and the text is
cut or extended to the style. On a real model backend the persona becomes a system prompt.
In annotate mode a sim persona confirms correct proposals, edits wrong ones to the right
label with probability ``edit_rate`` (else rejects them) and errs (the opposite decision)
with probability ``error_rate``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mmsim.backends.base import BACKENDS, Backend, GenerateRequest, Oracle
from mmsim.backends.sim import seeded_rng
from mmsim.errors import UserError
from mmsim.human.base import HumanItem, HumanOptions, HumanReply
from mmsim.human.channel import HumanChannel
from mmsim.messages import AnswerFormat, ChatTurn, Text
from mmsim.tasks.answers import check_answer, extract_answer

PRESETS: dict[str, dict[str, float]] = {
    "novice": {"error_rate": 0.35, "leak_rate": 0.15, "edit_rate": 0.4},
    "expert": {"error_rate": 0.05, "leak_rate": 0.02, "edit_rate": 0.8},
}
STYLES = ("terse", "normal", "verbose")

_VERBOSE_EXTRA = (
    "Take your time and describe what you see in the figure before you answer.",
    "It often helps to write down each quantity the question mentions, one by one.",
    "Do not worry, this is a common mistake; go through the picture slowly once more.",
    "Check your reasoning step by step and make sure every step uses the image.",
)

SYSTEM_PROMPT = """You are role-playing a {expertise} human annotator who gives feedback to a \
student model about its answer to a question on an image.
Style: {style_text}
{error_text}{leak_text}Write only the feedback, as the person would type it."""


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    expertise: str
    style: str
    error_rate: float
    leak_rate: float
    edit_rate: float

    @classmethod
    def resolve(cls, options: HumanOptions) -> Persona:
        parts = options.persona.strip().lower().split("-")
        expertise, style = "expert", "normal"
        for p in parts:
            if p in PRESETS:
                expertise = p
            elif p in STYLES:
                style = p
            else:
                raise UserError(f"unknown persona part {p!r}; a persona is "
                                f"<novice|expert>[-<terse|normal|verbose>]",
                                field="human.persona")
        expertise = options.expertise or expertise
        style = options.style or style
        base = PRESETS[expertise]
        return cls(name=options.person or f"persona:{expertise}-{style}", expertise=expertise,
                   style=style,
                   error_rate=base["error_rate"] if options.error_rate is None
                   else options.error_rate,
                   leak_rate=base["leak_rate"] if options.leak_rate is None
                   else options.leak_rate,
                   edit_rate=base["edit_rate"] if options.edit_rate is None
                   else options.edit_rate)

    def system_prompt(self) -> str:
        style_text = {"terse": "one short sentence, no greeting.",
                      "normal": "one or two sentences.",
                      "verbose": "several sentences: what is wrong, how to re-check, and "
                                 "encouragement."}[self.style]
        error_text = (f"You are not always right: about {round(100 * self.error_rate)}% of "
                      "the time your hint points at the wrong thing.\n"
                      if self.error_rate >= 0.01 else "")
        leak_text = (f"About {round(100 * self.leak_rate)}% of the time you give the answer "
                     "away.\n" if self.leak_rate >= 0.01
                     else "Never state the correct answer.\n")
        return SYSTEM_PROMPT.format(expertise=self.expertise, style_text=style_text,
                                    error_text=error_text, leak_text=leak_text)

    def describe(self) -> dict[str, Any]:
        return {"persona": self.name, "expertise": self.expertise, "style": self.style,
                "error_rate": self.error_rate, "leak_rate": self.leak_rate,
                "edit_rate": self.edit_rate}


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def shape_text(text: str, style: str, rng: Any) -> str:
    """Cut or extend a simulated feedback text to a persona's style."""
    sentences = [s for s in _SENTENCE.split(text.strip()) if s]
    if style == "terse" and len(sentences) > 1:
        sentences = sentences[1:]
    elif style == "verbose":
        extra = list(_VERBOSE_EXTRA)
        rng.shuffle(extra)
        sentences = [*sentences[:1], *extra[:2], *sentences[1:]]
    return " ".join(sentences)


class PersonaChannel(HumanChannel):
    """A model playing a person (see the module docstring)."""

    source = "persona"

    def __init__(self, name: str, options: HumanOptions, backend: str = "sim",
                 params: dict[str, Any] | None = None):
        super().__init__(name, options)
        self.persona = Persona.resolve(options)
        p = dict(params or {})
        if backend == "sim":
            p = {"feedback_quality": 1.0 - self.persona.error_rate,
                 "leak_rate": self.persona.leak_rate, **p}
        self.backend_name = backend
        self.inner: Backend = BACKENDS.get(backend)(name, p)
        self.simulated = self.inner.simulated

    def describe(self) -> dict[str, Any]:
        return {"backend": "human", "channel": "persona", "source": self.source,
                "simulated": self.simulated, **self.persona.describe(),
                "model": self.inner.describe()}

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def ask(self, item: HumanItem) -> HumanReply:
        if item.mode == "annotate":
            return await self._annotate(item)
        oracle = Oracle(sample=item.sample, responses=item.responses, feedback=item.feedback,
                        episode_key=item.episode_key)
        messages = (ChatTurn(role="system", parts=(Text(text=self.persona.system_prompt()),)),
                    ChatTurn(role="user", parts=(Text(text=item.prompt),)))
        c = await self.inner.generate(GenerateRequest(messages=messages, purpose="feedback",
                                                      seed=item.seed, oracle=oracle))
        text = c.text.strip()
        if self.inner.simulated:
            rng = seeded_rng(item.seed, self.name, item.key, "style")
            text = shape_text(text, self.persona.style, rng)
        return HumanReply(verdict="feedback", text=text, person=self.persona.name,
                          source=self.source, usage=c.usage,
                          meta={**c.meta, "persona": self.persona.name})

    async def _annotate(self, item: HumanItem) -> HumanReply:
        s = item.sample
        proposal = item.proposal
        if self.inner.simulated:
            rng = seeded_rng(item.seed, self.name, "annotate", s.id, proposal)
            right = check_answer(proposal, s.answer, s.answer_format)
            err = rng.random() < self.persona.error_rate
            if right != err:  # a correct proposal judged right, or a wrong one misjudged
                return HumanReply(verdict="confirm", text=proposal or "",
                                  person=self.persona.name, source=self.source,
                                  label=proposal)
            if not err and rng.random() < self.persona.edit_rate:
                return HumanReply(verdict="edit", text=s.answer, person=self.persona.name,
                                  source=self.source, label=s.answer)
            return HumanReply(verdict="reject", text="", person=self.persona.name,
                              source=self.source)
        oracle = Oracle(sample=s, responses=item.responses, episode_key=item.episode_key)
        messages = (ChatTurn(role="system", parts=(Text(text=self.persona.system_prompt()),)),
                    ChatTurn(role="user", parts=(Text(text=item.prompt),)))
        c = await self.inner.generate(GenerateRequest(messages=messages, purpose="feedback",
                                                      seed=item.seed, oracle=oracle))
        verdict, label = parse_annotation(c.text, proposal, s.answer_format)
        return HumanReply(verdict=verdict, text=label or "", person=self.persona.name,  # type: ignore[arg-type]
                          source=self.source, label=label, usage=c.usage,
                          meta={"raw": c.text.strip()[:500]})


def parse_annotation(text: str, proposal: str | None, fmt: AnswerFormat
                     ) -> tuple[str, str | None]:
    """``CONFIRM`` / ``REJECT`` / ``EDIT: <label>`` -> (verdict, label). The first word
    decides; anything else counts as a rejection."""
    t = text.strip()
    words = t.split(None, 1)
    head = words[0].strip(":.,!").lower() if words else ""
    if head == "confirm":
        return "confirm", proposal
    if head == "edit" and len(words) > 1:
        raw = words[1].lstrip(":").strip()
        label = extract_answer(raw, fmt) or raw
        if label:
            return "edit", label
    return "reject", None
