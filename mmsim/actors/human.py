"""The HumanProxy role: a feedback provider whose ``ctx.ask_provider`` reaches a person
(terminal, web page), recorded people (replay) or a persona-simulated person.

The policy decides *when* the person is asked (the ``human`` policy always asks; ``binary``
never does; ``detailed`` asks with its prompt); the channel decides *how*. The person's
reply comes back as the text plus ``meta`` (``source``, ``person``, ``verdict``, ``label``),
which the policy turns into a :class:`~mmsim.messages.Feedback` (leak detection applies).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from anyio.abc import TaskGroup

from mmsim.actors.roles import FeedbackProviderActor, FeedbackRequest
from mmsim.backends.base import Backend
from mmsim.human import HumanBackend, HumanItem
from mmsim.human.base import Mode
from mmsim.messages import ChatTurn, Usage
from mmsim.policies.base import messages_text

#: ``FeedbackRequest.options`` key that selects the channel's mode (``feedback`` or
#: ``annotate``).
MODE_OPTION = "human_mode"


class HumanProxyActor(FeedbackProviderActor):
    """A feedback provider backed by a human channel.

    Args:
        name: the provider's name.
        backend: the agent's :class:`~mmsim.human.HumanBackend` (holds the channel).
        max_rounds: the episode's round budget (shown to the person).
    """

    def __init__(self, name: str, backend: HumanBackend, *, max_rounds: int = 0, **kw: Any):
        super().__init__(name, backend, **kw)
        self.channel = backend.channel
        self.max_rounds = max_rounds

    def _start(self, tg: TaskGroup) -> None:
        super()._start(tg)
        tg.start_soon(self._run_channel, name=f"{self.name}-channel")

    async def _run_channel(self) -> None:
        from anyio import TASK_STATUS_IGNORED

        await self.channel.run(task_status=TASK_STATUS_IGNORED)

    async def aclose(self) -> None:
        await super().aclose()
        await self.channel.stop()

    def provider_call(self, msg: FeedbackRequest) -> Callable[
            [tuple[ChatTurn, ...]], Coroutine[Any, Any, tuple[str, Usage, dict[str, Any]]]]:
        mode: Mode = "annotate" if msg.options.get(MODE_OPTION) == "annotate" else "feedback"
        round_ = 0 if mode == "annotate" else msg.round

        async def ask(messages: tuple[ChatTurn, ...]) -> tuple[str, Usage, dict[str, Any]]:
            prompt = messages_text(messages)  # the person sees the item's images on the page
            item = HumanItem(
                key=f"{msg.grade.episode_id}#{mode}{round_}", episode_id=msg.grade.episode_id,
                sample=msg.sample, conversation=msg.conversation, responses=msg.responses,
                feedback=msg.feedback, round=round_, mode=mode, prompt=prompt,
                policy=msg.policy_name, provider=self.name, max_rounds=self.max_rounds,
                seed=msg.seed, episode_key=msg.episode_key)
            reply = await self.channel.ask(item)
            return reply.text, reply.usage, reply.as_meta()

        return ask


def make_provider(name: str, backend: Backend, *, max_rounds: int = 0,
                  **kw: Any) -> FeedbackProviderActor:
    """A :class:`HumanProxyActor` for a human agent's backend, else a model provider."""
    if isinstance(backend, HumanBackend):
        return HumanProxyActor(name, backend, max_rounds=max_rounds, **kw)
    return FeedbackProviderActor(name, backend, **kw)


__all__ = ["MODE_OPTION", "HumanProxyActor", "make_provider"]
