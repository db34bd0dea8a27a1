"""``openai``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, SGLang,
``transformers serve``, hosted OpenAI).

* One shared HTTP client per endpoint (``base_url`` x ``max_connections``) with at most
  ``max_connections`` requests in flight: aiohttp (a core dependency) by default; httpx
  where ``http_client: httpx`` asks for it (``pip install 'mmsim[httpx]'``).
* Request bodies are built deterministically: the same conversation prefix is the same
  bytes every turn, and an image is base64-encoded once (cached by its sha256), so server
  prefix caches hit.
* Retries with exponential backoff and jitter, honouring ``Retry-After``, on 429/5xx,
  timeouts, connection errors, malformed/truncated JSON, empty content and a wrong content
  type; after the budget an :class:`~mmsim.errors.InfrastructureError` fails the episode
  (never scored, re-played on resume). ``Completion.meta["retries"]`` counts retries.
* Deterministic requests (temperature 0 or a fixed seed) are answered from the run's
  response cache when the agent's ``cache`` allows it.
* The API key is read from the environment variable named by ``api_key_env``; it never
  appears in the scenario, the logs, the store or :meth:`describe`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import json
import os
from collections import OrderedDict
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any, Literal, Protocol

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs

from mmsim.backends.base import Backend, Completion, GenerateRequest, ResponseCache, backend
from mmsim.backends.retry import Fatal, Retryable, RetryPolicy, parse_retry_after, retryable_status
from mmsim.errors import UserError
from mmsim.messages import ChatTurn, Image, Text, Usage, Video


class OpenAIParams(BaseModel):
    """``params:`` of a ``backend: openai`` agent (see docs/backends.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    timeout_s: float = Field(120.0, gt=0)
    max_connections: int = Field(64, ge=1)
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    retry_after_max_s: float = Field(120.0, ge=0)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    n: int = Field(1, ge=1)
    system_prompt: str | None = None
    image_transport: Literal["data_url", "file_url"] = "data_url"
    video: Literal["frames", "video_url"] = "frames"
    video_frames: int = Field(8, ge=1)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    http_client: Literal["auto", "httpx", "aiohttp"] = "auto"

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or not all(c.isalnum() or c == "_" for c in v)):
            raise ValueError("must be the NAME of an environment variable (e.g. "
                             "OPENAI_API_KEY), never the key itself")
        return v


def validate_params(model: type[BaseModel], name: str, params: dict[str, Any]) -> Any:
    """``model(**params)``, or a :class:`UserError` naming the agent's field."""
    if "api_key" in params:
        raise UserError("API keys are never written in scenario files; put the key in an "
                        "environment variable and name it with api_key_env",
                        field=f"{name}.params.api_key")
    try:
        return model(**params)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise UserError(f"{msg}", field=f"{name}.params.{loc}") from None


def read_api_key(name: str, env: str | None) -> str | None:
    if env is None:
        return None
    key = os.environ.get(env)
    if not key:
        raise UserError(f"environment variable {env} is not set (it holds this agent's API "
                        "key)", field=f"{name}.params.api_key_env")
    return key


# -- request encoding -------------------------------------------------------------------
_dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class MessageEncoder:
    """Turns conversations into OpenAI ``messages`` JSON, byte-identical for the same
    turns: each turn's JSON and each image's data URL are computed once and cached."""

    def __init__(self, *, image_transport: str = "data_url", video: str = "frames",
                 video_frames: int = 8, max_images: int = 512, max_turns: int = 8192):
        self.image_transport = image_transport
        self.video = video
        self.video_frames = video_frames
        self.max_images = max_images
        self.max_turns = max_turns
        self._media: OrderedDict[tuple[str, str], str] = OrderedDict()  # (sha, mode) -> json
        self._turns: OrderedDict[int, tuple[ChatTurn, str]] = OrderedDict()

    def turn(self, turn: ChatTurn) -> str:
        hit = self._turns.get(id(turn))
        if hit is not None and hit[0] is turn:
            return hit[1]
        parts = turn.parts
        if len(parts) == 1 and isinstance(parts[0], Text):
            content = _dumps(parts[0].text)
        else:
            content = "[" + ",".join(self._part(p) for p in parts) + "]"
        text = f'{{"role":{_dumps(turn.role)},"content":{content}}}'
        self._turns[id(turn)] = (turn, text)  # the turn is kept so its id stays valid
        if len(self._turns) > self.max_turns:
            self._turns.popitem(last=False)
        return text

    def _part(self, p: Text | Image | Video) -> str:
        if isinstance(p, Text):
            return _dumps({"type": "text", "text": p.text})
        mode = self.image_transport if isinstance(p, Image) else self.video
        key = (p.sha256, mode)
        hit = self._media.get(key)
        if hit is not None:
            self._media.move_to_end(key)
            return hit
        if isinstance(p, Image):
            text = _dumps({"type": "image_url", "image_url": {"url": self._url(p)}})
        elif self.video == "video_url":
            text = _dumps({"type": "video_url", "video_url": {"url": self._url(p)}})
        else:
            text = ",".join(_dumps({"type": "image_url", "image_url": {"url": u}})
                            for u in _video_frames(p, self.video_frames))
        self._media[key] = text
        if len(self._media) > self.max_images:
            self._media.popitem(last=False)
        return text

    def _url(self, p: Image | Video) -> str:
        uri = p.uri
        if uri.startswith(("http://", "https://", "data:")):
            return uri
        path = Path(uri.removeprefix("file://"))
        if self.image_transport == "file_url" or (isinstance(p, Video)
                                                  and self.image_transport == "file_url"):
            return path.resolve().as_uri()
        return f"data:{p.mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _video_frames(v: Video, n: int) -> list[str]:
    """``n`` evenly spaced frames of a video file as JPEG data URLs (needs PyAV)."""
    if importlib.util.find_spec("av") is None:
        raise UserError("sending video as frames needs PyAV: pip install av (or set "
                        "params.video: video_url for servers that take videos)")
    import io

    av: Any = importlib.import_module("av")
    with av.open(v.uri.removeprefix("file://")) as container:
        frames = [f.to_image() for f in container.decode(video=0)]
    if not frames:
        raise UserError("the video has no frames", where=v.uri)
    idx = sorted({round(i * (len(frames) - 1) / max(1, n - 1)) for i in range(n)})
    out = []
    for i in idx:
        buf = io.BytesIO()
        frames[i].convert("RGB").save(buf, format="JPEG", quality=90)
        out.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode())
    return out


# -- HTTP clients, one per endpoint ------------------------------------------------------
class HttpClient(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]
                   ) -> tuple[int, str, str | None, bytes]:
        """(status, content type, Retry-After, body) or raises :class:`Retryable`."""
        ...

    async def aclose(self) -> None: ...


class _Httpx:
    def __init__(self, limit: int, timeout_s: float):
        import httpx  # only where a scenario asks for it (http_client: httpx)

        self.httpx = httpx
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            timeout=httpx.Timeout(timeout_s, pool=None))

    async def post(self, url: str, body: bytes, headers: dict[str, str]
                   ) -> tuple[int, str, str | None, bytes]:
        httpx = self.httpx
        try:
            r = await self.client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise Retryable(f"timeout ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise Retryable(f"connection error ({type(exc).__name__}: {exc})") from None
        return (r.status_code, r.headers.get("content-type", ""), r.headers.get("retry-after"),
                r.content)

    async def aclose(self) -> None:
        await self.client.aclose()


class _Aiohttp:
    def __init__(self, limit: int, timeout_s: float):
        import aiohttp

        self.aiohttp = aiohttp
        self.timeout_s = timeout_s
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
            timeout=aiohttp.ClientTimeout(total=timeout_s), auto_decompress=True)

    async def post(self, url: str, body: bytes, headers: dict[str, str]
                   ) -> tuple[int, str, str | None, bytes]:
        try:
            async with self.session.post(url, data=body, headers=headers) as r:
                data = await r.read()
                status, h = r.status, r.headers
                # Retry-After is only read on a failure (parse_reply ignores it on a 200)
                return (status, h.get("Content-Type", ""),
                        None if status == 200 else h.get("Retry-After"), data)
        except TimeoutError:
            raise Retryable(f"timeout after {self.timeout_s:g} s") from None
        except self.aiohttp.ClientError as exc:
            raise Retryable(f"connection error ({type(exc).__name__}: {exc})") from None

    async def aclose(self) -> None:
        await self.session.close()


def aiohttp_available() -> bool:
    return importlib.util.find_spec("aiohttp") is not None


def httpx_available() -> bool:
    return importlib.util.find_spec("httpx") is not None


class Endpoint:
    """A shared client and an in-flight bound for one (loop, base_url, limit, client)."""

    def __init__(self, kind: str, limit: int, timeout_s: float):
        self.kind = kind
        self.limit = limit
        self.client: HttpClient = (_Aiohttp(limit, timeout_s) if kind == "aiohttp"
                                   else _Httpx(limit, timeout_s))
        # aiohttp's connector bounds the requests in flight itself; httpx's pool degrades
        # with many waiters, so requests queue on a semaphore in front of it instead.
        # (asyncio's semaphore: anyio's yields to the loop on every acquire.)
        self.slots = asyncio.Semaphore(limit) if kind == "httpx" else None
        self.total_deadline = kind == "httpx"  # aiohttp's ClientTimeout(total) is one
        self.refs = 0


_ENDPOINTS: dict[tuple[int, str, int, str], tuple[asyncio.AbstractEventLoop, Endpoint]] = {}


def _acquire(base_url: str, limit: int, kind: str, timeout_s: float
             ) -> tuple[tuple[int, str, int, str], Endpoint]:
    loop = asyncio.get_running_loop()
    for k, (lp, _) in list(_ENDPOINTS.items()):
        if lp.is_closed():
            del _ENDPOINTS[k]
    key = (id(loop), base_url, limit, kind)
    hit = _ENDPOINTS.get(key)
    if hit is None or hit[0] is not loop:
        hit = _ENDPOINTS[key] = (loop, Endpoint(kind, limit, timeout_s))
    hit[1].refs += 1
    return key, hit[1]


async def _release(key: tuple[int, str, int, str], ep: Endpoint) -> None:
    ep.refs -= 1
    if ep.refs <= 0:
        if _ENDPOINTS.get(key, (None, None))[1] is ep:
            del _ENDPOINTS[key]
        await ep.client.aclose()


# -- the backend -------------------------------------------------------------------------
def _field(schema: cs.CoreSchema, required: bool = True) -> cs.TypedDictField:
    return cs.typed_dict_field(schema, required=required)


def _count() -> cs.TypedDictField:
    return _field(cs.nullable_schema(cs.int_schema(strict=True)), required=False)


#: The common shape of a chat-completions reply, parsed and checked in one pass by
#: pydantic-core (only these fields become Python objects; other keys are skipped).
#: Strict: a reply it does not take as is goes to the general parser, ``_parse_json``.
_REPLY = SchemaValidator(cs.typed_dict_schema({
    "choices": _field(cs.list_schema(cs.typed_dict_schema({
        "message": _field(cs.typed_dict_schema({
            "content": _field(cs.nullable_schema(cs.str_schema(strict=True)))})),
        "finish_reason": _field(cs.any_schema(), required=False)}))),
    "usage": _field(cs.nullable_schema(cs.typed_dict_schema({
        "prompt_tokens": _count(), "completion_tokens": _count()})), required=False),
    "model": _field(cs.any_schema(), required=False)}))
_NO_USAGE = Usage()


def parse_reply(status: int, ctype: str, retry_after: str | None, body: bytes, n: int
                ) -> tuple[list[str], Usage, dict[str, Any]]:
    """Texts, usage and meta of a chat-completions reply; raises Retryable/Fatal.

    A reply of the common shape (string or null contents, integer or null token counts,
    at least one choice) is parsed and checked in one pass (``_REPLY``); anything else
    goes through ``json.loads`` and the general checks of ``_parse_json``. Both give the
    same result for any reply the fast pass takes."""
    if status != 200:
        snippet = body[:200].decode("utf-8", "replace").strip()
        reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        if retryable_status(status):
            raise Retryable(reason, parse_retry_after(retry_after))
        raise Fatal(reason)
    if "json" not in ctype.lower():
        raise Retryable(f"wrong content type {ctype or '(none)'!r}")
    try:
        obj = _REPLY.validate_json(body)
    except ValidationError:
        return _parse_json(body, n)
    choices = obj["choices"]
    if not choices:
        return _parse_json(body, n)
    texts = [ch["message"]["content"] or "" for ch in choices[:n]]
    if not texts[0].strip():
        raise Retryable("empty content")
    u = obj.get("usage")
    usage = _NO_USAGE
    if u:
        prompt, completion = u.get("prompt_tokens") or 0, u.get("completion_tokens") or 0
        if prompt or completion:
            usage = Usage(prompt_tokens=prompt, completion_tokens=completion)
    return texts, usage, {"finish_reason": choices[0].get("finish_reason"),
                          "served_model": obj.get("model")}


def _parse_json(body: bytes, n: int) -> tuple[list[str], Usage, dict[str, Any]]:
    """``parse_reply`` for any 200 JSON reply: content parts, odd token counts, errors."""
    try:
        obj = json.loads(body)
    except UnicodeDecodeError:
        raise Retryable("malformed reply (not UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise Retryable(f"malformed JSON reply ({exc.msg} at byte {exc.pos} of "
                        f"{len(body)})") from None
    try:
        choices = obj["choices"]
        texts = []
        for ch in choices[:n]:
            content = ch["message"]["content"]
            if isinstance(content, list):
                content = "".join(str(p.get("text", "")) for p in content
                                  if isinstance(p, dict))
            texts.append(content if isinstance(content, str) else "")
        finish = choices[0].get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise Retryable("unexpected reply shape (no choices[0].message.content)") from None
    if not texts or not texts[0].strip():
        raise Retryable("empty content")
    u = obj.get("usage") or {}
    try:
        usage = Usage(prompt_tokens=int(u.get("prompt_tokens") or 0),
                      completion_tokens=int(u.get("completion_tokens") or 0))
    except (TypeError, ValueError, AttributeError):
        usage = Usage()
    meta: dict[str, Any] = {"finish_reason": finish, "served_model": obj.get("model")}
    return texts, usage, meta


class OpenAIBackend(Backend):
    """A model behind an OpenAI-compatible chat-completions endpoint."""

    # retries and the cache on the hot path: the cache keys on the exact request bytes,
    # a failed first try is recovered without allocating (the agent layer adds nothing)
    manages_retries = manages_cache = True

    params_model: type[OpenAIParams] = OpenAIParams

    @classmethod
    def check_params(cls, name: str, params: dict[str, Any]) -> OpenAIParams:
        p: OpenAIParams = validate_params(cls.params_model, name, params)
        return p

    def __init__(self, name: str, params: dict[str, Any]):
        super().__init__(name, params)
        self.p: OpenAIParams = self.check_params(name, params)
        self._key = read_api_key(name, self.p.api_key_env)
        if self.p.http_client == "httpx" and not httpx_available():
            raise UserError("http_client: httpx needs httpx: pip install 'mmsim[httpx]'",
                            field=f"{name}.params.http_client")
        # aiohttp is a core dependency: the default; httpx only where it is asked for
        self.client_kind = "httpx" if self.p.http_client == "httpx" else "aiohttp"
        self.url = f"{self.p.base_url}/chat/completions"
        self.retry = RetryPolicy(self.p.max_retries, self.p.backoff_base_s, self.p.backoff_max_s,
                                 self.p.retry_after_max_s)
        self.encoder = MessageEncoder(image_transport=self.p.image_transport,
                                      video=self.p.video, video_frames=self.p.video_frames)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            self._headers["Authorization"] = f"Bearer {self._key}"
        self._head = '{"model":' + _dumps(self.p.model) + ',"messages":['
        if self.p.system_prompt is not None:
            self._head += _dumps({"role": "system", "content": self.p.system_prompt}) + ","
        self._endpoint: tuple[tuple[int, str, int, str], Endpoint] | None = None
        self._cache: ResponseCache | None = None
        self._cache_mode: bool | None = None
        self._default_tail: tuple[str, dict[str, Any]] | None = None
        self._n = self.p.n

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "simulated": False, "http_client": self.client_kind,
                "params": self.p.model_dump(mode="json")}

    def attach_cache(self, cache: ResponseCache | None, enabled: bool | None = None) -> None:
        self._cache, self._cache_mode = cache, enabled

    def sampling(self, request: GenerateRequest) -> dict[str, Any]:
        """The sampling fields of the request body (request overrides win)."""
        p = self.p
        out: dict[str, Any] = dict(p.extra_body)
        temperature = request.temperature if request.temperature is not None else p.temperature
        max_tokens = request.max_tokens if request.max_tokens is not None else p.max_tokens
        for k, v in (("temperature", temperature), ("top_p", p.top_p),
                     ("max_tokens", max_tokens), ("seed", p.seed)):
            if v is not None:
                out[k] = v
        if p.n != 1:
            out["n"] = p.n
        return out

    def _tail(self, request: GenerateRequest) -> tuple[str, dict[str, Any]]:
        if request.temperature is None and request.max_tokens is None:
            if self._default_tail is None:
                sampling = self.sampling(request)
                tail = _dumps(sampling)[1:-1]
                self._default_tail = ("]" + ("," + tail if tail else "") + "}", sampling)
            return self._default_tail
        sampling = self.sampling(request)
        tail = _dumps(sampling)[1:-1]
        return "]" + ("," + tail if tail else "") + "}", sampling

    def body(self, request: GenerateRequest) -> bytes:
        """The request body: ``{"model":..,"messages":[..]`` then the sampling fields, so the
        body of turn k extends the messages of turn k-1 byte for byte."""
        turns = ",".join([self.encoder.turn(t) for t in request.messages])
        return (self._head + turns + self._tail(request)[0]).encode("ascii")

    def _cacheable(self, request: GenerateRequest) -> bool:
        if self._cache is None or self._cache_mode is False:
            return False
        if self._cache_mode is True:
            return True
        sampling = self._tail(request)[1]
        return sampling.get("temperature") == 0 or sampling.get("seed") is not None

    async def generate(self, request: GenerateRequest) -> Completion:
        body = self.body(request)
        key = None
        if self._cache is not None and self._cacheable(request):
            scope = self.cache_scope() + (f"\n{request.variant}" if request.variant else "")
            key = hashlib.sha256(scope.encode() + b"\n" + body).hexdigest()
            hit = self._cache.get(key)
            if hit is not None:
                u = Usage(**hit["usage"])
                return Completion(text=hit["texts"][0], usage=u, latency_s=0.0,
                                  meta={**hit.get("meta", {}), "retries": 0, "cached": True,
                                        **({"choices": hit["texts"]} if self.p.n > 1 else {})})
        t0 = perf_counter()
        try:  # the first try outside the retry machinery: nothing is allocated for retries
            texts, usage, meta = await self.attempt(body)
            retries = 0
        except (Retryable, Fatal) as exc:
            (texts, usage, meta), retries = await self.retry.recover(
                partial(self.attempt, body), f"{self.name} ({self.where()})", exc)
        latency = perf_counter() - t0
        if key is not None:
            assert self._cache is not None
            self._cache.put(key, {"texts": texts, "usage": usage.model_dump(),
                                  "meta": dict(meta)})
        # ``meta`` is the attempt's own fresh dict: completed in place, not copied
        meta["retries"] = retries
        meta["cached"] = False
        if self._n > 1:
            meta["choices"] = texts
        if retries:
            usage = Usage(prompt_tokens=usage.prompt_tokens,
                          completion_tokens=usage.completion_tokens, retries=retries)
        return Completion(text=texts[0], usage=usage, latency_s=latency, meta=meta)

    # -- overridden by backends that reach the model another way (litellm) -------------
    def where(self) -> str:
        """The model and endpoint, for error messages."""
        return f"{self.p.model} at {self.p.base_url}"

    def cache_scope(self) -> str:
        """What besides the body identifies a cached reply (the endpoint)."""
        return self.url

    async def attempt(self, body: bytes) -> tuple[list[str], Usage, dict[str, Any]]:
        """One try: texts, usage, meta; raises :class:`Retryable` or :class:`Fatal`."""
        if self._endpoint is None:
            self._endpoint = _acquire(self.p.base_url, self.p.max_connections, self.client_kind,
                                      self.p.timeout_s)
        ep = self._endpoint[1]
        if ep.slots is None:
            status, ctype, retry_after, data = await ep.client.post(self.url, body,
                                                                    self._headers)
        else:
            async with ep.slots:
                with anyio.move_on_after(self.p.timeout_s) as scope:
                    status, ctype, retry_after, data = await ep.client.post(
                        self.url, body, self._headers)
                if scope.cancelled_caught:
                    raise Retryable(f"timeout after {self.p.timeout_s:g} s")
        return parse_reply(status, ctype, retry_after, data, self._n)

    async def aclose(self) -> None:
        ep, self._endpoint = self._endpoint, None
        if ep is not None:
            await _release(*ep)


@backend("openai", cls=OpenAIBackend)
def make_openai(name: str, params: dict[str, Any]) -> Backend:
    """Any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, transformers serve)."""
    return OpenAIBackend(name, params)
