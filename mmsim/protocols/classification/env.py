"""One classification episode: the prompt a model sees, and how its reply is read.

Protocols (``ClassificationResult.protocol``):

* ``closed`` — one image, the class list in the prompt, one class name back;
* ``mc-random`` / ``mc-hard`` — one image, k lettered class names (the true class and k-1
  random or hard distractors), a letter back;
* ``open`` — one image, no list, a free name back;
* ``batch`` — b images in one prompt (in a given order), the class list, a numbered list
  back (one class name per image).

Replies are read deterministically and never guessed: an answer that cannot be read is
``unparsed`` (counted wrong and reported). A readable answer that names no class exactly is
*out of list*; it is kept, and mapped to the nearest class with the configured encoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mmsim.backends.base import Oracle
from mmsim.data.sample import Sample
from mmsim.messages import AnswerFormat, ChatTurn, Envelope, Observation, Part, Text
from mmsim.protocols.classification.data import item_label, item_labels
from mmsim.protocols.classification.encoders import ClassIndex, normalize_label
from mmsim.protocols.classification.sim import SimView
from mmsim.tasks.answers import extract_exact

Protocol = Literal["closed", "mc-random", "mc-hard", "open", "batch"]
PROTOCOLS: tuple[Protocol, ...] = ("closed", "mc-random", "mc-hard", "open", "batch")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ItemOutcome(BaseModel):
    """How one image of an episode was answered.

    ``predictions`` maps a reading of the answer to a class (None: no class): ``strict``
    the class the answer names exactly (no mapping); ``mapped`` that class or, for an
    out-of-list answer, the nearest class under the protocol's encoder (closed, batch);
    one entry per encoder id (open); ``choice`` the chosen option (multiple choice).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    sample_id: str
    position: int = 0
    label: str
    labels: tuple[str, ...]
    answer: str | None
    in_list: bool | None
    predictions: dict[str, str | None] = Field(default_factory=dict)


class ClassificationResult(Envelope):
    """The graded outcome of a classification episode (stored with its messages)."""

    kind: Literal["cls_result"] = "cls_result"
    protocol: str
    batch_size: int = 1
    order: int = 0
    group: str = ""
    encoder: str | None = None
    options: tuple[str, ...] = ()
    items: tuple[ItemOutcome, ...]


@dataclass(frozen=True, slots=True)
class Unit:
    """One episode to play: a protocol on one image (or a batch in one order)."""

    episode_id: str
    protocol: Protocol
    model: str
    items: tuple[Sample, ...]
    batch_size: int = 1
    order: int = 0
    group: str = ""
    options: tuple[str, ...] = ()  # multiple choice: class names in letter order


def episode_id(protocol: str, model: str, sample_id: str) -> str:
    return f"cls/{protocol}/{model}/{sample_id}"


def batch_episode_id(model: str, size: int, group: str, order: int) -> str:
    return f"cls/batch{size}/{model}/{group}/o{order}"


CLOSED_PROMPT = ("Which one of these classes does the image show?\nClasses: {classes}\n\n"
                 "Answer with exactly one class name from the list. End your reply with "
                 "'Answer: <class name>'.")
MC_PROMPT = ("What does the image show?\n{options}\n\nAnswer with the letter of the correct "
             "option. End your reply with 'Answer: <letter>'.")
OPEN_PROMPT = ("What does the image show? Name the main object in a few words. End your "
               "reply with 'Answer: <name>'.")
BATCH_PROMPT = ("{n} images are given, numbered 1 to {n} in the order shown.\n"
                "Classes: {classes}\n\nFor each image, give exactly one class name from the "
                "list, as a numbered list with one line per image:\n1. <class name>\n...\n"
                "{n}. <class name>")


def build_prompt(unit: Unit, classes: tuple[str, ...]) -> tuple[ChatTurn, AnswerFormat]:
    """The user turn (images first, then the text) and the answer format of an episode."""
    parts: list[Part] = [im for s in unit.items for im in s.images]
    class_list = ", ".join(classes)
    if unit.protocol == "closed":
        text = CLOSED_PROMPT.format(classes=class_list)
        fmt = AnswerFormat(kind="exact")
    elif unit.protocol == "open":
        text, fmt = OPEN_PROMPT, AnswerFormat(kind="exact")
    elif unit.protocol == "batch":
        text = BATCH_PROMPT.format(n=len(unit.items), classes=class_list)
        fmt = AnswerFormat(kind="exact")
    else:
        letters = tuple(LETTERS[:len(unit.options)])
        opts = "\n".join(f"{x}. {o}" for x, o in zip(letters, unit.options, strict=True))
        text = MC_PROMPT.format(options=opts)
        fmt = AnswerFormat(kind="choice", letters=letters, options=unit.options)
    parts.append(Text(text=text))
    return ChatTurn(role="user", parts=tuple(parts)), fmt


def observation(unit: Unit, run_id: str, classes: tuple[str, ...]) -> Observation:
    turn, fmt = build_prompt(unit, classes)
    return Observation(run_id=run_id, episode_id=unit.episode_id, turn=0, sender="env",
                       conversation=(turn,), answer_format=fmt)


def oracle(unit: Unit, view: SimView) -> Oracle:
    """What a simulated model may look at for this episode (real backends ignore it)."""
    first = unit.items[0]
    sample = Sample(id=unit.group or first.id, question="", images=first.images,
                    answer=item_label(first), answer_format=AnswerFormat(kind="exact"),
                    difficulty=first.difficulty, meta={"cls_view": view})
    return Oracle(sample=sample, episode_key=unit.episode_id)


# --------------------------------------------------------------------------- reading

_EXPLICIT = re.compile(r"answer\s*(?:is|:)|<\s*answer\s*>|\\boxed", re.IGNORECASE)
MAX_BARE_WORDS = 6


def read_class_answer(text: str) -> str | None:
    """The name a reply gives: after ``Answer:`` (or in ``<answer>``/``\\boxed{}``), else
    the whole reply when it is short (at most 6 words); None otherwise (unparsed)."""
    if _EXPLICIT.search(text):
        ans = extract_exact(text)
    else:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        if len(lines) != 1 or len(lines[0].split()) > MAX_BARE_WORDS:
            return None
        ans = extract_exact(lines[0])
    if ans is None:
        return None
    ans = normalize_label(ans)
    return ans or None


_NUMBERED = re.compile(r"^\s*(?:[-*]\s*)?(?:\*\*)?(?:image\s*)?[#(\[]?(\d{1,3})[)\].:\-]*"
                       r"(?:\*\*)?[\s:.\-]+(.+?)\s*$", re.IGNORECASE)


def read_numbered_list(text: str, n: int) -> list[str | None]:
    """Answers ``1..n`` of a numbered list (``1. x``, ``1) x``, ``Image 1: x``, ``- 1: x``);
    the last line for a number wins; missing numbers are None."""
    out: list[str | None] = [None] * n
    for line in text.splitlines():
        m = _NUMBERED.match(line)
        if m is None:
            continue
        k = int(m.group(1))
        if 1 <= k <= n:
            value = re.sub(r"^answer\s*:\s*", "", m.group(2).strip(), flags=re.IGNORECASE)
            name = normalize_label(value)
            out[k - 1] = name or None
    return out


def outcome(item: Sample, position: int, answer: str | None, index: ClassIndex | None,
            *, encoders: dict[str, ClassIndex] | None = None) -> ItemOutcome:
    """Grade a name answer: strict (exact class) and mapped readings."""
    label, labels = item_label(item), item_labels(item)
    if answer is None:
        keys = ["strict", "mapped"] if index is not None else ["strict", *(encoders or {})]
        return ItemOutcome(sample_id=item.id, position=position, label=label, labels=labels,
                           answer=None, in_list=None, predictions=dict.fromkeys(keys))
    some = index if index is not None else next(iter((encoders or {}).values()))
    exact = some.exact(answer)
    preds: dict[str, str | None] = {"strict": exact}
    if index is not None:
        preds["mapped"] = exact or index.map(answer)
    for key, idx in (encoders or {}).items():
        preds[key] = exact or idx.map(answer)
    return ItemOutcome(sample_id=item.id, position=position, label=label, labels=labels,
                       answer=answer, in_list=exact is not None, predictions=preds)


def choice_outcome(item: Sample, letter: str | None, options: tuple[str, ...]
                   ) -> ItemOutcome:
    """Grade a multiple-choice answer (a letter, or None when unparsed)."""
    chosen = options[LETTERS.index(letter)] if letter and letter in LETTERS[:len(options)] \
        else None
    return ItemOutcome(sample_id=item.id, label=item_label(item), labels=item_labels(item),
                       answer=letter, in_list=None if letter is None else True,
                       predictions={"choice": chosen})


__all__ = ["PROTOCOLS", "ClassificationResult", "ItemOutcome", "Protocol", "Unit",
           "batch_episode_id", "build_prompt", "choice_outcome", "episode_id", "observation",
           "oracle", "outcome", "read_class_answer", "read_numbered_list"]
