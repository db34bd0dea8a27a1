"""The ``kind: classification`` scenario schema (see docs/classification.md).

Errors name the file, the line and the dotted field, as for InterFeedback scenarios.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mmsim.protocols.classification.data import CLS_DATASETS
from mmsim.protocols.classification.encoders import ENCODERS
from mmsim.registry import Registry, did_you_mean
from mmsim.spec import (
    AgentSpec,
    DatasetSpec,
    RunSpec,
    ScenarioModel,
    ServerSpec,
    check_servers,
    named_shorthand,
)

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class ClsDatasetSpec(DatasetSpec):
    """``name`` picks the loader (of ``CLS_DATASETS``); every other key is the loader's option."""

    dataset_registry: ClassVar[Registry[Any]] = CLS_DATASETS
    dataset_label: ClassVar[str] = "classification dataset"
    name: str = "synthetic-objects"


class EncoderSpec(BaseModel):
    """A text encoder: ``name`` (registered), ``params``, ``id`` (how reports and the
    ``encoder:`` fields name it; default the name) and ``optional`` (skipped with a note
    when its dependencies are not installed, instead of failing the run)."""

    model_config = _STRICT
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    optional: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in ENCODERS:
            names = ENCODERS.names()
            raise ValueError(f"unknown encoder {v!r}{did_you_mean(v, names)}; "
                             f"known: {', '.join(names)}")
        return v

    @property
    def key(self) -> str:
        return self.id or self.name


class ClosedSpec(BaseModel):
    """Closed world: the class list in the prompt; off-list answers are mapped to the
    nearest class with ``encoder`` (default: the first non-optional encoder)."""

    model_config = _STRICT
    enabled: bool = True
    encoder: str | None = None


class MultipleChoiceSpec(BaseModel):
    """k options: the true class and k-1 distractors, random or hard (the classes nearest
    to the true one under ``encoder``)."""

    model_config = _STRICT
    enabled: bool = True
    k: int = Field(4, ge=2, le=26)
    distractors: list[Literal["random", "hard"]] = Field(
        default_factory=lambda: ["random", "hard"], min_length=1)  # type: ignore[arg-type]
    encoder: str | None = None


class OpenSpec(BaseModel):
    """Open world: a free answer, mapped to a class with every encoder."""

    model_config = _STRICT
    enabled: bool = True


class BatchSpec(BaseModel):
    """Several images in one prompt, answered as a numbered list; each batch is shown in
    ``orders`` orders (the first is the batch's own order, the others seeded random
    permutations; a batch of one has one order). ``max_batches`` caps the batches per
    size. The class list is in the prompt; off-list answers are mapped as in closed."""

    model_config = _STRICT
    enabled: bool = True
    sizes: list[int] = Field(default_factory=lambda: [1, 4, 8], min_length=1)
    orders: int = Field(3, ge=1, le=50)
    max_batches: int | None = Field(None, ge=1)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: list[int]) -> list[int]:
        if any(s < 1 or s > 64 for s in v):
            raise ValueError("batch sizes must be between 1 and 64")
        if len(set(v)) != len(v):
            raise ValueError("duplicate batch size")
        return sorted(v)


class ProtocolsSpec(BaseModel):
    model_config = _STRICT
    closed: ClosedSpec = ClosedSpec()
    multiple_choice: MultipleChoiceSpec = MultipleChoiceSpec()
    open: OpenSpec = OpenSpec()
    batch: BatchSpec = BatchSpec()


class ClassificationScenario(ScenarioModel):
    """A ``kind: classification`` scenario file (see docs/classification.md)."""

    model_config = _STRICT
    kind: Literal["classification"] = "classification"
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(0, ge=0)
    dataset: ClsDatasetSpec = ClsDatasetSpec()
    models: list[AgentSpec] = Field(min_length=1)
    encoders: list[EncoderSpec] = Field(default_factory=lambda: [EncoderSpec(name="string")],
                                        min_length=1)
    protocols: ProtocolsSpec = ProtocolsSpec()
    run: RunSpec = RunSpec()
    servers: list[ServerSpec] = Field(default_factory=list)

    _encoder_shorthand = field_validator("encoders", mode="before")(named_shorthand)

    @model_validator(mode="after")
    def _check(self) -> ClassificationScenario:
        seen: set[str] = set()
        for m in self.models:
            if m.name in seen:
                raise ValueError(f"duplicate model name {m.name!r}")
            seen.add(m.name)
        keys = [e.key for e in self.encoders]
        if len(set(keys)) != len(keys):
            raise ValueError("two encoders with the same id: give one an 'id'")
        if all(e.optional for e in self.encoders):
            raise ValueError("at least one encoder must not be optional")
        for proto in ("closed", "multiple_choice"):
            ref = getattr(self.protocols, proto).encoder
            if ref is not None and ref not in keys:
                raise ValueError(f"@protocols.{proto}.encoder {ref!r} is not one of the "
                                 f"encoders ({', '.join(keys)})")
        check_servers(self.models, self.servers)
        return self

    @property
    def default_encoder(self) -> str:
        return next(e.key for e in self.encoders if not e.optional)

    def encoder_for(self, proto: Literal["closed", "multiple_choice"]) -> str:
        ref: str | None = getattr(self.protocols, proto).encoder
        return ref or self.default_encoder




__all__ = ["BatchSpec", "ClassificationScenario", "ClosedSpec", "ClsDatasetSpec",
           "EncoderSpec", "MultipleChoiceSpec", "OpenSpec",
           "ProtocolsSpec"]
