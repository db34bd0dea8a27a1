"""Task families: several tasks over one visual input, each with its prompt, expected output
and scorer. Families are registered by name; add your own in a ``--plugin`` file::

    from mmsim.protocols.dynamic import TaskFamily, TaskInstance, task_family

    @task_family("yes-first")
    class YesFirst(TaskFamily):
        code = "T7"
        title = "answer, starting with yes or no"
        def build(self, item, rng):
            return self.exact(item, "Start with yes or no. " + item.question, item.answer,
                              item.answer_format)

Verifiable families return a score from :meth:`TaskFamily.score`; open families
(``scoring="judge"``) are scored by the scenario's calibrated judge against
``expected`` (the reference) and ``rubric``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from mmsim.data.sample import Sample
from mmsim.messages import AnswerFormat
from mmsim.protocols.dynamic.perturb import corrupt, paraphrase
from mmsim.registry import Registry
from mmsim.tasks.answers import check_answer, extract_answer, format_number, parse_number

Scoring = Literal["exact", "judge"]


@dataclass(frozen=True)
class TaskInstance:
    """One task of a family on one item: the prompt, how it is scored and what is expected.

    ``expected`` is the answer (exact families) or the reference output (judged ones);
    ``meta`` holds what the family needs to score or simulate (candidate answer, options).
    """

    family: str
    prompt: str
    scoring: Scoring
    expected: str
    answer_format: AnswerFormat = field(default_factory=lambda: AnswerFormat(kind="exact"))
    rubric: str = ""
    chance: float = 0.0  # the score of a uniform guess (binary: 0.5, k options: 1/k)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scored:
    """A verifiable score in [0, 1] and the answer read from the output (None: unparsed)."""

    score: float
    answer: str | None


class TaskFamily:
    """A task family. Subclasses set ``code``/``title`` and implement :meth:`build`; exact
    families may override :meth:`score`; :meth:`sim_output` says how a simulated agent
    writes a right or a wrong reply (default: the expected output, or a wrong one)."""

    code: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: whether judging this family's outputs needs the visual input (``judge.sees_image:
    #: auto``): a caption or a posed question is right or wrong about the image itself
    judge_needs_visual: ClassVar[bool] = False
    name: str = ""

    def applies(self, item: Sample) -> bool:
        """Whether the family can be posed on ``item`` (default: always)."""
        del item
        return True

    def build(self, item: Sample, rng: random.Random) -> TaskInstance:
        raise NotImplementedError

    # helpers
    def exact(self, item: Sample, prompt: str, expected: str, fmt: AnswerFormat, *,
              chance: float = 0.0, **meta: Any) -> TaskInstance:
        del item
        return TaskInstance(self.name, prompt, "exact", expected, fmt, chance=chance,
                            meta=meta)

    def judged(self, prompt: str, reference: str, rubric: str, **meta: Any) -> TaskInstance:
        return TaskInstance(self.name, prompt, "judge", reference, rubric=rubric, meta=meta)

    def score(self, output: str, inst: TaskInstance) -> Scored:
        """Exact families: 1 when the extracted answer is right, else 0 (unparsed: 0)."""
        ans = extract_answer(output, inst.answer_format)
        return Scored(float(check_answer(ans, inst.expected, inst.answer_format)), ans)

    def sim_output(self, item: Sample, inst: TaskInstance, correct: bool,
                   rng: random.Random) -> str:
        """A simulated agent's reply (right when ``correct``)."""
        if inst.scoring == "judge":
            if correct:
                return paraphrase(inst.expected, rng)
            out, kind = corrupt(inst.expected, rng)
            if kind is not None and rng.random() < 0.5:
                out = corrupt(out, rng)[0]
            return out if kind is not None else "I cannot describe this."
        return f"Answer: {inst.expected if correct else wrong_answer(item, inst, rng)}"


TASK_FAMILIES: Registry[TaskFamily] = Registry("task family")


def task_family(name: str) -> Any:
    """Register a :class:`TaskFamily` subclass (instantiated once) under ``name``."""

    def deco(cls: type[TaskFamily]) -> type[TaskFamily]:
        inst = cls()
        inst.name = name
        TASK_FAMILIES.register(name, inst, doc=f"{cls.code} {cls.title}".strip())
        return cls

    return deco


def wrong_answer(item: Sample, inst: TaskInstance, rng: random.Random) -> str:
    """A plausible wrong answer for an exact task."""
    fmt = inst.answer_format
    if fmt.kind == "choice":
        wrong = [x for x in fmt.letters if x != inst.expected]
        return rng.choice(wrong) if wrong else inst.expected
    if inst.expected in ("Yes", "No", "yes", "no"):
        return {"yes": "no", "no": "yes"}[inst.expected.lower()]
    v = parse_number(inst.expected)
    if v is not None:
        return format_number(max(0.0, v + rng.choice((-2, -1, 1, 2))))
    bad, kind = corrupt(inst.expected, rng)
    del item
    return bad if kind is not None else "something else"


def _n_options(fmt: AnswerFormat) -> int:
    return len(fmt.letters) if fmt.kind == "choice" else 0


# --------------------------------------------------------------------------- families
@task_family("qa")
class VisualQA(TaskFamily):
    """T0: the dataset's own question (the format a contaminated model may have seen)."""

    code, title = "T0", "visual QA"

    def build(self, item: Sample, rng: random.Random) -> TaskInstance:
        if item.meta.get("open_answer"):
            return self.judged(item.question, item.answer,
                               "Score whether the OUTPUT answers the question with the same "
                               "meaning as the REFERENCE answer.")
        k = _n_options(item.answer_format)
        yn = item.answer in ("Yes", "No")
        return self.exact(item, item.question, item.answer, item.answer_format,
                          chance=1 / k if k else (0.5 if yn else 0.0))


@task_family("caption")
class Captioning(TaskFamily):
    """T1: describe the input (open; judged against the reference caption)."""

    judge_needs_visual = True

    code, title = "T1", "captioning"

    def applies(self, item: Sample) -> bool:
        return bool(item.meta.get("caption")) or bool(item.answer)

    def build(self, item: Sample, rng: random.Random) -> TaskInstance:
        ref = item.meta.get("caption") or f"{item.question} {item.answer}"
        return self.judged("Describe the image in one sentence: what objects, how many, "
                           "which colours, what they are doing.", ref,
                           "A good caption states the same objects, attributes, counts and "
                           "actions as the REFERENCE; a wrong object, colour, count or action "
                           "is a serious error.")


@task_family("pose")
class QuestionPosing(TaskFamily):
    """T2: propose a related question and answer it (open; judged)."""

    judge_needs_visual = True

    code, title = "T2", "question posing"

    def build(self, item: Sample, rng: random.Random) -> TaskInstance:
        ref = item.meta.get("pose") or f"{item.question} {item.answer}"
        return self.judged("Propose one question about this image that can be answered by "
                           "looking at it, followed by its answer.", ref,
                           "The posed question must be answerable from the image and its "
                           "answer correct; the REFERENCE is one good example.")


_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def read_yes_no(text: str) -> str | None:
    """``yes``/``no``: the last one after ``Answer:`` when given, else the last in the text."""
    tail = text
    m = list(re.finditer(r"answer\s*[:：]", text, re.IGNORECASE))
    if m:
        tail = text[m[-1].end():]
    found = _YES_NO.findall(tail)
    return found[-1].lower() if found else None


@task_family("verify")
class AnswerVerification(TaskFamily):
    """T3: given a candidate answer (right or perturbed), say whether it is right."""

    code, title = "T3", "answer verification"

    def applies(self, item: Sample) -> bool:
        return not item.meta.get("open_answer") or bool(item.answer)

    def build(self, item: Sample, rng: random.Random) -> TaskInstance:
        right = rng.random() < 0.5
        fmt = item.answer_format
        stub = TaskInstance(self.name, "", "exact", item.answer, fmt)
        cand = item.answer if right else wrong_answer(item, stub, rng)
        if fmt.kind == "choice" and cand in fmt.letters and fmt.options:
            cand = f"{cand} ({fmt.options[fmt.letters.index(cand)]})"
        prompt = (f"Question: {item.question}\nCandidate answer: {cand}\n\nIs the candidate "
                  "answer correct? End your reply with 'Answer: yes' or 'Answer: no'.")
        return self.exact(item, prompt, "yes" if right else "no", AnswerFormat(kind="exact"),
                          chance=0.5, candidate=cand)

    def score(self, output: str, inst: TaskInstance) -> Scored:
        ans = read_yes_no(output)
        return Scored(float(ans == inst.expected), ans)


@task_family("count")
class Counting(TaskFamily):
    """T4: count everything in the input (same content, a different question)."""

    code, title = "T4", "counting"

    def applies(self, item: Sample) -> bool:
        return item.meta.get("count") is not None

    def build(self, item: Sample, rng: random.Random) -> TaskInstance:
        q = item.meta.get("count_question") or "How many objects are in the image?"
        return self.exact(item, q, str(item.meta["count"]), AnswerFormat(kind="numeric"))


@task_family("describe-answer")
class DescribeThenAnswer(TaskFamily):
    """T5: describe the input first, then answer the T0 question (the same fact, another
    format)."""

    code, title = "T5", "describe, then answer"

    def applies(self, item: Sample) -> bool:
        return not item.meta.get("open_answer")

    def build(self, item: Sample, rng: random.Random) -> TaskInstance:
        k = _n_options(item.answer_format)
        prompt = ("First describe what you see in the image in one or two sentences. Then "
                  f"answer this question:\n{item.question}\nEnd your reply with "
                  "'Answer: <answer>'.")
        return self.exact(item, prompt, item.answer, item.answer_format,
                          chance=1 / k if k else (0.5 if item.answer in ("Yes", "No")
                                                  else 0.0))

    def sim_output(self, item: Sample, inst: TaskInstance, correct: bool,
                   rng: random.Random) -> str:
        desc = item.meta.get("caption") or "An image."
        ans = inst.expected if correct else wrong_answer(item, inst, rng)
        return f"{desc}\nAnswer: {ans}"


_LETTERS = re.compile(r"\b([A-J])\b")


@task_family("eliminate")
class OptionElimination(TaskFamily):
    """T6: name every wrong option of a multiple-choice question (score: all and only the
    wrong letters)."""

    code, title = "T6", "option elimination"

    def applies(self, item: Sample) -> bool:
        return item.answer_format.kind == "choice" and len(item.answer_format.letters) > 2

    def build(self, item: Sample, rng: random.Random) -> TaskInstance:
        letters = item.answer_format.letters
        wrong = ",".join(x for x in letters if x != item.answer)
        prompt = (f"{item.question}\n\nDo not answer. Instead list the letters of ALL options "
                  "that are wrong, comma-separated, and end with 'Answer: <letters>'.")
        return self.exact(item, prompt, wrong, item.answer_format,
                          chance=1 / len(letters))

    def score(self, output: str, inst: TaskInstance) -> Scored:
        m = list(re.finditer(r"answer\s*[:：]", output, re.IGNORECASE))
        if not m:
            return Scored(0.0, None)
        got = sorted(set(_LETTERS.findall(output[m[-1].end():])))
        if not got:
            return Scored(0.0, None)
        ans = ",".join(got)
        return Scored(float(ans == inst.expected), ans)

    def sim_output(self, item: Sample, inst: TaskInstance, correct: bool,
                   rng: random.Random) -> str:
        if correct:
            return f"Answer: {inst.expected}"
        letters = list(inst.answer_format.letters)
        keep = sorted(rng.sample(letters, rng.randint(1, len(letters) - 1)))
        if ",".join(keep) == inst.expected:
            keep = sorted(set(keep) | {item.answer})
        return f"Answer: {','.join(keep)}"


DEFAULT_TASKS = ("qa", "caption", "pose", "verify", "count", "describe-answer", "eliminate")


def family_code(name: str) -> str:
    fam = TASK_FAMILIES.get(name)
    return type(fam).code or name


__all__ = ["DEFAULT_TASKS", "TASK_FAMILIES", "Scored", "TaskFamily", "TaskInstance",
           "family_code", "read_yes_no", "task_family", "wrong_answer"]
