"""Scenario files: YAML validated by one pydantic schema.

Errors name the file, the line and the dotted field (``scenario.yaml:12: providers.0.backend:
unknown backend 'simm' (did you mean 'sim'?)``). ``--set dotted.key=value`` overrides are
applied before validation and named as ``--set key`` in errors.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmsim.backends import BACKENDS
from mmsim.data import DATASETS
from mmsim.errors import ScenarioError, UserError
from mmsim.policies import POLICIES
from mmsim.registry import Registry, did_you_mean

if TYPE_CHECKING:
    from mmsim.protocols.classification.scenario import LoadedClassification
    from mmsim.protocols.dynamic.scenario import LoadedDynamic
    from mmsim.protocols.video.scenario import LoadedVideo

_STRICT = ConfigDict(extra="forbid")


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


def _check_policy(v: str) -> str:
    if v not in POLICIES:
        raise ValueError(f"unknown policy {v!r}{did_you_mean(v, POLICIES.names())}; "
                         f"known: {', '.join(POLICIES.names())}")
    return v


class PolicySpec(BaseModel):
    """A feedback policy, or a per-round schedule of policies (the last one repeats)."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    policy: str | None = None
    schedule: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _resolve(self) -> PolicySpec:
        if self.policy is not None and self.schedule is not None:
            raise ValueError("give either 'policy' or 'schedule', not both")
        if self.schedule is not None:
            if not self.schedule:
                raise ValueError("schedule is empty")
            for p in self.schedule:
                _check_policy(p)
        else:
            _check_policy(self.policy or self.name)
        return self

    @property
    def rounds(self) -> list[str]:
        return self.schedule if self.schedule is not None else [self.policy or self.name]


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

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ProtocolSpec(BaseModel):
    """How the InterFeedback protocol is run.

    ``test_set``: ``intersection`` (the paper: per receiver x provider, the items the
    provider answers correctly and the receiver wrongly), ``shared`` (per receiver, the
    items *every* provider answers correctly and the receiver wrongly: one test set across
    providers, so correction rates compare), or ``all_wrong`` (every item the receiver
    gets wrong).
    """

    model_config = _STRICT
    max_rounds: int = Field(3, ge=1, le=50)
    test_set: Literal["intersection", "shared", "all_wrong"] = "intersection"
    #: ``feedback`` (the protocol) or ``annotate`` (annotator-assist: every screened answer
    #: of every receiver is a label proposal that each human provider confirms, edits or
    #: rejects; docs/human.md)
    mode: Literal["feedback", "annotate"] = "feedback"


class RunSpec(BaseModel):
    model_config = _STRICT
    concurrency: int = Field(512, ge=1)
    bootstrap: int = Field(1000, ge=0)


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
        return self


class ScenarioModel(BaseModel):
    """What a scenario of every kind has: its canonical form (what identifies a run) and
    that form's fingerprint."""

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

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


class Scenario(ScenarioModel):
    """A scenario file (see docs/scenarios.md)."""

    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = 0
    dataset: DatasetSpec
    receivers: list[AgentSpec] = Field(min_length=1)
    providers: list[AgentSpec] = Field(min_length=1)
    policies: list[PolicySpec] = Field(min_length=1)
    protocol: ProtocolSpec = ProtocolSpec()
    run: RunSpec = RunSpec()
    servers: list[ServerSpec] = Field(default_factory=list)

    @field_validator("policies", mode="before")
    @classmethod
    def _policy_shorthand(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": p} if isinstance(p, str) else p for p in v]
        return v

    @field_validator("receivers")
    @classmethod
    def _model_receivers(cls, v: list[AgentSpec]) -> list[AgentSpec]:
        for a in v:
            if a.kind == "human":
                raise ValueError(f"receiver {a.name!r} is a human proxy (kind: human): people "
                                 "give feedback; receivers are models")
        return v

    @model_validator(mode="after")
    def _unique(self) -> Scenario:
        for field_name in ("receivers", "providers", "policies"):
            seen: set[str] = set()
            for item in getattr(self, field_name):
                if item.name in seen:
                    raise ValueError(f"duplicate {field_name[:-1]} name {item.name!r}")
                seen.add(item.name)
        agents: dict[str, AgentSpec] = {}
        for a in [*self.receivers, *self.providers]:
            if a.name in agents and agents[a.name] != a:
                raise ValueError(f"agent {a.name!r} is defined twice with different settings")
            agents[a.name] = a
        servers = [sv.name for sv in self.servers]
        if len(set(servers)) != len(servers):
            raise ValueError("duplicate server name")
        for a in agents.values():
            ref = a.params.get("server")
            if ref is not None and ref not in servers:
                raise ValueError(f"agent {a.name!r}: params.server {ref!r} is not in servers:"
                                 f"{did_you_mean(str(ref), servers)}; known: "
                                 f"{', '.join(servers) or '(none)'}")
        return self

    def agents(self) -> dict[str, AgentSpec]:
        return {a.name: a for a in [*self.receivers, *self.providers]}

    def canonical(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        if not self.servers:  # scenarios without servers keep their fingerprint
            del out["servers"]
        for role in ("receivers", "providers"):  # so do agents without cache/prices
            for agent in out[role]:
                for key in ("cache", "prices"):
                    if agent.get(key) is None:
                        agent.pop(key, None)
                if agent.get("kind") == "model":  # and agents that are not human proxies
                    for key in ("kind", "channel", "human"):
                        agent.pop(key, None)
        if out["protocol"].get("mode") == "feedback":
            del out["protocol"]["mode"]
        return out


class LoadedScenario(LoadedFile):
    scenario: Scenario
    source: str = ""  # the path as the user gave it (for error messages)
    lines: dict[tuple[str, ...], int] = Field(default_factory=dict)  # field path -> line
    overrides: dict[str, str] = Field(default_factory=dict)  # --set key -> the assignment

    def where(self, *loc: str | int) -> str:
        """Where a field was given: ``"scenario.yaml:12"``, or ``"--set key=value"``."""
        key = tuple(str(x) for x in loc)
        return _locate(key, self.lines, self.source or str(self.path), self.overrides)


def _locate(loc: tuple[str, ...], lines: dict[tuple[str, ...], int], where: str,
            overrides: dict[str, str]) -> str:
    field = ".".join(loc)
    for key, text in overrides.items():
        if field == key or field.startswith(key + ".") or key.startswith(field + "."):
            return f"--set {text}"
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return f"{where}:{lines[loc[:n]]}"
    return where


# -- YAML with line numbers --------------------------------------------------------------
class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, parent: str):
        super().__init__(key)
        self.key, self.line, self.parent = key, line, parent


def _line_map(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            if str(k.value) in seen:  # PyYAML keeps the last silently: refuse instead
                raise _DuplicateKey(str(k.value), k.start_mark.line + 1, ".".join(path))
            seen.add(str(k.value))
            key = (*path, str(k.value))
            out[key] = k.start_mark.line + 1
            _line_map(v, key, out)
            out[key] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, (*path, str(i)), out)


def _parse_yaml(text: str, where: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"invalid YAML: {exc.problem or exc}", where=f"{where}{line}") from None
    except yaml.reader.ReaderError as exc:  # e.g. a NUL or control character
        at = text[:exc.position].count("\n") + 1
        raise ScenarioError(f"invalid YAML: unacceptable character #x{exc.character:04x}"
                            if isinstance(exc.character, int) else "invalid YAML: "
                            f"unacceptable character {exc.character!r}",
                            where=f"{where}:{at}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"invalid YAML: {exc}", where=where) from None
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        try:
            _line_map(node, (), lines)
        except _DuplicateKey as exc:
            field = f"{exc.parent}.{exc.key}" if exc.parent else exc.key
            raise ScenarioError(f"duplicate key {exc.key!r}", where=f"{where}:{exc.line}",
                                field=field) from None
        except RecursionError:
            raise ScenarioError("YAML nested too deeply", where=where) from None
    return data, lines


def shown_override(assignment: str) -> str:
    """``--set`` text as errors show it: the value of a credential-named key is hidden."""
    key, eq, _ = assignment.partition("=")
    return f"{key}=<redacted>" if eq and SECRET_PARAM.search(key.strip()) else assignment


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``dotted.key=value`` (value parsed as YAML) to ``data`` in place."""
    shown = shown_override(assignment)
    if "=" not in assignment:
        raise UserError("expected dotted.key=value", where=f"--set {shown}")
    key, _, raw = assignment.partition("=")
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise UserError("empty key", where=f"--set {shown}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"value is not valid YAML ({problem})",
                        where=f"--set {shown}") from None
    node: Any = data
    for i, p in enumerate(parts[:-1]):
        nxt: Any
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise UserError(f"no list item {p!r} at {'.'.join(parts[:i]) or 'top level'}",
                                where=f"--set {shown}")
            nxt = node[int(p)]
        elif isinstance(node, dict):
            nxt = node.setdefault(p, {})
        else:
            raise UserError(f"{'.'.join(parts[:i])} is not a mapping or list",
                            where=f"--set {shown}")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise UserError(f"no list item {last!r}", where=f"--set {shown}")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise UserError(f"{'.'.join(parts[:-1])} is not a mapping or list",
                        where=f"--set {shown}")


_KNOWN_FIELDS: dict[str, type[BaseModel]] = {
    "": Scenario, "dataset": DatasetSpec, "receivers": AgentSpec, "providers": AgentSpec,
    "policies": PolicySpec, "protocol": ProtocolSpec, "run": RunSpec, "servers": ServerSpec}


_NAMED = re.compile(r"^(?:duplicate \w+ name|agent) '([^']*)'")


def _named_item(data: Any, name: str) -> tuple[str, ...]:
    """The location of the last receiver/provider/policy called ``name`` (the duplicate)."""
    found: tuple[str, ...] = ()
    for group in ("receivers", "providers", "policies"):
        items = data.get(group) if isinstance(data, dict) else None
        for i, item in enumerate(items if isinstance(items, list) else []):
            if item == name or (isinstance(item, dict) and item.get("name") == name):
                found = (group, str(i))
    return found


def _explain(err: Any, lines: dict[tuple[str, ...], int], where: str,
             overrides: dict[str, str], data: Any = None) -> ScenarioError:
    loc = tuple(str(x) for x in err["loc"] if not str(x).startswith("function-"))
    m = _NAMED.match(str(err["msg"]).removeprefix("Value error, "))
    if not loc and m:  # a whole-scenario check about one named item: point at the item
        loc = _named_item(data, m.group(1))
    m = re.match(r"param '([^']+)' holds a credential", str(err["msg"]).removeprefix(
        "Value error, "))
    if m and loc[-1:] == ("params",):  # point at the credential itself
        loc = (*loc, *m.group(1).split("."))
    field = ".".join(loc) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent = [x for x in loc[:-1] if not x.isdigit()]
        model = _KNOWN_FIELDS.get(parent[0] if parent else "", Scenario)
        msg = f"unknown key{did_you_mean(loc[-1], list(model.model_fields))}; allowed: " \
              + ", ".join(model.model_fields)
    return ScenarioError(msg, where=_locate(loc, lines, where, overrides), field=field)


def load_scenario(path: str | Path, *, overrides: list[str] | None = None,
                  limit: int | None = None) -> LoadedScenario:
    """Read, override and validate a scenario file. Raises :class:`ScenarioError`."""
    p, data, lines, applied = read_scenario_data(path, overrides)
    kind = data.pop("kind", "interfeedback")  # other kinds: load_any_scenario
    if kind != "interfeedback":
        raise ScenarioError(f"a 'kind: {kind}' scenario is not an InterFeedback scenario "
                            "(load it with load_any_scenario)", field="kind",
                            where=_locate(("kind",), lines, str(p), applied))
    if limit is not None:
        if limit < 1:
            raise UserError("must be >= 1", where="--limit")
        if not isinstance(data.get("dataset"), dict):
            raise ScenarioError("missing dataset", where=str(p), field="dataset")
    try:
        scn = Scenario.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()  # a typo (unknown key) explains a missing field: report it first
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise _explain(first, lines, str(p), applied, data) from None
    except UserError as exc:  # e.g. a broken entry-point plugin
        raise exc
    return LoadedScenario(scenario=scn, path=p.resolve(), limit=limit, source=str(p),
                          lines=lines, overrides=applied)


# -- scenario kinds (``kind:`` at the top level; default ``interfeedback``) ---------------
SCENARIO_KINDS = ("interfeedback", "classification", "dynamic", "video")


def read_scenario_data(path: str | Path, overrides: list[str] | None = None
                       ) -> tuple[Path, dict[str, Any], dict[tuple[str, ...], int], dict[str, str]]:
    """Read a scenario file and apply ``--set`` overrides, without validating it: the path,
    the data, the line of each field, and the overrides applied (key -> assignment)."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError("scenario file not found", where=str(p))
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"cannot read the scenario file ({exc.strerror or exc})",
                            where=str(p)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ScenarioError(f"not UTF-8 text (byte {exc.start})", where=f"{p}:{line}") from None
    data, lines = _parse_yaml(text, str(p))
    if not isinstance(data, dict):
        raise ScenarioError("a scenario must be a YAML mapping (name:, dataset:, ...)",
                            where=f"{p}:{lines.get((), 1)}")
    applied: dict[str, str] = {}
    for o in overrides or []:
        apply_override(data, o)
        applied[o.partition("=")[0].strip()] = shown_override(o)
    kind = data.get("kind", "interfeedback")
    if kind not in SCENARIO_KINDS:
        raise ScenarioError(f"unknown scenario kind {kind!r}"
                            f"{did_you_mean(str(kind), list(SCENARIO_KINDS))}; known: "
                            + ", ".join(SCENARIO_KINDS), field="kind",
                            where=_locate(("kind",), lines, str(p), applied))
    return p, data, lines, applied


M = TypeVar("M", bound=BaseModel)


def explain_kind_error(err: Any, lines: dict[tuple[str, ...], int], where: str,
                       overrides: dict[str, str], root: type[BaseModel],
                       fields: dict[str, type[BaseModel]]) -> ScenarioError:
    """One pydantic error of a protocol scenario (``kind:`` other than interfeedback) as a
    ``file:line: field: message`` error. ``fields`` maps a dotted section path (digits
    left out) to its model, for the did-you-mean of unknown keys; ``root`` is the file's
    model. A model-level check may name its field with a message ``"@a.b rest"``."""
    loc = tuple(str(x) for x in err["loc"] if not str(x).startswith("function-"))
    msg = str(err["msg"]).removeprefix("Value error, ")
    if msg.startswith("@"):
        path, _, msg = msg[1:].partition(" ")
        loc = tuple(path.split("."))
        msg = f"{loc[-1]} {msg}"
    if err["type"] == "extra_forbidden":
        parent = ".".join(x for x in loc[:-1] if not x.isdigit())
        model = fields.get(parent, root)
        msg = f"unknown key{did_you_mean(loc[-1], list(model.model_fields))}; allowed: " \
              + ", ".join(model.model_fields)
    return ScenarioError(msg, where=_locate(loc, lines, where, overrides),
                         field=".".join(loc) or "(top level)")


def validate_kind_scenario(path: str | Path, root: type[M],
                           fields: dict[str, type[BaseModel]], *,
                           overrides: list[str] | None = None,
                           limit: int | None = None) -> tuple[Path, M]:
    """Read, override and validate a protocol scenario file against ``root``."""
    p, data, lines, applied = read_scenario_data(path, overrides)
    if limit is not None and limit < 1:
        raise UserError("must be >= 1", where="--limit")
    try:
        return p, root.model_validate(data)
    except ValidationError as exc:
        raise explain_kind_error(exc.errors()[0], lines, str(p), applied, root,
                                 fields) from None


def load_any_scenario(path: str | Path, *, overrides: list[str] | None = None,
                      limit: int | None = None
                      ) -> LoadedScenario | LoadedClassification | LoadedDynamic | LoadedVideo:
    """Load a scenario of any ``kind``: ``interfeedback`` (the default),
    ``classification`` (:mod:`mmsim.protocols.classification`), ``dynamic``
    (:mod:`mmsim.protocols.dynamic`) or ``video`` (:mod:`mmsim.protocols.video`)."""
    _, data, _, _ = read_scenario_data(path, overrides)
    if data.get("kind") == "video":
        from mmsim.protocols.video.scenario import load_video_scenario

        return load_video_scenario(path, overrides=overrides, limit=limit)
    if data.get("kind") == "dynamic":
        from mmsim.protocols.dynamic.scenario import load_dynamic_scenario

        return load_dynamic_scenario(path, overrides=overrides, limit=limit)
    if data.get("kind") == "classification":
        from mmsim.protocols.classification.scenario import load_classification_scenario

        return load_classification_scenario(path, overrides=overrides, limit=limit)
    return load_scenario(path, overrides=overrides, limit=limit)
