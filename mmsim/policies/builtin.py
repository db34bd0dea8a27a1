"""The built-in feedback policies."""

from __future__ import annotations

from mmsim.messages import Feedback
from mmsim.policies.base import FeedbackContext, policy

DETAILED_PROMPT = """You are helping a student who answered a question about an image wrongly.
Question:
{question}

Correct answer: {answer}
Student's answer: {given}

Explain briefly what the student got wrong and what to look at again. Do NOT state the
correct answer, its letter, or its value."""


@policy("binary", options=("text",))
async def binary(ctx: FeedbackContext) -> Feedback:
    """Only says the answer is incorrect (0/1 feedback)."""
    return ctx.feedback(ctx.options.get("text", "Your answer is incorrect."), kind="binary")


HISTORY_BLOCK = "\n\nThe conversation so far:\n{transcript}"


def detailed_prompt(ctx: FeedbackContext) -> str:
    """The detailed-feedback prompt's text: ``options.prompt``, else the scenario's
    ``prompts.feedback``, else :data:`DETAILED_PROMPT`, filled with the question, the
    correct answer and the student's; with ``options.history: true`` the conversation so
    far is appended."""
    given = ctx.response.answer if ctx.response.answer is not None else ctx.response.text[-500:]
    template = str(ctx.options.get("prompt") or ctx.prompts.get("feedback") or DETAILED_PROMPT)
    text = template.format(question=ctx.sample.question, answer=ctx.sample.answer_text,
                           given=given)
    if ctx.options.get("history", False):
        text += HISTORY_BLOCK.format(transcript=ctx.transcript())
    return text


@policy("detailed", options=("prompt", "show_image", "history"))
async def detailed(ctx: FeedbackContext) -> Feedback:
    """The provider, shown the image, explains what is wrong without giving the answer.

    The item's image(s) or video go with the prompt in one message (``options.show_image:
    false`` sends the text alone; ``options.history: true`` adds the conversation so far);
    leaks are flagged."""
    prompt = detailed_prompt(ctx)
    show = ctx.options.get("show_image", True)
    text = await ctx.ask_provider(ctx.with_visuals(prompt) if show else prompt)
    return ctx.feedback(text.strip(), kind="detailed")


@policy("reveal", options=())
async def reveal(ctx: FeedbackContext) -> Feedback:
    """Says the answer is incorrect and gives the ground truth."""
    return ctx.feedback(f"Your answer is incorrect. The correct answer is "
                        f"{ctx.sample.answer_text}.", kind="reveal", reveals_answer=True)


@policy("retry", options=())
async def retry(ctx: FeedbackContext) -> Feedback:
    """No-information baseline: asks for the answer again without saying it was wrong."""
    return ctx.feedback("Please answer the question again.", kind="none")
