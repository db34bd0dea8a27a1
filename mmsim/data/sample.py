"""The dataset sample every adapter produces."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mmsim.messages import AnswerFormat, Image, Video


class Sample(BaseModel):
    """One evaluation item.

    Attributes:
        id: unique within its dataset (adapters fail on duplicates).
        question: the text shown to the model (options included, as the dataset writes them).
        images: images shown before the question, by reference.
        answer: the ground truth: a letter for ``choice``, else the answer text/number.
        answer_format: how answers are extracted and checked.
        category: grouping for per-category metrics (subject, task family, version...).
        difficulty: a logit-scale difficulty where known (the synthetic data sets it; used
            by simulated agents), else None.
        meta: anything else from the source row (JSON-serialisable).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    question: str
    images: tuple[Image, ...] = ()
    videos: tuple[Video, ...] = ()
    answer: str
    answer_format: AnswerFormat
    category: str = ""
    difficulty: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def answer_text(self) -> str:
        """The answer as a person would say it ("B (60°)" for a choice)."""
        fmt = self.answer_format
        if fmt.kind == "choice" and self.answer in fmt.letters and fmt.options:
            return f"{self.answer} ({fmt.options[fmt.letters.index(self.answer)]})"
        return self.answer


def dataset_fingerprint(samples: Iterable[Sample]) -> str:
    """What identifies a data set's content: ids, answers, questions and image hashes, in
    order (the same items read from any format give the same fingerprint)."""
    h = hashlib.sha256()
    for s in samples:
        h.update(s.id.encode())
        h.update(s.answer.encode())
        h.update(s.question.encode())
        for im in s.images:
            h.update(im.sha256.encode())
    return h.hexdigest()
