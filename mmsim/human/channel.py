"""The channel interface, and the backend that carries a channel through the runner."""

from __future__ import annotations

from typing import Any

from anyio.abc import TaskStatus

from mmsim.backends.base import Backend, Completion, GenerateRequest
from mmsim.errors import UserError
from mmsim.human.base import HumanItem, HumanOptions, HumanReply


class HumanChannel:
    """How a person is reached. Subclasses implement :meth:`ask`; channels with a
    background service (the web server) also implement :meth:`run`.

    Args:
        name: the agent's name (the provider name in reports).
        options: the agent's ``human:`` options.
    """

    #: the ``meta.source`` of feedback from this channel
    source: str = "human"
    #: True when no real person answers (a persona on the sim backend)
    simulated: bool = False
    #: True when the channel reads the process's terminal (the CLI hides its progress bar)
    uses_terminal: bool = False

    def __init__(self, name: str, options: HumanOptions):
        self.name = name
        self.options = options

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        """Background service, started when the actor starts; returns when closed."""
        task_status.started()

    async def ask(self, item: HumanItem) -> HumanReply:
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop the background service (:meth:`run` returns); pending asks fail."""

    async def aclose(self) -> None:
        """Release resources (called once, when the run's actors shut down)."""

    def describe(self) -> dict[str, Any]:
        return {"backend": "human", "channel": type(self).__name__, "source": self.source,
                "simulated": self.simulated}


class HumanBackend(Backend):
    """The backend of a ``kind: human`` agent: holds its channel. A person does not answer
    screening questions (human agents are not screened), so :meth:`generate` refuses."""

    # a person is neither retried nor cached
    manages_retries = manages_cache = True

    def __init__(self, name: str, channel: HumanChannel):
        super().__init__(name, {})
        self.channel = channel
        self.simulated = channel.simulated

    async def generate(self, request: GenerateRequest) -> Completion:
        raise UserError(f"agent {self.name!r} is a human proxy: it gives feedback and cannot "
                        f"be a receiver or answer {request.purpose!r} requests")

    def describe(self) -> dict[str, Any]:
        return self.channel.describe()

    async def aclose(self) -> None:
        await self.channel.aclose()
