"""Scenario files: YAML validated by one pydantic schema.

Errors name the file, the line and the dotted field (``scenario.yaml:12: providers.0.backend:
unknown backend 'simm' (did you mean 'sim'?)``). ``--set dotted.key=value`` overrides are
applied before validation and named as ``--set key`` in errors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmsim.backends import BACKENDS
from mmsim.data import DATASETS
from mmsim.errors import ScenarioError, UserError
from mmsim.policies import POLICIES
from mmsim.registry import did_you_mean

_STRICT = ConfigDict(extra="forbid")


class AgentSpec(BaseModel):
    """A model that answers (receiver) or gives feedback (provider)."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    backend: str = "sim"
    params: dict[str, Any] = Field(default_factory=dict)
    concurrency: int = Field(256, ge=1)

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
    """``name`` picks the loader; every other key is the loader's option."""

    model_config = ConfigDict(extra="allow")
    name: str

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}{did_you_mean(v, DATASETS.names())}; "
                             f"known: {', '.join(DATASETS.names())}")
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


class RunSpec(BaseModel):
    model_config = _STRICT
    concurrency: int = Field(512, ge=1)
    bootstrap: int = Field(1000, ge=0)


class Scenario(BaseModel):
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

    @field_validator("policies", mode="before")
    @classmethod
    def _policy_shorthand(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": p} if isinstance(p, str) else p for p in v]
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
        return self

    def agents(self) -> dict[str, AgentSpec]:
        return {a.name: a for a in [*self.receivers, *self.providers]}

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class LoadedScenario(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    scenario: Scenario
    path: Path
    limit: int | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent


# -- YAML with line numbers --------------------------------------------------------------
def _line_map(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
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
    except yaml.YAMLError as exc:
        raise ScenarioError(f"invalid YAML: {exc}", where=where) from None
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _line_map(node, (), lines)
    return data, lines


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``dotted.key=value`` (value parsed as YAML) to ``data`` in place."""
    if "=" not in assignment:
        raise UserError("expected dotted.key=value", where=f"--set {assignment}")
    key, _, raw = assignment.partition("=")
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise UserError("empty key", where=f"--set {assignment}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise UserError(f"value is not valid YAML: {exc}", where=f"--set {assignment}") from None
    node: Any = data
    for i, p in enumerate(parts[:-1]):
        nxt: Any
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise UserError(f"no list item {p!r} at {'.'.join(parts[:i]) or 'top level'}",
                                where=f"--set {assignment}")
            nxt = node[int(p)]
        elif isinstance(node, dict):
            nxt = node.setdefault(p, {})
        else:
            raise UserError(f"{'.'.join(parts[:i])} is not a mapping or list",
                            where=f"--set {assignment}")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise UserError(f"no list item {last!r}", where=f"--set {assignment}")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise UserError(f"{'.'.join(parts[:-1])} is not a mapping or list",
                        where=f"--set {assignment}")


_KNOWN_FIELDS: dict[str, type[BaseModel]] = {
    "": Scenario, "dataset": DatasetSpec, "receivers": AgentSpec, "providers": AgentSpec,
    "policies": PolicySpec, "protocol": ProtocolSpec, "run": RunSpec}


def _explain(err: Any, lines: dict[tuple[str, ...], int], where: str,
             overrides: dict[str, str]) -> ScenarioError:
    loc = tuple(str(x) for x in err["loc"] if not str(x).startswith("function-"))
    field = ".".join(loc) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent = [x for x in loc[:-1] if not x.isdigit()]
        model = _KNOWN_FIELDS.get(parent[0] if parent else "", Scenario)
        msg = f"unknown key{did_you_mean(loc[-1], list(model.model_fields))}; allowed: " \
              + ", ".join(model.model_fields)
    for key, text in overrides.items():
        if field == key or field.startswith(key + ".") or key.startswith(field + "."):
            return ScenarioError(msg, where=f"--set {text}", field=field)
    line = None
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            line = lines[loc[:n]]
            break
    return ScenarioError(msg, where=f"{where}:{line}" if line else where, field=field)


def load_scenario(path: str | Path, *, overrides: list[str] | None = None,
                  limit: int | None = None) -> LoadedScenario:
    """Read, override and validate a scenario file. Raises :class:`ScenarioError`."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError("scenario file not found", where=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"not UTF-8 text (byte {exc.start})", where=str(p)) from None
    data, lines = _parse_yaml(text, str(p))
    if not isinstance(data, dict):
        raise ScenarioError("a scenario must be a YAML mapping (name:, dataset:, ...)",
                            where=f"{p}:1")
    applied: dict[str, str] = {}
    for o in overrides or []:
        apply_override(data, o)
        applied[o.partition("=")[0].strip()] = o
    if limit is not None:
        if limit < 1:
            raise UserError("must be >= 1", where="--limit")
        if not isinstance(data.get("dataset"), dict):
            raise ScenarioError("missing dataset", where=str(p), field="dataset")
    try:
        scn = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc.errors()[0], lines, str(p), applied) from None
    except UserError as exc:  # e.g. a broken entry-point plugin
        raise exc
    return LoadedScenario(scenario=scn, path=p.resolve(), limit=limit)
