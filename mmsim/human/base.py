"""What a human channel sees and returns, and the options of ``kind: human`` agents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmsim.data.sample import Sample
from mmsim.errors import InfrastructureError
from mmsim.messages import ChatTurn, Feedback, Response, Usage

Mode = Literal["feedback", "annotate"]
#: What the person decided. Feedback mode: ``feedback`` (typed text), ``incorrect`` (no
#: text: binary feedback), ``correct`` (the person disputes the automatic grade).
#: Annotate mode: ``confirm`` the proposal, ``edit`` it (``label`` is the new label),
#: ``reject`` it.
Verdict = Literal["feedback", "incorrect", "correct", "confirm", "edit", "reject"]
FEEDBACK_VERDICTS = ("feedback", "incorrect", "correct")
ANNOTATE_VERDICTS = ("confirm", "edit", "reject")
#: The text a verdict without typed text stands for.
DEFAULT_TEXT = {"incorrect": "Your answer is incorrect.",
                "correct": "Your answer is correct."}


@dataclass(frozen=True, slots=True)
class HumanItem:
    """One thing a person is asked about: the episode so far and the model's answer.

    Attributes:
        key: unique per request (episode id + round); the web queue's item id.
        episode_id: the episode.
        sample: the item (ground truth included; channels show it when ``show_answer``).
        conversation: the dialogue the model saw before its last answer.
        responses: the model's responses so far; the last one is under review.
        feedback: the feedback given in earlier rounds.
        round: the feedback round (1 for the first); 0 in annotate mode.
        max_rounds: the round budget (for display).
        mode: ``feedback`` or ``annotate``.
        prompt: the policy's instruction (what a model provider would have been asked).
        policy: the policy name.
        provider: the human agent's name.
    """

    key: str
    episode_id: str
    sample: Sample
    conversation: tuple[ChatTurn, ...]
    responses: tuple[Response, ...]
    feedback: tuple[Feedback, ...]
    round: int
    mode: Mode
    prompt: str
    policy: str
    provider: str
    max_rounds: int = 0
    seed: int = 0
    episode_key: str = ""

    @property
    def response(self) -> Response:
        return self.responses[-1]

    @property
    def proposal(self) -> str | None:
        """The model's extracted answer (the proposal in annotate mode)."""
        return self.responses[-1].answer if self.responses else None

    def dialogue(self) -> list[tuple[str, str]]:
        """(speaker, text) pairs of the episode so far, the model's last answer included."""
        out = [("user" if t.role == "user" else "model", t.text) for t in self.conversation]
        out.append(("model", self.response.text))
        return out


@dataclass(frozen=True, slots=True)
class HumanReply:
    """What the person (or replay, or persona) answered."""

    verdict: Verdict
    text: str
    person: str
    source: str  # "human", "replay", "persona" (and the replay's original source in meta)
    label: str | None = None
    usage: Usage = Usage()
    meta: dict[str, Any] = field(default_factory=dict)

    def as_meta(self) -> dict[str, Any]:
        """The Feedback ``meta`` this reply becomes (what replay reads back)."""
        out: dict[str, Any] = {**self.meta, "source": self.source, "person": self.person,
                               "verdict": self.verdict}
        if self.label is not None:
            out["label"] = self.label
        return out


class ReplayMiss(InfrastructureError):
    """No recorded feedback matches; ``fallback`` names the policy to use instead (None:
    the episode fails with this reason)."""

    def __init__(self, message: str, *, fallback: str | None = None):
        super().__init__(message)
        self.fallback = fallback


class HumanClosed(InfrastructureError):
    """The channel cannot reach a person any more (end of input, server stopped)."""


class HumanOptions(BaseModel):
    """The ``human:`` options of a ``kind: human`` agent (every channel reads its own)."""

    model_config = ConfigDict(extra="forbid")
    # all channels
    person: str | None = Field(None, description="who answers (terminal; persona name)")
    show_answer: bool = True
    # web
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    lease_s: float = Field(300.0, gt=0)
    url_file: str | None = None
    # terminal
    preview: Literal["auto", "halfblock", "kitty", "iterm", "none"] = "auto"
    preview_width: int = Field(48, ge=8, le=200)
    # replay
    replay_from: str | None = None
    replay_provider: str | None = None
    on_miss: str = "fail"
    # persona
    persona: str = "expert"
    expertise: Literal["novice", "expert"] | None = None
    style: Literal["terse", "normal", "verbose"] | None = None
    error_rate: float | None = Field(None, ge=0, le=1)
    leak_rate: float | None = Field(None, ge=0, le=1)
    edit_rate: float | None = Field(None, ge=0, le=1)


__all__ = ["ANNOTATE_VERDICTS", "DEFAULT_TEXT", "FEEDBACK_VERDICTS", "HumanClosed",
           "HumanItem", "HumanOptions", "HumanReply", "Mode", "ReplayMiss", "Verdict"]
