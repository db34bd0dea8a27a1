"""The pieces every scenario is made of, whatever its protocol: agents, datasets, servers,
the run's settings, and a scenario file as loaded (its path, ``--limit``, the line of each
field and the ``--set`` overrides, so errors name ``file:line: field``).

A protocol's scenario schema (``mmsim/protocols/<name>/scenario.py``) builds on these;
:mod:`mmsim.scenario` reads a file and finds its protocol through the registry.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mmsim.backends import BACKENDS
from mmsim.data import DATASETS
from mmsim.errors import UserError
from mmsim.redaction import SECRET_ENV_NAME, looks_secret
from mmsim.registry import Registry, did_you_mean

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN/inf are never meant
_STRICT = STRICT

#: Param names that hold credentials (``api_key``, ``openai_api_key``, ``token``,
#: ``client_secret``, ``password``, ``authorization``...). A scenario may not give them a
#: value: it is stored in the run and shown in reports. Name an environment variable
#: instead, with ``<name>_env`` (``api_key_env: OPENAI_API_KEY``).
SECRET_PARAM = re.compile(
    r"(?:^|[._-])(?:api[_-]?key|apikey|token|access[_-]?token|secret|password|passwd|"
    r"credentials?|authorization|bearer)$", re.IGNORECASE)


def _secret_params(params: Any, path: str = "") -> str | None:
    """The dotted name of the first param that holds a credential literally, if any."""
    if isinstance(params, dict):
        for k, v in params.items():
            name = f"{path}.{k}" if path else str(k)
            if SECRET_PARAM.search(str(k)) and v not in (None, ""):
                return name
            found = _secret_params(v, name)
            if found:
                return found
    elif isinstance(params, list):
        for i, v in enumerate(params):
            found = _secret_params(v, f"{path}.{i}")
            if found:
                return found
    return None


def _bad_number(value: Any, path: str = "") -> str | None:
    """``"path message"`` of the first number that cannot be meant: NaN or infinity
    anywhere, a negative ``seed``, a ``*_rate``/``*prob*`` outside [0, 1]."""
    if isinstance(value, dict):
        for k, v in value.items():
            name = f"{path}.{k}" if path else str(k)
            key = str(k).lower()
            if isinstance(v, int | float) and not isinstance(v, bool):
                if isinstance(v, float) and not math.isfinite(v):
                    return f"{name} must be a finite number (got {v})"
                if key == "seed" or key.endswith("_seed"):
                    if v < 0:
                        return f"{name} must be >= 0 (got {v})"
                if (key.endswith(("_rate", "_prob", "_probability")) or key in
                        ("prob", "probability", "p")) and not 0 <= v <= 1:
                    return f"{name} is a probability: it must be in [0, 1] (got {v})"
            found = _bad_number(v, name)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, float) and not math.isfinite(v):
                return f"{path}.{i} must be a finite number (got {v})"
            found = _bad_number(v, f"{path}.{i}")
            if found:
                return found
    return None


class Prices(BaseModel):
    """What an agent's tokens cost, per million input (prompt) and output (completion)
    tokens, in ``currency`` (reports show cost per role; docs/metrics.md)."""

    model_config = _STRICT
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    currency: str = "USD"


class AgentSpec(BaseModel):
    """A model that answers (receiver) or gives feedback (provider).

    ``cache``: answer repeated requests from the run's response cache (true), never (false),
    or only deterministic ones — temperature 0 or a fixed seed (unset). ``prices``: token
    prices for the cost figures of reports.
    """

    model_config = _STRICT
    name: str = Field(min_length=1)
    backend: str = "sim"
    params: dict[str, Any] = Field(default_factory=dict)
    concurrency: int = Field(256, ge=1)
    cache: bool | None = None
    prices: Prices | None = None
    # human proxies (docs/human.md): ``kind: human`` with a ``channel`` (terminal, web,
    # replay, persona) and its ``human:`` options; a persona's model is backend/params
    kind: Literal["model", "human"] = "model"
    channel: Literal["terminal", "web", "replay", "persona"] | None = None
    human: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _human(self) -> AgentSpec:
        if self.channel is not None and self.kind == "model":
            self.kind = "human"  # a channel makes the agent a human proxy
        if self.kind == "human":
            if self.channel is None:
                self.channel = "terminal"
            from mmsim.human import parse_options

            try:
                parse_options(self.name, self.human)
            except UserError as exc:
                raise ValueError(f"human.{(exc.field or '').split('.human.')[-1]}: "
                                 f"{exc.message}") from None
        elif self.human:
            raise ValueError("'human' options need kind: human (or a channel)")
        return self

    @field_validator("name")
    @classmethod
    def _no_separator(cls, v: str) -> str:
        if "/" in v or "\\" in v or any(ord(c) < 32 for c in v):
            raise ValueError(f"agent name {v!r} holds '/', '\\' or a control character: "
                             "episode ids join names with '/' (agents 'a/b' and 'a' could "
                             "collide); use e.g. 'a_b'")
        return v

    @field_validator("params")
    @classmethod
    def _finite_params(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = _bad_number(v)
        if bad is not None:
            name, _, why = bad.partition(" ")
            raise ValueError(f"param {name!r} {why}")
        return v

    @field_validator("params")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        key = _secret_params(v)
        if key is not None:
            leaf = key.rsplit(".", 1)[-1]
            raise ValueError(f"param {key!r} holds a credential: scenarios are stored with "
                             f"the run and shown in reports; name an environment variable "
                             f"instead ({leaf}_env: MY_API_KEY)")
        return v

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"unknown backend {v!r}{did_you_mean(v, BACKENDS.names())}; "
                             f"known: {', '.join(BACKENDS.names())}")
        return v


class DatasetSpec(BaseModel):
    """``name`` picks the loader; every other key is the loader's option. A protocol with
    its own loaders subclasses it with its ``dataset_registry`` (and ``dataset_label`` for
    the error) and a default ``name``."""

    model_config = ConfigDict(extra="allow")
    dataset_registry: ClassVar[Registry[Any]] = DATASETS
    dataset_label: ClassVar[str] = "dataset"
    name: str

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in cls.dataset_registry:
            names = cls.dataset_registry.names()
            raise ValueError(f"unknown {cls.dataset_label} {v!r}{did_you_mean(v, names)}; "
                             f"known: {', '.join(names)}")
        return v

    @model_validator(mode="after")
    def _bounded(self) -> DatasetSpec:
        bad = _bad_number(self.model_extra or {})
        if bad is not None:
            raise ValueError(f"@dataset.{bad}")
        size = (self.model_extra or {}).get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size > MAX_DATASET_SIZE:
            raise ValueError(f"@dataset.size must be at most {MAX_DATASET_SIZE:,} "
                             f"(got {size:,})")
        return self

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


#: the most items a generated dataset may have (``dataset.size``), checked at validate
MAX_DATASET_SIZE = 1_000_000
#: the most bootstrap resamples a run's intervals may take (``run.bootstrap``)
MAX_BOOTSTRAP = 100_000


class RunSpec(BaseModel):
    model_config = _STRICT
    concurrency: int = Field(512, ge=1, le=1_000_000)
    bootstrap: int = Field(1000, ge=0, le=MAX_BOOTSTRAP)


class ServerSpec(BaseModel):
    """A model server mmsim starts before the run and stops after it (docs/backends-local.md).

    ``command``: ``vllm`` (``vllm serve MODEL``), ``transformers`` (``transformers serve
    MODEL``) or a custom argv (``{port}``, ``{host}``, ``{model}``, ``{python}`` are
    substituted). Agents use it with ``params: {server: NAME}``.
    """

    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    command: Literal["vllm", "transformers"] | list[str] = "vllm"
    model: str | None = None
    host: str = "127.0.0.1"
    port: int | Literal["auto"] = "auto"
    env: dict[str, str | int | float] = Field(default_factory=dict)
    #: the server's environment variables taken from mmsim's own environment by name
    #: (``{VLLM_API_KEY: MY_VLLM_KEY}``): where a server's secrets come from; a secret
    #: written literally in ``env`` or ``args`` is refused
    env_from: dict[str, str] = Field(default_factory=dict)
    gpu: str | int | None = None  # CUDA_VISIBLE_DEVICES, e.g. 0 or "0,1"
    health_path: str = "/health"
    api_path: str = "/v1"
    startup_timeout_s: float = Field(600.0, gt=0)
    args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> ServerSpec:
        if isinstance(self.command, list) and not self.command:
            raise ValueError("command is an empty list")
        if isinstance(self.command, str) and not self.model:
            raise ValueError(f"'{self.command}' servers need a model")
        if isinstance(self.port, int) and not 0 < self.port < 65536:
            raise ValueError("port must be 1..65535 or auto")
        for k, v in self.env.items():
            if (SECRET_ENV_NAME.search(k) and str(v)) or looks_secret(str(v)):
                raise ValueError(f"env.{k} holds a credential: a scenario must not; take it "
                                 f"from mmsim's environment instead (env_from: {{{k}: "
                                 "MY_VAR})")
        words = [str(a) for a in (self.command if isinstance(self.command, list) else [])]
        words += self.args
        for i, a in enumerate(words):
            flag = a.split("=", 1)[0]
            secret_flag = flag.startswith("-") and SECRET_PARAM.search(flag.lstrip("-"))
            if (secret_flag and ("=" in a or i + 1 < len(words))) or looks_secret(a):
                raise ValueError(f"{'args' if i >= len(words) - len(self.args) else 'command'}"
                                 f" holds a credential ({flag}...): a scenario must not; pass "
                                 "it through the environment (env_from:; vllm reads "
                                 "VLLM_API_KEY)")
        return self


class ScenarioModel(BaseModel):
    """What a scenario of every kind has: its canonical form (what identifies a run) and
    that form's fingerprint."""

    @model_validator(mode="after")
    def _distinct_agent_names(self) -> ScenarioModel:
        """Agents whose names differ only in case or punctuation (``GPT-4o``, ``gpt_4o``)
        would share ids and file names: refused."""
        seen: dict[str, str] = {}
        for f in type(self).model_fields:
            items = getattr(self, f, None)
            for a in items if isinstance(items, list) else []:
                if not isinstance(a, AgentSpec):
                    continue
                key = re.sub(r"[^0-9a-z]+", "-", a.name.casefold()).strip("-")
                if key in seen and seen[key] != a.name:
                    raise ValueError(f"agent {a.name!r} has the same name as {seen[key]!r} "
                                     "once case and punctuation are ignored: rename one")
                seen.setdefault(key, a.name)
        return self

    def canonical(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        if out.get("servers") == []:  # scenarios without servers keep their fingerprint
            del out["servers"]
        return out

    def fingerprint(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class LoadedFile(BaseModel):
    """A scenario file as loaded: where it is (data paths are relative to it) and the
    ``--limit`` it runs with. Each kind adds its ``scenario``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    path: Path
    limit: int | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent



class LoadedScenario(LoadedFile):
    """A scenario file of any protocol, validated: ``scenario`` is an instance of the
    protocol's schema (``kind`` names the protocol)."""

    scenario: Any
    kind: str = "interfeedback"
    source: str = ""  # the path as the user gave it (for error messages)
    lines: dict[tuple[str, ...], int] = Field(default_factory=dict)  # field path -> line
    overrides: dict[str, str] = Field(default_factory=dict)  # --set key -> the assignment

    def where(self, *loc: str | int) -> str:
        """Where a field was given: ``"scenario.yaml:12"``, or ``"--set key=value"``."""
        key = tuple(str(x) for x in loc)
        return locate(key, self.lines, self.source or str(self.path), self.overrides)

    def fingerprint(self) -> str:
        """What makes two runs the same run: the canonical scenario and ``--limit``."""
        blob = json.dumps({"scenario": self.scenario.canonical(), "limit": self.limit},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def run_id(self, fingerprint: str | None = None) -> str:
        fp = self.fingerprint() if fingerprint is None else fingerprint
        return f"{self.scenario.name}-{fp[:12]}"


def locate(loc: tuple[str, ...], lines: dict[tuple[str, ...], int], where: str,
           overrides: dict[str, str]) -> str:
    """``file:line`` of the field at ``loc`` (its nearest given parent), or the ``--set``
    that gave it."""
    field = ".".join(loc)
    for key, text in overrides.items():
        if field == key or field.startswith(key + ".") or key.startswith(field + "."):
            return f"--set {text}"
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return f"{where}:{lines[loc[:n]]}"
    return where


def named_shorthand(v: Any) -> Any:
    """A list whose items may be bare names (``[binary, detailed]``) as ``{name: ...}``
    mappings (a ``mode="before"`` validator of list fields)."""
    if isinstance(v, list):
        return [{"name": x} if isinstance(x, str) else x for x in v]
    return v


def check_servers(agents: list[AgentSpec], servers: list[ServerSpec]) -> None:
    """Raise when two servers share a name or an agent's ``params.server`` names none."""
    names = [sv.name for sv in servers]
    if len(set(names)) != len(names):
        raise ValueError("duplicate server name")
    for a in agents:
        ref = a.params.get("server")
        if ref is not None and ref not in names:
            raise ValueError(f"agent {a.name!r}: params.server {ref!r} is not in servers:"
                             f"{did_you_mean(str(ref), names)}; known: "
                             f"{', '.join(names) or '(none)'}")


def unique_names(groups: dict[str, list[Any]]) -> None:
    """Raise ``duplicate <group> name 'x'`` when two items of one group share a name."""
    for group, items in groups.items():
        seen: set[str] = set()
        for item in items:
            if item.name in seen:
                raise ValueError(f"duplicate {group.removesuffix('s')} name {item.name!r}")
            seen.add(item.name)


__all__ = ["SECRET_PARAM", "STRICT", "AgentSpec", "DatasetSpec", "LoadedFile", "LoadedScenario",
           "Prices", "RunSpec", "ScenarioModel", "ServerSpec", "check_servers", "locate",
           "unique_names"]
