"""Typed messages exchanged by actors.

Every message is a frozen pydantic model that carries the run, episode, turn and sender.
Images and videos travel *by reference* (a path or URI plus a content hash): the same
:class:`Image` object is shared by every turn of an episode, never its pixels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Text(BaseModel):
    """A text content part."""

    model_config = _FROZEN
    type: Literal["text"] = "text"
    text: str


class Image(BaseModel):
    """An image by reference: where it is, and the sha256 of its bytes."""

    model_config = _FROZEN
    type: Literal["image"] = "image"
    uri: str
    sha256: str
    mime: str = "image/png"
    width: int | None = None
    height: int | None = None

    @classmethod
    def from_path(cls, path: str | Path, *, width: int | None = None,
                  height: int | None = None) -> Image:
        """Reference an image file, hashing its bytes once."""
        p = Path(path)
        data = p.read_bytes()
        suffix = p.suffix.lower().lstrip(".")
        mime = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
                "gif": "image/gif", "bmp": "image/bmp"}.get(suffix, "image/png")
        return cls(uri=str(p), sha256=hashlib.sha256(data).hexdigest(), mime=mime,
                   width=width, height=height)


class Video(BaseModel):
    """A video by reference: where it is, and the sha256 of its bytes."""

    model_config = _FROZEN
    type: Literal["video"] = "video"
    uri: str
    sha256: str
    mime: str = "video/mp4"
    fps: float | None = None
    num_frames: int | None = None


Part = Annotated[Text | Image | Video, Field(discriminator="type")]
Role = Literal["system", "user", "assistant"]


class ChatTurn(BaseModel):
    """One turn of a conversation as a model sees it."""

    model_config = _FROZEN
    role: Role
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.parts if isinstance(p, Text))


class AnswerFormat(BaseModel):
    """How an answer is extracted and checked.

    ``kind`` is ``choice`` (a letter among ``letters``; ``options`` holds their texts),
    ``numeric`` (a number, compared with ``rel_tol``/``abs_tol``) or ``exact`` (a normalised
    string).
    """

    model_config = _FROZEN
    kind: Literal["choice", "numeric", "exact"]
    letters: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    rel_tol: float = 1e-6
    abs_tol: float = 1e-9


class Usage(BaseModel):
    """Tokens a call used, and how many times it was retried (infrastructure faults)."""

    model_config = _FROZEN
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0


class Envelope(BaseModel):
    """Fields every message carries."""

    model_config = _FROZEN
    run_id: str
    episode_id: str
    turn: int
    sender: str


class Observation(Envelope):
    """What the receiver sees: the whole conversation so far (the image once, first)."""

    kind: Literal["observation"] = "observation"
    conversation: tuple[ChatTurn, ...]
    answer_format: AnswerFormat
    #: how the answer is read from the reply: ``strict`` (only answers given as answers) or
    #: ``lenient`` (also unique letter or option-text mentions; mmsim.tasks.answers)
    extractor: Literal["strict", "lenient"] = "strict"


ParseStatus = Literal["parsed", "unparsed", "error"]


class Response(Envelope):
    """A model's reply: raw text, the extracted answer or an explicit ``unparsed``.

    ``parse`` is ``parsed`` with ``answer`` set, ``unparsed`` when no answer could be
    extracted (never replaced by a guess), or ``error`` when the backend failed (``error``
    says why; such a response is never graded).
    """

    kind: Literal["response"] = "response"
    text: str
    answer: str | None = None
    parse: ParseStatus = "parsed"
    usage: Usage = Usage()
    latency_s: float = 0.0
    error: str | None = None
    simulated: bool = False


class Grade(Envelope):
    """The verifiable check of a response against the ground truth."""

    kind: Literal["grade"] = "grade"
    correct: bool
    answer: str | None
    expected: str
    method: Literal["choice", "numeric", "exact"]
    unparsed: bool = False
    #: the same reply read by the other extractor (strict <-> lenient) and its grade: the
    #: report's extractor sensitivity (None where not computed)
    alt_answer: str | None = None
    alt_correct: bool | None = None


class Feedback(Envelope):
    """Feedback from a provider under a policy.

    ``feedback_kind`` is the kind of feedback (``binary``, ``detailed``, ``reveal`` or a
    user policy's own), ``reveals_answer`` says the policy meant to give the answer away,
    ``leaked`` says the leak detector found the answer in feedback that must not reveal it.
    """

    kind: Literal["feedback"] = "feedback"
    feedback_kind: str
    text: str
    policy: str
    reveals_answer: bool = False
    leaked: bool = False
    usage: Usage = Usage()
    meta: dict[str, Any] = Field(default_factory=dict)


class Verdict(Envelope):
    """A judge's structured score of an open output."""

    kind: Literal["verdict"] = "verdict"
    score: float | None
    reason: str
    parse: ParseStatus = "parsed"
    usage: Usage = Usage()


class Extraction(Envelope):
    """A model-based extractor's reading of a reply the deterministic extractor left
    unparsed (``of_turn``: the reply's turn). Reported separately, never mixed into the
    deterministic grades."""

    kind: Literal["extraction"] = "extraction"
    extractor: str
    of_turn: int
    text: str
    answer: str | None = None
    correct: bool = False
    usage: Usage = Usage()
    error: str | None = None


Message = Annotated[Observation | Response | Grade | Feedback | Verdict | Extraction,
                    Field(discriminator="kind")]
