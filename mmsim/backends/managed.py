"""The agent layer over any backend: retries and the response cache, written once.

The kernel wraps every model agent's backend in a :class:`ManagedBackend` (concurrency is
the actor's ``concurrency``), so a new backend — mmsim's own or a user's plugin — gets:

* **retries** with exponential backoff and jitter (:class:`~mmsim.backends.retry.RetryPolicy`)
  for every failure its :meth:`Backend.should_retry` accepts (by default: a
  :class:`~mmsim.backends.retry.Retryable`, a timeout, a connection error); a
  :class:`~mmsim.backends.retry.Fatal` or a spent budget fails the episode as an
  infrastructure error (recorded, played again on resume), never as a wrong answer;
* the run's **response cache** for deterministic requests (:meth:`Backend.deterministic`;
  every request when the agent sets ``cache: true``, none with ``cache: false``), keyed
  on :meth:`Backend.cache_scope` and the request (messages, purpose, sampling, variant).

A backend that does either itself on its hot path (``openai`` keys its cache on the exact
request bytes and recovers from a failed first try without allocating) says so with
``manages_retries`` / ``manages_cache`` and is left to it. Simulated agents are never
cached: their replies depend on the oracle, which is not part of the request.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mmsim.backends.base import Backend, Completion, GenerateRequest, ResponseCache
from mmsim.backends.retry import Fatal, Retryable
from mmsim.errors import InfrastructureError
from mmsim.messages import Usage


def request_key(scope: str, request: GenerateRequest) -> str:
    """The cache key of ``request`` for a backend whose ``cache_scope()`` is ``scope``."""
    blob = json.dumps({
        "scope": scope, "purpose": request.purpose, "seed": request.seed,
        "temperature": request.temperature, "max_tokens": request.max_tokens,
        "variant": request.variant,
        "messages": [t.model_dump(mode="json") for t in request.messages]},
        sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ManagedBackend(Backend):
    """``inner`` with the agent layer's retries and response cache (module docstring)."""

    def __init__(self, inner: Backend):
        super().__init__(inner.name, inner.params)
        self.inner = inner
        self.simulated = inner.simulated
        self._cache: ResponseCache | None = None
        self._cache_mode: bool | None = None

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def attach_cache(self, cache: ResponseCache | None, enabled: bool | None = None) -> None:
        if self.inner.manages_cache:
            self.inner.attach_cache(cache, enabled)
        elif not self.inner.simulated:
            self._cache, self._cache_mode = cache, enabled

    def _cacheable(self, request: GenerateRequest) -> bool:
        if self._cache is None or self._cache_mode is False:
            return False
        return self._cache_mode is True or self.inner.deterministic(request)

    async def generate(self, request: GenerateRequest) -> Completion:
        key = None
        if self._cacheable(request):
            assert self._cache is not None
            key = request_key(self.inner.cache_scope(), request)
            hit = self._cache.get(key)
            if hit is not None:
                return Completion(text=hit["text"], usage=Usage(**hit["usage"]),
                                  meta={**hit.get("meta", {}), "cached": True, "retries": 0})
        if self.inner.manages_retries:
            c = await self.inner.generate(request)
        else:
            c = await self._with_retries(request)
        if key is not None:
            assert self._cache is not None
            self._cache.put(key, {"text": c.text, "usage": c.usage.model_dump(),
                                  "meta": _jsonable(c.meta)})
        return c

    async def _with_retries(self, request: GenerateRequest) -> Completion:
        inner = self.inner

        async def attempt() -> Completion:
            try:
                return await inner.generate(request)
            except (Retryable, Fatal, InfrastructureError):
                raise
            except Exception as exc:
                if inner.should_retry(exc):
                    raise Retryable(f"{type(exc).__name__}: {exc}") from exc
                raise

        try:
            c = await attempt()
            retries = 0
        except (Retryable, Fatal) as exc:
            c, retries = await inner.retry_policy.recover(attempt, f"{inner.name}", exc)
        if retries:
            u = c.usage
            c = Completion(text=c.text, usage=Usage(prompt_tokens=u.prompt_tokens,
                                                    completion_tokens=u.completion_tokens,
                                                    retries=u.retries + retries),
                           latency_s=c.latency_s, simulated=c.simulated,
                           meta={**c.meta, "retries": retries})
        return c


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in meta.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def managed(backend: Backend) -> Backend:
    """``backend`` under the agent layer; as it is when the layer would add nothing (it
    manages its retries and cache itself: ``openai``, simulations, people)."""
    if isinstance(backend, ManagedBackend) or (backend.manages_retries
                                               and backend.manages_cache):
        return backend
    return ManagedBackend(backend)


__all__ = ["ManagedBackend", "managed", "request_key"]
