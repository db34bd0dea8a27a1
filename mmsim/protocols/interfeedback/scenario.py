"""The InterFeedback scenario schema (the default ``kind``; docs/scenarios.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from mmsim.policies import POLICIES
from mmsim.policies.base import policy_options
from mmsim.registry import did_you_mean
from mmsim.spec import STRICT as _STRICT
from mmsim.spec import (
    AgentSpec,
    DatasetSpec,
    RunSpec,
    ScenarioModel,
    ServerSpec,
    check_servers,
    named_shorthand,
)


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

    @field_validator("options")
    @classmethod
    def _known_options(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Option keys the policies of this spec declared (``@policy(options=...)``): an
        unknown one (``txt:`` for ``text:``) is refused, with a did-you-mean."""
        d = info.data
        rounds = d.get("schedule") or [d.get("policy") or d.get("name")]
        allowed: set[str] = set()
        for name in rounds:
            if not isinstance(name, str) or name not in POLICIES:
                return v  # (an unknown policy is reported by its own check)
            declared = policy_options(POLICIES.get(name))
            if declared is None:
                return v  # a policy that did not say takes any option
            allowed.update(declared)
        for k in v:
            if k not in allowed:
                known = sorted(allowed)
                raise ValueError(f"@+{k} unknown option {k!r} for policy "
                                 f"{'/'.join(dict.fromkeys(rounds))!r}"
                                 f"{did_you_mean(str(k), known)}; allowed: "
                                 f"{', '.join(known) or 'none'}")
        return v

    @property
    def rounds(self) -> list[str]:
        return self.schedule if self.schedule is not None else [self.policy or self.name]


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
    #: how answers are read from replies: ``strict`` (only an answer given as one: a letter,
    #: an answer marker, or exactly one option) or ``lenient`` (also a unique letter or
    #: option-text mention, as VLMEvalKit's first stage); the report shows both figures
    extractor: Literal["strict", "lenient"] = "strict"


_FIELDS = {"feedback": ("question", "answer", "given")}


class PromptsSpec(BaseModel):
    """Prompt templates (``prompts:``); unset ones keep the defaults, whose texts are in
    docs/scenarios.md and whose hashes every manifest records.

    ``instructions``: the receiver's answer instruction per answer kind (``choice``,
    ``numeric``, ``exact``), appended to the question; ``reask``: the line after each
    feedback; ``feedback``: the detailed-feedback prompt of the ``detailed`` policy (fields
    ``{question}``, ``{answer}``, ``{given}``; a policy's ``options.prompt`` wins).
    """

    model_config = _STRICT
    instructions: dict[Literal["choice", "numeric", "exact"], str] = Field(
        default_factory=dict)
    reask: str | None = None
    feedback: str | None = None

    @model_validator(mode="after")
    def _fields(self) -> PromptsSpec:
        for name, allowed in _FIELDS.items():
            template = getattr(self, name)
            if template is None:
                continue
            try:
                template.format(**{f: "" for f in allowed})
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"prompts.{name}: {type(exc).__name__} {exc} — the template "
                                 f"may use only {{{'}, {'.join(allowed)}}} (write {{{{ and }}}} "
                                 "for literal braces)") from None
        return self


class Scenario(ScenarioModel):
    """A scenario file (see docs/scenarios.md)."""

    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(0, ge=0)
    dataset: DatasetSpec
    receivers: list[AgentSpec] = Field(min_length=1)
    providers: list[AgentSpec] = Field(min_length=1)
    policies: list[PolicySpec] = Field(min_length=1)
    #: model-based answer extractors: each reads the replies the deterministic extractor
    #: left unparsed; reported separately (docs/metrics.md), never mixed into the grades
    extractors: list[AgentSpec] = Field(default_factory=list)
    protocol: ProtocolSpec = ProtocolSpec()
    prompts: PromptsSpec = PromptsSpec()
    run: RunSpec = RunSpec()
    servers: list[ServerSpec] = Field(default_factory=list)

    _policy_shorthand = field_validator("policies", mode="before")(named_shorthand)

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
        for field_name in ("receivers", "providers", "policies", "extractors"):
            seen: set[str] = set()
            for item in getattr(self, field_name):
                if item.name in seen:
                    raise ValueError(f"duplicate {field_name[:-1]} name {item.name!r}")
                seen.add(item.name)
        agents: dict[str, AgentSpec] = {}
        for a in [*self.receivers, *self.providers, *self.extractors]:
            if a.kind == "human" and a in self.extractors:
                raise ValueError(f"extractor {a.name!r} is a human proxy: extractors are models")
            if a.name in agents and agents[a.name] != a:
                raise ValueError(f"agent {a.name!r} is defined twice with different settings")
            agents[a.name] = a
        check_servers(list(agents.values()), self.servers)
        return self

    def agents(self) -> dict[str, AgentSpec]:
        return {a.name: a for a in [*self.receivers, *self.providers]}

    def canonical(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        if not self.servers:  # scenarios without servers keep their fingerprint
            del out["servers"]
        if not self.extractors:  # so do scenarios without model-based extractors
            del out["extractors"]
        for role in ("receivers", "providers"):  # so do agents without cache/prices
            for agent in out[role]:
                for key in ("cache", "prices"):
                    if agent.get(key) is None:
                        agent.pop(key, None)
                if agent.get("kind") == "model":  # and agents that are not human proxies
                    for key in ("kind", "channel", "human"):
                        agent.pop(key, None)
        if out["prompts"] == PromptsSpec().model_dump(mode="json"):
            del out["prompts"]  # the default prompts keep the fingerprint
        for key, default in (("mode", "feedback"), ("extractor", "strict")):
            if out["protocol"].get(key) == default:  # defaults keep the fingerprint
                del out["protocol"][key]
        return out



__all__ = ["PolicySpec", "ProtocolSpec", "Scenario"]
