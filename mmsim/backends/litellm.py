"""``litellm``: hosted providers (OpenAI, Anthropic, Gemini, Bedrock, ...) through
``litellm.acompletion``, with the same request encoding, retries, response cache and
secrets rules as the ``openai`` backend.

litellm is an optional extra (``pip install 'mmsim[litellm]'``), imported when an agent
uses this backend. Keys come from the environment only: litellm reads its usual variables
(``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ...), or ``api_key_env`` names one. litellm's
own retries are turned off (``num_retries=0``); mmsim's retry policy applies. For local
vLLM/SGLang servers use ``openai``: litellm's call path is much slower than raw HTTP.

litellm is imported with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` unless the environment sets
it (mmsim does its own cost accounting; otherwise litellm fetches its price map from GitHub
at import) and with its "Give Feedback" banner on errors turned off: it runs offline.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from typing import Any

import anyio
from pydantic import Field, field_validator

from mmsim.backends.base import Backend, backend
from mmsim.backends.openai import OpenAIBackend, OpenAIParams
from mmsim.backends.retry import Fatal, Retryable, parse_retry_after, retryable_status
from mmsim.errors import UserError
from mmsim.messages import Usage


class LiteLLMParams(OpenAIParams):
    """``params:`` of a ``backend: litellm`` agent: the ``openai`` params, with ``model`` in
    litellm's ``provider/model`` form and ``base_url`` optional (litellm's ``api_base``)."""

    base_url: str = ""
    max_connections: int = Field(16, ge=1)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


def _import_litellm() -> Any:
    if importlib.util.find_spec("litellm") is None:
        raise UserError("the litellm backend needs litellm: install mmsim[litellm] "
                        "(pip install 'mmsim[litellm]')")
    # litellm fetches its model price map from GitHub at import unless told not to; mmsim
    # keeps its own prices, so the bundled copy is enough (and an offline run stays offline)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm: Any = importlib.import_module("litellm")
    litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner per error
    return litellm


def _headers(exc: Exception) -> Any:
    """The server's reply headers of a litellm exception: litellm keeps them in
    ``litellm_response_headers`` (its ``response`` is often a stand-in without them)."""
    for h in (getattr(exc, "litellm_response_headers", None), getattr(exc, "headers", None),
              getattr(getattr(exc, "response", None), "headers", None)):
        if h is not None and h.get("retry-after") is not None:
            return h
    return None


def _client_side(exc: BaseException) -> bool:
    """Whether the error came from the openai client itself, before any request: a bare
    ``openai.OpenAIError`` (e.g. missing credentials) in the exception's chain."""
    e = exc.__cause__ or exc.__context__
    for _ in range(8):
        if e is None:
            return False
        cls = type(e)
        if cls.__name__ == "OpenAIError" and cls.__module__.split(".")[0] == "openai":
            return True
        e = e.__cause__ or e.__context__
    return False


def _classify(exc: Exception) -> Exception:
    """A litellm/openai exception as :class:`Retryable` or :class:`Fatal`."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    reason = f"{name}: {str(exc)[:200]}"
    headers = _headers(exc)
    retry_after = parse_retry_after(headers.get("retry-after")) if headers is not None else None
    # a client-side error before any request (no credentials, a bad option): litellm wraps it
    # as a 500, but retrying cannot fix it
    if _client_side(exc):
        hint = (" (set the provider's key variable, or name one with api_key_env; any "
                "value for a server without keys)" if "credential" in str(exc).lower() else "")
        return Fatal(reason + hint)
    if isinstance(status, int):
        if retryable_status(status):
            return Retryable(f"HTTP {status} ({reason})", retry_after)
        return Fatal(f"HTTP {status} ({reason})")
    if any(k in name for k in ("Timeout", "Connection", "ServiceUnavailable", "RateLimit",
                               "InternalServer")):
        return Retryable(reason, retry_after)
    return Fatal(reason)


class LiteLLMBackend(OpenAIBackend):
    """A hosted model reached through litellm."""

    params_model = LiteLLMParams

    def __init__(self, name: str, params: dict[str, Any]):
        super().__init__(name, params)
        self.litellm = _import_litellm()
        self.url = f"litellm:{self.p.model}@{self.p.base_url}"
        self._limit: anyio.Semaphore | None = None

    def describe(self) -> dict[str, Any]:
        return {"backend": "litellm", "simulated": False,
                "params": self.p.model_dump(mode="json")}

    def where(self) -> str:
        return f"{self.p.model} via litellm" + (f" at {self.p.base_url}" if self.p.base_url
                                                else "")

    async def attempt(self, body: bytes) -> tuple[list[str], Usage, dict[str, Any]]:
        req = json.loads(body)
        kwargs: dict[str, Any] = {k: v for k, v in req.items() if k not in ("model",
                                                                         "messages")}
        if self.p.base_url:
            kwargs["api_base"] = self.p.base_url
        if self._key:
            kwargs["api_key"] = self._key
        if self._limit is None:
            self._limit = anyio.Semaphore(self.p.max_connections)
        async with self._limit:
            try:
                with anyio.fail_after(self.p.timeout_s):
                    resp = await self.litellm.acompletion(
                        model=self.p.model, messages=req["messages"], timeout=self.p.timeout_s,
                        num_retries=0, **kwargs)
            except TimeoutError:
                raise Retryable(f"timeout after {self.p.timeout_s:g} s") from None
            except Exception as exc:
                raise _classify(exc) from None
        try:
            choices = resp.choices
            texts = [c.message.content or "" for c in choices[: self.p.n]]
            finish = choices[0].finish_reason
        except (AttributeError, IndexError, TypeError):
            raise Retryable("unexpected reply shape (no choices[0].message.content)") from None
        if not texts or not texts[0].strip():
            raise Retryable("empty content")
        u = getattr(resp, "usage", None)
        usage = Usage(prompt_tokens=int(getattr(u, "prompt_tokens", 0) or 0),
                      completion_tokens=int(getattr(u, "completion_tokens", 0) or 0))
        return texts, usage, {"finish_reason": finish, "served_model": getattr(resp, "model",
                                                                               None)}

    async def aclose(self) -> None:
        return None


@backend("litellm", cls=LiteLLMBackend)
def make_litellm(name: str, params: dict[str, Any]) -> Backend:
    """Hosted providers through litellm (optional extra: pip install 'mmsim[litellm]')."""
    return LiteLLMBackend(name, params)
