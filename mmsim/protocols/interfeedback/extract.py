"""Model-based answer extraction (``extractors:``): an agent reads the replies the
deterministic extractor left unparsed and says which answer, if any, each one gives.

It never changes a grade, a test set or an episode's course: its readings are stored as
``extraction`` messages, summarised per episode (``payload.mx``) and reported beside the
deterministic figures (``cells[].model_extractors``), so nobody's number silently depends on
a model reading answers. Calls go through the agent layer like any other, so a deterministic
extractor's replies come from the run's response cache on a rerun.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmsim.actors import ModelActor
from mmsim.actors.roles import AskContext
from mmsim.backends.base import Oracle
from mmsim.data import Sample
from mmsim.messages import ChatTurn, Extraction, Grade, Observation, Response, Text
from mmsim.tasks.answers import check_answer, normalize_text

EXTRACT_PROMPT = """Read the RESPONSE a model gave to the QUESTION and report the final \
answer the response gives. Do not solve the question yourself.

QUESTION:
{question}
{options}
RESPONSE:
{response}

If the response commits to one answer, reply with one line "Answer: {form}". If it gives no \
answer, or several, reply "Answer: none"."""

_FORMS = {"choice": "<letter>", "numeric": "<number>", "exact": "<answer>"}


def extraction_prompt(sample: Sample, reply: str) -> str:
    fmt = sample.answer_format
    options = ""
    if fmt.kind == "choice" and fmt.options:
        options = "Options:\n" + "\n".join(f"{letter}. {text}" for letter, text
                                           in zip(fmt.letters, fmt.options, strict=False)) + "\n"
    return EXTRACT_PROMPT.format(question=sample.question.strip(), options=options,
                                 response=reply.strip()[-4000:], form=_FORMS[fmt.kind])


async def read_unparsed(extractors: Mapping[str, ModelActor], sample: Sample,
                        pairs: Sequence[tuple[int, Response, Grade]], *, run_id: str,
                        episode_id: str, seed: int) -> list[Extraction]:
    """Each extractor's reading of each unparsed reply in ``pairs`` (round, reply, grade)."""
    out: list[Extraction] = []
    for rnd, resp, grade in pairs:
        if not grade.unparsed:
            continue
        turn = ChatTurn(role="user", parts=(Text(text=extraction_prompt(sample, resp.text)),))
        for name, actor in extractors.items():
            obs = Observation(run_id=run_id, episode_id=episode_id, turn=rnd, sender="env",
                              conversation=(turn,), answer_format=sample.answer_format)
            got = await actor.ask((obs, AskContext(
                oracle=Oracle(sample=sample, responses=(resp,), episode_key=f"extract/{name}"),
                seed=seed, purpose="extract")))
            answer = got.answer
            if answer is not None and normalize_text(answer) == "none":
                answer = None
            out.append(Extraction(
                run_id=run_id, episode_id=episode_id, turn=rnd, sender=name, extractor=name,
                of_turn=resp.turn, text=got.text, answer=answer,
                correct=check_answer(answer, sample.answer, sample.answer_format),
                usage=got.usage, error=got.error if got.parse == "error" else None))
    return out


def summary(names: Sequence[str], grades: Sequence[Grade], readings: Sequence[Extraction]
            ) -> dict[str, dict[str, Any]]:
    """Per extractor: the first round whose reply reads correct when its readings fill the
    unparsed replies (None: none), how many replies it filled, its calls and tokens."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = {x.turn: x for x in readings if x.extractor == name}
        correct_round = None
        for rnd, g in enumerate(grades):
            x = mine.get(rnd)
            if g.correct or (g.unparsed and x is not None and x.correct):
                correct_round = rnd
                break
        out[name] = {"correct_round": correct_round,
                     "filled": sum(x.answer is not None for x in mine.values()),
                     "calls": len(mine), "errors": sum(x.error is not None for x in mine.values()),
                     "prompt_tokens": sum(x.usage.prompt_tokens for x in mine.values()),
                     "completion_tokens": sum(x.usage.completion_tokens
                                              for x in mine.values())}
    return out


__all__ = ["EXTRACT_PROMPT", "extraction_prompt", "read_unparsed", "summary"]
