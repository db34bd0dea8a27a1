"""The ``human`` policy: a person (or a replay of one, or a persona) reviews the answer."""

from __future__ import annotations

from mmsim.errors import InfrastructureError
from mmsim.messages import Feedback
from mmsim.policies.base import POLICIES, FeedbackContext, policy

HUMAN_PROMPT = """A student model answered a question about an image wrongly.
Question:
{question}

Correct answer: {answer}
Student's answer: {given}

Give the student feedback as a person would: say what is wrong and what to look at again.
Do NOT state the correct answer, its letter, or its value."""

#: The feedback kind each verdict becomes (what simulated receivers react to).
VERDICT_KIND = {"feedback": "detailed", "incorrect": "binary", "correct": "disputed"}


@policy("human", options=("prompt",))
async def human(ctx: FeedbackContext) -> Feedback:
    """A person reviews the answer: typed feedback, just 'incorrect', or 'correct'."""
    given = ctx.response.answer if ctx.response.answer is not None else ctx.response.text[-500:]
    template = str(ctx.options.get("prompt", HUMAN_PROMPT))
    try:
        text = await ctx.ask_provider(ctx.with_visuals(template.format(
            question=ctx.sample.question, answer=ctx.sample.answer_text, given=given)))
    except InfrastructureError as exc:
        fallback = getattr(exc, "fallback", None)  # a replay miss with on_miss: <policy>
        if not fallback:
            raise
        fb = await POLICIES.get(fallback)(ctx)
        return fb.model_copy(update={"meta": {**fb.meta, "source": "fallback",
                                              "fallback": fallback, "replay_miss": str(exc)}})
    verdict = str((ctx.meta or {}).get("verdict", "feedback"))
    return ctx.feedback(text.strip(), kind=VERDICT_KIND.get(verdict, "detailed"))
