"""The backend interface: how an agent turns a conversation into text."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mmsim.backends.retry import RetryPolicy
from mmsim.data.sample import Sample
from mmsim.messages import ChatTurn, Feedback, Response, Usage
from mmsim.registry import Registry

Purpose = Literal["answer", "feedback", "judge", "extract"]


@dataclass(frozen=True, slots=True)
class Oracle:
    """What a *simulated* agent may look at: the sample (ground truth included) and the
    episode so far. Real backends ignore it; it is how the sim backend stays honest about
    being a simulation of a model rather than a model."""

    sample: Sample
    responses: tuple[Response, ...] = ()
    feedback: tuple[Feedback, ...] = ()
    episode_key: str = ""


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    messages: tuple[ChatTurn, ...]
    purpose: Purpose = "answer"
    seed: int = 0
    max_tokens: int | None = None
    temperature: float | None = None
    oracle: Oracle | None = None
    #: requests with the same body but another ``variant`` (a rollout's sample index) get
    #: their own cached replies
    variant: str = ""


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage = Usage()
    latency_s: float = 0.0
    simulated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


class ResponseCache(Protocol):
    """A run's response cache (the store implements it): JSON values by request hash."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...


class Backend:
    """Base class of backends. ``simulated`` is True for agents that are not models.

    The agent layer (:mod:`mmsim.backends.managed`) gives every backend retries and the
    response cache through the hooks below; a backend overrides them for its quirks
    (as Inspect AI's ``ModelAPI`` does with ``should_retry`` and ``connection_key``).
    """

    simulated: bool = False
    #: the backend retries its own calls (the agent layer then does not)
    manages_retries: bool = False
    #: the backend keeps the run's response cache itself (the agent layer then does not)
    manages_cache: bool = False
    #: the retry budget and backoff of the agent layer
    retry_policy: RetryPolicy = RetryPolicy()

    def should_retry(self, exc: Exception) -> bool:
        """Whether a failed call is worth retrying (besides ``Retryable``, which always
        is, and ``Fatal``, which never is). Default: timeouts and connection errors."""
        return isinstance(exc, TimeoutError | ConnectionError)

    def deterministic(self, request: GenerateRequest) -> bool:
        """Whether ``request`` always gets the same reply (cached unless the agent says
        ``cache: false``). Default: sampled at temperature 0."""
        return request.temperature == 0

    def cache_scope(self) -> str:
        """What besides the request identifies a cached reply (default: the backend's
        class and params)."""
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}:" + json.dumps(
            self.params, sort_keys=True, default=str)

    def __init__(self, name: str, params: dict[str, Any]):
        self.name = name
        self.params = params

    @classmethod
    def check_params(cls, name: str, params: dict[str, Any]) -> object:
        """Check ``params`` as the constructor does, building nothing (no model loaded, no
        key read, no connection), and return what the constructor keeps of them; raise a
        UserError naming the field. ``mmsim validate`` runs it. The default checks
        nothing."""
        return None

    async def generate(self, request: GenerateRequest) -> Completion:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the run manifest records about this backend (never secrets)."""
        return {"backend": type(self).__name__, "simulated": self.simulated}

    async def aclose(self) -> None:
        """Release connections, servers, GPU memory."""

    def attach_cache(self, cache: ResponseCache | None, enabled: bool | None = None) -> None:
        """Give the backend the run's response cache. ``enabled`` is the agent's ``cache:``
        (None: cache deterministic requests only). Backends without a cache ignore it."""


BackendFactory = Callable[[str, dict[str, Any]], Backend]
BACKENDS: Registry[BackendFactory] = Registry("backend")


def backend(name: str, *, cls: type[Backend] | None = None
            ) -> Callable[[BackendFactory], BackendFactory]:
    """Register a backend factory ``(agent_name, params) -> Backend`` under ``name``;
    ``cls``: the Backend class it builds, whose ``check_params`` ``mmsim validate`` runs."""
    register = BACKENDS.decorator(name)

    def deco(factory: BackendFactory) -> BackendFactory:
        if cls is not None:
            setattr(factory, "backend_class", cls)  # noqa: B010 - an attribute of a function
        return register(factory)

    return deco


def check_backend_params(factory: BackendFactory, name: str, params: dict[str, Any]) -> None:
    """Run the ``check_params`` of the class ``factory`` builds (a Backend class registered
    directly, or a factory registered with ``cls=``); nothing for other factories."""
    cls = factory if isinstance(factory, type) else getattr(factory, "backend_class", None)
    if isinstance(cls, type) and issubclass(cls, Backend):
        cls.check_params(name, params)
