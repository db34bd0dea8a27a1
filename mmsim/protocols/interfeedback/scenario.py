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
    protocol: ProtocolSpec = ProtocolSpec()
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
        check_servers(list(agents.values()), self.servers)
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



__all__ = ["PolicySpec", "ProtocolSpec", "Scenario"]
